#!/usr/bin/env bash
# Runs one fuzzer over its committed corpus and regression inputs, then
# fuzzes on from there. New inputs go to a scratch directory, never into
# the committed corpus; a crash input is kept under .cache/fuzz-crashes/.
# Usage: fuzz/run.sh <binary> <name> [libFuzzer flags, e.g. -runs=N or
#        -max_total_time=S]
set -euo pipefail
bin=$1 name=$2
shift 2
cd "$(dirname "$0")/.."
corpus=fuzz/corpus/$name
regressions=fuzz/regressions/$name
test -d "$corpus" || { echo "no seed corpus at $corpus" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
crashes=.cache/fuzz-crashes/$name
mkdir -p "$crashes"
dirs=("$scratch" "$corpus")
test -d "$regressions" && dirs+=("$regressions")
# Seeded, so a run is repeatable; -timeout and -rss_limit_mb turn a hang or
# a memory blow-up into a failure with its input saved.
exec "$bin" -seed=1 -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
  -artifact_prefix="$crashes/" -print_final_stats=1 "$@" "${dirs[@]}"
