#!/usr/bin/env bash
# Fails, naming each file, when a tracked C++ file drifts from .clang-format
# (Google style, 100 columns). Fix with:
#   git ls-files '*.cc' '*.h' | xargs clang-format -i
# scripts/test.sh runs this first. The formatter's version is pinned by
# Debian's clang-format (14 on bookworm): another version may format
# differently, so the check uses that one.
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=${CLANG_FORMAT:-clang-format}
command -v "$fmt" >/dev/null || { echo "check_format: no $fmt (scripts/setup.sh installs it)" >&2; exit 1; }
drifted=()
while IFS= read -r f; do
  "$fmt" --dry-run --Werror "$f" >/dev/null 2>&1 || drifted+=("$f")
done < <(git ls-files '*.cc' '*.h')
if ((${#drifted[@]})); then
  echo "check_format: ${#drifted[@]} file(s) differ from .clang-format ($("$fmt" --version)):" >&2
  printf '  %s\n' "${drifted[@]}" >&2
  echo "fix: git ls-files '*.cc' '*.h' | xargs $fmt -i" >&2
  exit 1
fi
echo "check_format: $(git ls-files '*.cc' '*.h' | wc -l) files formatted"
