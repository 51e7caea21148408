#!/bin/sh
# Error test driver for locusc (used by CTest and update_goldens.sh).
#
#   run_error_test.sh check  <locusc> <name> <workdir>
#       Runs locusc on codegen/testdata/bad/<name>.proto; passes iff locusc
#       exits with code 1 (a rejection: a crash or an abort after the right
#       message exits otherwise), writes no file, and its stderr (absolute
#       paths normalized) equals codegen/testdata/bad/<name>.expected.
#   run_error_test.sh update <locusc> <name> <workdir>
#       Rewrites <name>.expected from locusc's stderr (still requires failure).
set -u
here=$(cd "$(dirname "$0")" && pwd)
mode=$1
locusc=$2
name=$3
work=$4/$name
bad=$here/testdata/bad
rm -rf "$work"
mkdir -p "$work/out"
cd "$bad" || exit 2
"$locusc" -I . --out="$work/out" "$name.proto" 2>"$work/stderr.raw"
rc=$?
# Paths that depend on the checkout or the install location.
sed -e "s|$bad/||g" -e "s|$here|<codegen>|g" "$work/stderr.raw" >"$work/stderr"
if [ $rc -eq 0 ]; then
  echo "FAIL: locusc accepted bad/$name.proto (exit code 0)" >&2
  exit 1
fi
if [ $rc -ne 1 ]; then
  echo "FAIL: locusc exited with code $rc on bad/$name.proto, not 1 (crashed or killed?)" >&2
  cat "$work/stderr" >&2
  exit 1
fi
if [ -n "$(find "$work/out" -type f)" ]; then
  echo "FAIL: locusc wrote files for bad/$name.proto:" >&2
  find "$work/out" -type f >&2
  exit 1
fi
if [ "$mode" = update ]; then
  cp "$work/stderr" "$bad/$name.expected"
  echo "updated $bad/$name.expected"
  exit 0
fi
if ! diff -u "$bad/$name.expected" "$work/stderr"; then
  echo "FAIL: stderr of locusc on bad/$name.proto differs from bad/$name.expected" >&2
  exit 1
fi
echo "PASS: bad/$name.proto rejected (exit $rc) with the expected message"
