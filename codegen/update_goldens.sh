#!/bin/sh
# Regenerates codegen/golden/ and codegen/testdata/bad/*.expected.
#
#   codegen/update_goldens.sh [path/to/locusc]      (default: build/bin/locusc)
# or
#   cmake --build build --target locus_update_goldens
#
# Review `git diff codegen/` before committing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
locusc=${1:-$here/../build/bin/locusc}
locusc=$(cd "$(dirname "$locusc")" && pwd)/$(basename "$locusc")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/run_golden_test.sh" update "$locusc" "$work/golden"
for proto in "$here"/testdata/bad/*.proto; do
  "$here/run_error_test.sh" update "$locusc" "$(basename "$proto" .proto)" "$work/errors"
done
