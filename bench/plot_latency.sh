#!/usr/bin/env bash
# Turns locus-bench JSON lines into one latency-percentile PNG per transport:
# p50 / p99 / p99.9 bars per case (system, variant, size, outstanding), log
# scale. Several rounds of the same case are reduced to their median.
#
#   build-bench/bin/locus-bench --suite=quick > quick.jsonl
#   bench/plot_latency.sh quick.jsonl [out_dir]     # -> out_dir/latency_<transport>.png
#
# Needs python3 and gnuplot (Debian: gnuplot-nox; installed here if missing
# and we may use apt-get).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 results.jsonl [out_dir]" >&2
  exit 2
fi
input=$1
out_dir=${2:-$(dirname "$input")}
mkdir -p "$out_dir"

if ! command -v gnuplot >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "gnuplot not found: installing gnuplot-nox" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >&2
  else
    echo "gnuplot not found: install it (sudo apt-get install gnuplot-nox)" >&2
    exit 1
  fi
fi
command -v python3 >/dev/null 2>&1 || { echo "python3 is required" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One data file per transport: label p50 p99 p999 (median over rounds).
python3 - "$input" "$work" <<'EOF'
import json, statistics, sys, collections
path, work = sys.argv[1], sys.argv[2]
groups = collections.OrderedDict()
for line in open(path):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        c = json.loads(line)
    except json.JSONDecodeError:
        continue
    if c.get("case") == "summary" or "error" in c or "p50_us" not in c:
        continue
    key = (c["transport"], c["case"], c["size"], c["outstanding"])
    groups.setdefault(key, []).append(c)
by_transport = collections.OrderedDict()
for (transport, case, size, out), runs in groups.items():
    med = lambda k: statistics.median(r[k] for r in runs)
    size_s = "%dK" % (size // 1024) if size >= 1024 and size % 1024 == 0 else str(size)
    label = "%s %sB x%d" % (case.replace("_" + transport, ""), size_s, out)
    by_transport.setdefault(transport, []).append((label, med("p50_us"), med("p99_us"), med("p999_us")))
for transport, rows in by_transport.items():
    with open("%s/%s.dat" % (work, transport), "w") as f:
        for label, p50, p99, p999 in rows:
            f.write('"%s" %f %f %f\n' % (label, max(p50, 0.01), max(p99, 0.01), max(p999, 0.01)))
EOF

shopt -s nullglob
made=0
for dat in "$work"/*.dat; do
  transport=$(basename "$dat" .dat)
  png="$out_dir/latency_${transport}.png"
  rows=$(wc -l < "$dat")
  width=$(( 400 + rows * 45 ))
  gnuplot <<EOF
set terminal pngcairo size ${width},600 noenhanced font ",9"
set output "${png}"
set title "locus-bench latency percentiles, transport ${transport} (${input##*/})"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set ylabel "round-trip latency (us, log scale)"
set grid ytics mytics
set xtics rotate by -40 scale 0
set key top left
set bmargin 9
set rmargin 10
plot "${dat}" using 2:xtic(1) title "p50", "" using 3 title "p99", "" using 4 title "p99.9"
EOF
  echo "$png"
  made=$((made + 1))
done
if [[ $made -eq 0 ]]; then
  echo "no successful cases in $input" >&2
  exit 1
fi
