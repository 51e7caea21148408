#!/usr/bin/env bash
# Runs the benchmark that docs/performance.md shows and writes it where the
# page reads it:
#
#   bench/update_perf_docs.sh          # or: make bench
#
#   1. builds locus-bench (Release) in build-bench/ (BENCH_BUILD_DIR)
#   2. runs  locus-bench --suite=quick --pin --rounds=3  (~2.5 min)
#      into docs/perf/latest.jsonl (PERF_DIR); extra arguments are passed
#      to locus-bench
#   3. redraws docs/perf/latency_<transport>.png (bench/plot_latency.sh)
#   4. prints the page's tables (bench/perf_tables.py) to paste into
#      docs/performance.md
#
# The previous latest.jsonl is replaced only when every case ran: a run with a
# failed case exits non-zero and leaves the docs as they were. Run it on an
# otherwise idle machine; the history of the results is in git.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BENCH_BUILD_DIR:-$root/build-bench}
perf=${PERF_DIR:-$root/docs/perf}
jobs=${JOBS:-$(nproc)}

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$jobs" --target locus-bench

mkdir -p "$perf"
tmp=$(mktemp "$perf/.run.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$build/bin/locus-bench" --suite=quick --pin --rounds=3 "$@" > "$tmp"
mv "$tmp" "$perf/latest.jsonl"
echo "wrote $perf/latest.jsonl" >&2

"$root/bench/plot_latency.sh" "$perf/latest.jsonl" "$perf" >&2
python3 "$root/bench/perf_tables.py" "$perf/latest.jsonl"
