#!/bin/sh
# Checks that README.md shows this sample verbatim (CTest sample.readme_snippets):
#
#   check_readme.sh <README.md> <samples/readme dir>
#
# README.md marks each block taken from a file with a line
#   <!-- snippet: samples/readme/<file> -->
# right before the block's opening ``` line. The block must equal echo.proto
# whole, and readme_example.cc between its "// [START readme]" and
# "// [END readme]" lines. Both markers must be there.
set -eu
readme=$1
dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0

# The fenced block after the marker naming samples/readme/$1.
block() {
  awk -v marker="<!-- snippet: samples/readme/$1 -->" '
    $0 == marker { armed = 1; next }
    armed == 1 && /^```/ { armed = 2; next }
    armed == 2 && /^```/ { found = 1; exit }
    armed == 2 { print }
    END { if (!found) exit 1 }
  ' "$readme"
}

check() {
  name=$1
  expected=$2
  if ! block "$name" >"$work/readme"; then
    echo "FAIL: $readme has no block marked <!-- snippet: samples/readme/$name -->" >&2
    status=1
    return
  fi
  if ! diff -u "$expected" "$work/readme"; then
    echo "FAIL: the block of $name in $readme differs from $dir/$name (diff above: - file, + README)" >&2
    status=1
    return
  fi
  echo "PASS: $readme shows $name verbatim"
}

check echo.proto "$dir/echo.proto"
sed -n '/^\/\/ \[START readme\]$/,/^\/\/ \[END readme\]$/p' "$dir/readme_example.cc" |
  sed '1d;$d' >"$work/example"
if [ ! -s "$work/example" ]; then
  echo "FAIL: $dir/readme_example.cc has no [START readme] ... [END readme] region" >&2
  exit 1
fi
check readme_example.cc "$work/example"
exit $status
