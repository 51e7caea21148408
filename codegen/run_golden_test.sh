#!/bin/sh
# Golden test driver for locusc (used by CTest and update_goldens.sh).
#
#   run_golden_test.sh check  <locusc> <workdir>
#       Runs locusc (with generate_mock_code=true) on every
#       codegen/testdata/**/*.proto (except bad/) and diffs the .locus.h,
#       .locus.cc and .locus_mock.h it writes against codegen/golden/.
#   run_golden_test.sh update <locusc> <workdir>
#       Same, but replaces codegen/golden/ with the output.
#   run_golden_test.sh plugin <protoc-gen-locus> <workdir> <locus idl dir> [protoc]
#       Runs protoc with the plugin and diffs against codegen/golden/ too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mode=$1
tool=$2
work=$3
rm -rf "$work"
mkdir -p "$work/out"
cd "$here/testdata"
protos=$(find . -name '*.proto' -not -path './bad/*' | sed 's|^\./||' | LC_ALL=C sort)
case $mode in
  check | update)
    # shellcheck disable=SC2086
    "$tool" -I . --out="$work/out" --locus_opt=generate_mock_code=true $protos
    ;;
  plugin)
    idl=$4
    protoc=${5:-protoc}
    # shellcheck disable=SC2086
    "$protoc" --plugin=protoc-gen-locus="$tool" -I . -I "$idl" --locus_out="$work/out" \
      --locus_opt=generate_mock_code=true $protos
    ;;
  *)
    echo "usage: $0 check|update|plugin ..." >&2
    exit 2
    ;;
esac
# Only the Locus output is under test.
find "$work/out" -type f ! -name '*.locus.h' ! -name '*.locus.cc' ! -name '*.locus_mock.h' \
  -exec rm -f {} +
if [ "$mode" = update ]; then
  rm -rf "$here/golden"
  cp -R "$work/out" "$here/golden"
  echo "updated $here/golden"
  exit 0
fi
if ! diff -ru "$here/golden" "$work/out"; then
  echo "FAIL: generated code differs from codegen/golden/." >&2
  echo "If the change is intended, run codegen/update_goldens.sh and review the diff." >&2
  exit 1
fi
echo "PASS: $(find "$work/out" -type f | wc -l) generated files match codegen/golden/"
