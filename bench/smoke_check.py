#!/usr/bin/env python3
"""CTest `locus_bench_smoke` (label `bench`): a correctness smoke test of the
locus-bench harness. Runs `locus-bench --suite=smoke` and checks that every
stdout line is a JSON object with the expected fields, that no case failed,
that each case's `transport` is the one it asked for (Locus shm cases really
ran on "shm", in-process ones on "inproc"), that `--transport=auto` reports a
real transport, that streaming mode runs (Locus and gRPC streams), that the
remote-object cases (a call on a received reference, a callback round trip)
ran on the transport they asked for and have their ratios in the summary, and
that unavailable combinations fail with a clear error. When the binary was
built with the optional Cap'n Proto / Thrift baselines it runs a few calls of
each (unix and tcp, 1 and 4 in flight); without them it checks that asking for
one fails with the "not found when locus-bench was built" note. Never checks
timing.

usage: smoke_check.py path/to/locus-bench
"""
import json
import os
import subprocess
import sys

REQUIRED = ["case", "transport", "size", "outstanding", "calls", "p50_us", "p99_us",
            "p999_us", "calls_per_s", "mb_per_s", "cpu_us_per_call"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    bench = sys.argv[1]
    proc = subprocess.run([bench, "--suite=smoke"], capture_output=True, text=True, timeout=90)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        fail("locus-bench --suite=smoke exited with %d" % proc.returncode)
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    if not lines:
        fail("no output")
    cases, summaries = [], []
    for line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            fail("not JSON: %r (%s)" % (line, e))
        if not isinstance(obj, dict) or "case" not in obj:
            fail("not a case object: %r" % line)
        (summaries if obj["case"] == "summary" else cases).append(obj)
    seen = set()
    for c in cases:
        if "error" in c:
            fail("case %s failed: %s" % (c["case"], c["error"]))
        for key in REQUIRED:
            if key not in c:
                fail("case %s lacks %s" % (c["case"], key))
        if c["transport"] != c["requested_transport"]:
            fail("case %s asked for %s but ran on %s" % (c["case"], c["requested_transport"], c["transport"]))
        if c["system"] == "locus" and c["requested_transport"] in ("shm", "inproc") \
                and c["transport"] != c["requested_transport"]:
            fail("locus case %s ended on %r, not %r" % (c["case"], c["transport"], c["requested_transport"]))
        if c["calls"] <= 0:
            fail("case %s made no calls" % c["case"])
        seen.add((c["system"], c["transport"], c["outstanding"]))
        if c["variant"]:
            seen.add((c["case"], c["outstanding"]))
    for want in [("raw", "unix", 1), ("raw", "tcp", 1), ("raw", "udp", 1), ("raw", "shm", 1),
                 ("raw", "inproc", 1),
                 ("locus", "unix", 1), ("locus", "tcp", 1), ("locus", "unix", 4), ("locus", "tcp", 4),
                 ("locus", "udp", 1), ("locus", "udp", 4),
                 ("locus", "shm", 1), ("locus", "shm", 4), ("locus", "inproc", 1),
                 ("locus_unix_ref", 1), ("locus_unix_ref", 4), ("locus_shm_ref", 1),
                 ("locus_shm_ref", 4), ("locus_unix_callback_ref", 1),
                 ("locus_unix_callback_ref", 4), ("locus_shm_callback_ref", 1),
                 ("locus_shm_callback_ref", 4)]:
        if want not in seen:
            fail("smoke suite did not run %s" % (want,))
    if not summaries:
        fail("no summary lines")
    for s in summaries:
        # Raw shm/udp baselines are ping-pong only: no raw ratio for N > 1 there.
        if s["outstanding"] == 1 and "vs_raw" not in s:
            fail("summary without vs_raw: %r" % s)
    for s in summaries:
        if s["transport"] in ("unix", "shm"):
            for key in ("ref_vs_plain", "callback_ref_vs_plain"):
                if key not in s:
                    fail("%s summary without %s: %r" % (s["transport"], key, s))
        elif "ref_vs_plain" in s:
            fail("%s summary has ref_vs_plain, but the smoke suite ran no ref case there" % s["transport"])
    summary_transports = {s["transport"] for s in summaries}
    for t in ("unix", "tcp", "udp", "shm", "inproc"):
        if t not in summary_transports:
            fail("no summary for transport %s" % t)

    # --transport=auto reports where the channel ended; a same-host server
    # reached over a Unix socket ends on shm (or stays on unix where shared
    # memory cannot be set up). LOCUS_TRANSPORTS would change that: unset it.
    env = dict(os.environ)
    env.pop("LOCUS_TRANSPORTS", None)
    sock = "/tmp/locus-bench-smoke-auto-%d.sock" % os.getpid()
    p = subprocess.run([bench, "--transport=auto", "--address=unix:" + sock, "--calls=100",
                        "--baselines=none"], capture_output=True, text=True, timeout=60, env=env)
    if p.returncode != 0:
        fail("--transport=auto exited with %d: %s" % (p.returncode, p.stderr))
    auto = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    auto_cases = [c for c in auto if c["case"] == "locus_auto"]
    if len(auto_cases) != 1 or auto_cases[0]["transport"] not in ("shm", "unix"):
        fail("--transport=auto to a local unix: server should end on shm or unix: %r" % auto)

    # Streaming: Locus streams on each stream transport, a clear "mode" in
    # every case line.
    for t in ("unix", "shm", "inproc"):
        p = subprocess.run([bench, "--transport=" + t, "--mode=streaming", "--calls=200",
                            "--outstanding=1,4", "--baselines=none"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            fail("--transport=%s --mode=streaming exited with %d: %s" % (t, p.returncode, p.stderr))
        got = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        streams = sorted(c["outstanding"] for c in got if c["case"] == "locus_%s_stream" % t
                         and c.get("mode") == "streaming" and "error" not in c and c["calls"] > 0)
        if streams != [1, 4]:
            fail("--transport=%s --mode=streaming: expected stream cases at 1 and 4 outstanding: %r" % (t, got))

    # --rmi: the remote-object cases next to one transport's Locus case.
    p = subprocess.run([bench, "--transport=tcp", "--rmi", "--calls=200", "--baselines=none"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        fail("--transport=tcp --rmi exited with %d: %s" % (p.returncode, p.stderr))
    got = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    names = sorted(c["case"] for c in got if c["case"] != "summary" and "error" not in c
                   and c["transport"] == "tcp" and c["calls"] > 0)
    if names != ["locus_tcp", "locus_tcp_callback_ref", "locus_tcp_ref"]:
        fail("--transport=tcp --rmi: expected the plain, ref and callback_ref cases: %r" % got)
    if "Remote objects" not in p.stderr:
        fail("--transport=tcp --rmi printed no remote-object table: %s" % p.stderr)

    # Unavailable combinations must fail loudly, not fall back.
    for args, needle in [(["--transport=udp", "--rmi"], "run on unix, tcp and shm"),
                         (["--suite=smoke", "--rmi"], "goes with --transport"),
                         (["--transport=udp", "--mode=streaming"], "no streams"),
                         (["--transport=grpc", "--grpc-over=shm"], "not available"),
                         (["--mode=sideways"], "unary or streaming")]:
        p = subprocess.run([bench] + args + ["--calls=10"], capture_output=True, text=True, timeout=30)
        if p.returncode == 0 or needle not in p.stderr:
            fail("%s: expected a non-zero exit and %r, got %d: %s" % (args, needle, p.returncode, p.stderr))
        if p.stdout.strip():
            fail("%s printed results: %s" % (args, p.stdout))
    # Optional baselines: a few calls each when built in, a clear note when not.
    peers_run = []
    for peer in ("capnp", "thrift"):
        p = subprocess.run([bench, "--transport=" + peer, "--over=unix", "--calls=100", "--outstanding=1"],
                           capture_output=True, text=True, timeout=60)
        if "not found when locus-bench was built" in p.stderr:
            if p.returncode == 0 or p.stdout.strip():
                fail("%s absent but --transport=%s did not fail cleanly: %d %s" % (peer, peer, p.returncode, p.stdout))
            print("note: %s baseline not built: skipped" % peer)
            continue
        for over in ("unix", "tcp"):
            p = subprocess.run([bench, "--transport=" + peer, "--over=" + over, "--calls=200",
                                "--outstanding=1,4"], capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                fail("--transport=%s --over=%s exited with %d: %s" % (peer, over, p.returncode, p.stderr))
            got = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
            outs = sorted(c["outstanding"] for c in got if c["system"] == peer and c["transport"] == over
                          and "error" not in c and c["calls"] > 0)
            if outs != [1, 4]:
                fail("--transport=%s --over=%s: expected cases at 1 and 4 outstanding: %r" % (peer, over, got))
        peers_run.append(peer)
    print("OK: %d cases, %d summaries%s" % (len(cases), len(summaries),
          "; optional baselines: " + ",".join(peers_run) if peers_run else ""))


if __name__ == "__main__":
    main()
