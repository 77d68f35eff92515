#!/usr/bin/env bash
# The house C++ format (.clang-format) over every C++ file of the tree.
#   scripts/format.sh           check: print each difference and exit 1 when a file is not formatted
#   scripts/format.sh --fix     rewrite the files in place
# The test command runs the check as the ctest entry `format` (clang-format from setup.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
command -v "$CLANG_FORMAT" >/dev/null || { echo "format: $CLANG_FORMAT not found (scripts/setup.sh installs it)" >&2; exit 2; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.hpp' '*.h')
else
  mapfile -t files < <(find . -path ./build -prune -o -path './build-*' -prune -o \
                         \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' \) -print)
fi
case "${1:---check}" in
  --fix) "$CLANG_FORMAT" -i "${files[@]}" ;;
  --check)
    "$CLANG_FORMAT" --dry-run --Werror "${files[@]}"
    echo "format: ${#files[@]} files follow .clang-format ($("$CLANG_FORMAT" --version | head -1))" ;;
  *) echo "usage: scripts/format.sh [--check|--fix]" >&2; exit 2 ;;
esac
