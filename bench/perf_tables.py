#!/usr/bin/env python3
"""Prints the tables of docs/performance.md from a locus-bench JSON-lines run.

    bench/perf_tables.py docs/perf/latest.jsonl

Markdown tables: one call at a time (p50 latencies, medians over rounds), 16
outstanding (calls/s), remote objects (the same call on a received reference
and a callback round trip, next to the plain call; when the run has them),
and the key 64 B / 1 MiB cases per round (which show the host's fast and slow
states). bench/update_perf_docs.sh runs
it after the benchmark; paste its output into the page.
"""
import collections
import json
import statistics
import sys


def load(path):
    cases, summaries = [], []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            c = json.loads(line)
        except json.JSONDecodeError:
            continue
        if c.get("mode", "unary") != "unary":
            continue
        if c.get("case") == "summary":
            summaries.append(c)
        elif "p50_us" in c:
            cases.append(c)
    return cases, summaries


def size_label(size):
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return "%d MiB" % (size >> 20)
    if size >= 1024 and size % 1024 == 0:
        return "%d KiB" % (size >> 10)
    return "%d B" % size


def us(v):
    if v is None:
        return "–"
    if v >= 1000:
        return "{:,.0f}".format(v)
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    return "%.3f" % v


def rate(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e4:
        return "%.0fk" % (v / 1e3)
    return "{:,.0f}".format(v)


def ratio(v):
    if v is None:
        return "–"
    return "%.0fx" % v if v >= 100 else "%.1fx" % v


def fine_ratio(v):
    """Ratios near 1 (the remote-object table's): two decimals."""
    return "–" if v is None else "%.2fx" % v


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: perf_tables.py results.jsonl")
    cases, summaries = load(sys.argv[1])
    # Medians over rounds of every (case, size, outstanding).
    runs = collections.defaultdict(list)
    for c in cases:
        runs[(c["case"], c["size"], c["outstanding"])].append(c)

    def med(case, size, out, key="p50_us"):
        rs = runs.get((case, size, out))
        return statistics.median(r[key] for r in rs) if rs else None

    order = {"unix": 0, "tcp": 1, "udp": 2, "shm": 3, "inproc": 4}
    summaries.sort(key=lambda s: (s["outstanding"], s["size"], order.get(s["transport"], 9)))

    print("One call at a time\n")
    print("| transport | size | Locus p50 | Locus p99 | raw | raw, fastest | gRPC | Cap'n Proto | Thrift | Locus vs gRPC |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        if s["outstanding"] != 1:
            continue
        t = s["transport"]
        fastest = s.get("raw_poll_p50_us")
        if t == "shm" and s.get("vs_raw_sealed"):
            fastest = med("raw_shm_sealed", s["size"], 1)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            t, size_label(s["size"]), us(s["locus_p50_us"]), us(s["locus_p99_us"]),
            us(s.get("raw_p50_us")), us(fastest), us(s.get("grpc_p50_us")),
            us(s.get("capnp_p50_us")), us(s.get("thrift_p50_us")), ratio(s.get("vs_grpc"))))

    print("\n16 calls outstanding\n")
    print("| transport | size | Locus calls/s | Locus p50 us | raw | gRPC | Cap'n Proto | Thrift | Locus x gRPC / Cap'n Proto / Thrift |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        if s["outstanding"] == 1:
            continue
        t, size, out = s["transport"], s["size"], s["outstanding"]
        raw = med("raw_" + t, size, out, "calls_per_s")
        xs = " / ".join(ratio(s.get(k)) for k in ("vs_grpc_tput", "vs_capnp_tput", "vs_thrift_tput")
                        if s.get(k) is not None)
        locus = rate(s["locus_calls_per_s"])
        if size >= 1 << 20:
            locus += " (%.1f GB/s)" % (s["locus_mb_per_s"] / 1000)
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            t, size_label(size), locus, us(s["locus_p50_us"]), rate(raw),
            rate(s.get("grpc_calls_per_s")), rate(s.get("capnp_calls_per_s")),
            rate(s.get("thrift_calls_per_s")), xs or "–"))

    rmi = [s for s in summaries if "ref_p50_us" in s or "callback_ref_p50_us" in s]
    if rmi:
        print("\nRemote objects\n")
        print("| transport | size | outstanding | plain p50 | on a received reference | ref / plain "
              "| callback round trip | callback / plain |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in rmi:
            print("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
                s["transport"], size_label(s["size"]), s["outstanding"], us(s["locus_p50_us"]),
                us(s.get("ref_p50_us")), fine_ratio(s.get("ref_vs_plain")),
                us(s.get("callback_ref_p50_us")), fine_ratio(s.get("callback_ref_vs_plain"))))

    rounds = sorted({c["round"] for c in cases})
    print("\nPer round\n")
    print("| case (p50 us; 16 outstanding: calls/s; 1 MiB: GB/s, payload both ways) | "
          + " | ".join("round %d" % (r + 1) for r in rounds) + " |")
    print("|---|" + "---:|" * len(rounds))

    def cell(case, size, out, r):
        c = {x["round"]: x for x in runs.get((case, size, out), [])}.get(r)
        if c is None:
            return "–"
        if out > 1:
            return rate(c["calls_per_s"])
        if size >= 1 << 20:
            return "%.1f" % (2 * size / c["p50_us"] / 1000)
        return us(c["p50_us"])

    mib = 1 << 20
    rows = [
        ("raw shm, sealed, 64 B", [("raw_shm_sealed", 64, 1)]),
        ("raw shm, index rings (adaptive), 64 B", [("raw_shm_adaptive", 64, 1)]),
        ("Locus shm, 64 B", [("locus_shm", 64, 1)]),
        ("Locus shm, 64 B, 16 outstanding", [("locus_shm", 64, 16)]),
        ("gRPC over a Unix socket, 64 B", [("grpc_unix_sync", 64, 1)]),
        ("raw unix, blocking / polling, 64 B", [("raw_unix", 64, 1), ("raw_unix_poll", 64, 1)]),
        ("Locus unix, 64 B", [("locus_unix", 64, 1)]),
        ("raw tcp, blocking / polling, 64 B", [("raw_tcp", 64, 1), ("raw_tcp_poll", 64, 1)]),
        ("Locus tcp, 64 B", [("locus_tcp", 64, 1)]),
        ("gRPC over TCP, 64 B", [("grpc_tcp_sync", 64, 1)]),
        ("raw udp, blocking / polling, 64 B", [("raw_udp", 64, 1), ("raw_udp_poll", 64, 1)]),
        ("Locus udp, 64 B", [("locus_udp", 64, 1)]),
        ("raw shm, sealed / index rings, 1 MiB", [("raw_shm_sealed", mib, 1), ("raw_shm_adaptive", mib, 1)]),
        ("Locus shm, 1 MiB", [("locus_shm", mib, 1)]),
        ("Locus shm, 64 B: plain / on a reference / callback round trip",
         [("locus_shm", 64, 1), ("locus_shm_ref", 64, 1), ("locus_shm_callback_ref", 64, 1)]),
        ("Locus unix, 64 B: plain / on a reference / callback round trip",
         [("locus_unix", 64, 1), ("locus_unix_ref", 64, 1), ("locus_unix_callback_ref", 64, 1)]),
    ]
    for label, keys in rows:
        if not any(runs.get(k) for k in keys):
            continue
        # Runs from before the remote-object cases existed: no such rows.
        if any(c.endswith("_ref") and not runs.get((c, size, out)) for c, size, out in keys):
            continue
        cells = [" / ".join(cell(c, size, out, r) for c, size, out in keys) for r in rounds]
        print("| %s | %s |" % (label, " | ".join(cells)))

if __name__ == "__main__":
    main()
