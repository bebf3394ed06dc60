#!/usr/bin/env bash
# Packs, into .cache/devroot, the Debian libraries the whole service needs
# that a GPU image (PyTorch's LibTorch, nvcc, CMake; nothing else, and no
# network) lacks: gRPC, protobuf (with protoc and grpc_cpp_plugin),
# prometheus-cpp's core, cpp-httplib, Abseil, yaml-cpp, nlohmann-json,
# libjpeg-turbo, libpng, zlib, OpenSSL, c-ares, re2, glog and GoogleTest. Headers,
# shared libraries (with every library they load, bar glibc and the C++
# runtime), the two code generators and the CMake configs, in a relocatable
# layout: include/, lib/x86_64-linux-gnu/, bin/. CMake finds them through
# -DMKD_DEVROOT (cmake/devroot.cmake); scripts/gpu_check.sh builds with it.
#
# Run it here (Debian 12, after scripts/setup.sh); carry
# .cache/devroot.tar.xz to the GPU machine. Prints the sizes it packed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.cache/devroot
ma=lib/x86_64-linux-gnu
rm -rf "$root"
mkdir -p "$root/include" "$root/$ma/cmake" "$root/share/cmake" "$root/bin"

# Headers.
for h in absl yaml-cpp nlohmann grpc grpcpp grpc++ google prometheus openssl re2 gtest gmock \
    glog gflags brotli httplib.h turbojpeg.h zlib.h zconf.h png.h pngconf.h pnglibconf.h ares.h ares_build.h \
    ares_dns.h ares_nameser.h ares_rules.h ares_version.h xxhash.h xxh3.h; do
  cp -rL "/usr/include/$h" "$root/include/"
done
# OpenSSL keeps its configuration headers in the multiarch directory.
cp -rL /usr/include/x86_64-linux-gnu/openssl/. "$root/include/openssl/"

# CMake configs whose import prefix is computed from their own location.
# (prometheus-cpp's and re2's are replaced by cmake/devroot.cmake: theirs
# would look for civetweb, curl and pkg-config.)
cp -r /usr/$ma/cmake/absl /usr/$ma/cmake/yaml-cpp /usr/$ma/cmake/grpc /usr/$ma/cmake/GTest \
  "$root/$ma/cmake/"
cp -r /usr/share/cmake/nlohmann_json "$root/share/cmake/"
# gRPC's exports name every library and plugin Debian built; only the ones
# packed below are used, so the existence check of the rest goes.
sed -i '/_cmake_import_check_targets\|_cmake_import_check_files_for_/d' \
  "$root"/$ma/cmake/grpc/gRPCTargets-*.cmake

# Libraries: what the service links, then everything those load.
direct=(
  libabsl_*.so.* libyaml-cpp.so.0.7 libgrpc++.so.1.51 libgrpc.so.29 libgpr.so.29
  libaddress_sorting.so.29 libupb.so.29 libgrpc++_reflection.so.1.51 libgrpc_plugin_support.so.1.51
  libprotobuf.so.32 libprotoc.so.32 libprometheus-cpp-core.so.1.0 libcpp-httplib.so.0.11
  libturbojpeg.so.0 libpng16.so.16 libz.so.1 libssl.so.3 libcrypto.so.3 libcares.so.2 libre2.so.9
  libglog.so.1
)
declare -A seen=()
queue=()
for pattern in "${direct[@]}"; do
  for f in /usr/$ma/$pattern; do queue+=("$f"); done
done
queue+=(/usr/bin/protoc /usr/bin/grpc_cpp_plugin)
# glibc and the C++ runtime come from the GPU image itself (newer there).
skip='^(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so'
while ((${#queue[@]})); do
  f=${queue[0]}
  queue=("${queue[@]:1}")
  [[ -n ${seen[$f]:-} ]] && continue
  seen[$f]=1
  while read -r dep; do
    name=$(basename "$dep")
    [[ $name =~ $skip ]] && continue
    queue+=("$dep")
  done < <(ldd "$f" | awk '/=> \//{print $3}')
done
for f in "${!seen[@]}"; do
  case "$f" in
    /usr/bin/*) cp -L "$f" "$root/bin/" ;;
    *) cp -L "$f" "$root/$ma/$(basename "$f")" ;;
  esac
done
# The unversioned names the linker and the CMake configs ask for, as
# relative links (the tarball below keeps them).
for lib in "$root"/$ma/*.so.*; do
  base=$(basename "$lib")
  dev=${base%%.so.*}.so
  [[ -e "$root/$ma/$dev" ]] || ln -s "$base" "$root/$ma/$dev"
done
# gRPC's CMake files name fully versioned files (libgrpc.so.29.0.0, ...).
while read -r want; do
  base=$(basename "$want")
  [[ -e "$root/$ma/$base" ]] && continue
  soname=$(ls "$root/$ma/${base%%.so.*}.so."* 2>/dev/null | head -n 1 || true)
  [[ -n $soname ]] && ln -s "$(basename "$soname")" "$root/$ma/$base"
done < <(grep -ho '_IMPORT_PREFIX}/lib/x86_64-linux-gnu/[^" ]*' "$root"/$ma/cmake/*/*.cmake | sort -u)
cp /usr/$ma/libgtest.a /usr/$ma/libgtest_main.a /usr/$ma/libgmock.a /usr/$ma/libgmock_main.a "$root/$ma/"
for f in "$root"/$ma/*.so.* "$root"/bin/*; do
  [[ -L $f ]] || strip --strip-unneeded "$f" 2>/dev/null || true
done
# One compressed file travels (the device tool's tree limit is 64 MiB);
# scripts/gpu_check.sh unpacks it.
tar -C .cache -cJf .cache/devroot.tar.xz devroot
du -sh "$root" .cache/devroot.tar.xz
