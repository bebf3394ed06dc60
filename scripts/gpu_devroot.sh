#!/usr/bin/env bash
# Packs, into .cache/devroot, the Debian libraries common/ needs that a GPU
# image (PyTorch's LibTorch, nvcc, CMake; no Abseil) lacks: Abseil,
# yaml-cpp and nlohmann-json, headers + shared libraries + CMake configs, in
# a relocatable /usr-like layout. scripts/gpu_check.sh builds against it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.cache/devroot
multiarch=lib/x86_64-linux-gnu
rm -rf "$root"
mkdir -p "$root/include" "$root/$multiarch/cmake" "$root/share/cmake"
cp -r /usr/include/absl /usr/include/yaml-cpp /usr/include/nlohmann "$root/include/"
cp -r /usr/$multiarch/cmake/absl /usr/$multiarch/cmake/yaml-cpp "$root/$multiarch/cmake/"
cp -r /usr/share/cmake/nlohmann_json "$root/share/cmake/"
# Real files under every name (the SONAME ones too): links may not travel.
for f in /usr/$multiarch/libabsl_*.so* /usr/$multiarch/libyaml-cpp.so*; do
  cp -L "$f" "$root/$multiarch/"
done
du -sh "$root"
