#!/usr/bin/env bash
# Runs each libFuzzer target of a LOCUS_FUZZ build for a bounded time, from
# its generated seeds and the regression corpus in the tree (tests/fuzz/corpus/).
# New interesting inputs go to a scratch directory, not into the tree; a
# crash leaves its input in <build>/fuzz-artifacts/ and fails the run.
#
#   tools/run_fuzzers.sh build-fuzz 60      # 60 s per target
set -euo pipefail
build=${1:?usage: run_fuzzers.sh <build dir> <seconds per target>}
seconds=${2:?usage: run_fuzzers.sh <build dir> <seconds per target>}
here=$(cd "$(dirname "$0")/.." && pwd)
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
declare -A seeds=([wire_fuzzer]=wire_corpus [shm_fuzzer]=shm_corpus)
status=0
for fuzzer in wire_fuzzer shm_fuzzer; do
  scratch=$(mktemp -d)
  echo "== $fuzzer: ${seconds}s"
  if ! "$build/bin/$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$fuzzer-" \
      "$scratch" "$build/tests/fuzz/${seeds[$fuzzer]}" "$here/tests/fuzz/corpus/$fuzzer" \
      2> "$build/$fuzzer.log"; then
    echo "$fuzzer failed; its input is in $artifacts; log: $build/$fuzzer.log" >&2
    tail -n 40 "$build/$fuzzer.log" >&2
    status=1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$build/$fuzzer.log" || true
  rm -rf "$scratch"
done
exit $status
