#!/usr/bin/env bash
# Files sample demo (remote objects): starts files_server on a Unix socket
# and on TCP, serving a fresh directory, runs files_client over the Unix
# socket, over shared memory (shm:<the socket's path>) and over TCP, checks
# what the client and the server print and what ended up in the directory,
# then stops the server with SIGINT (as Ctrl-C would).
#
#   samples/files/demo.sh [<bin-dir>]      # default: build/bin
#
# Exits non-zero if any step fails. Every step is bounded.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-$here/../../build/bin}
server_bin=$bin_dir/files_server
client_bin=$bin_dir/files_client
for b in "$server_bin" "$client_bin"; do
  if [[ ! -x "$b" ]]; then
    echo "demo: $b not found; build it first (cmake --build build --target files_server files_client)" >&2
    exit 2
  fi
done

tmp=$(mktemp -d /tmp/locus-files.XXXXXX)   # short path: Unix socket paths are limited
mkdir "$tmp/root"
server_pid=
watchdog_pid=
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  [[ -n "$watchdog_pid" ]] && kill "$watchdog_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
say() { printf '\n%s%s%s\n' "$bold" "$*" "$plain"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

say "1. Starting the server on a Unix socket and on TCP (any free port), serving $tmp/root"
# Not under timeout(1): it follows every signal it forwards with SIGCONT,
# which can discard the SIGSTOP that LeakSanitizer's exit-time leak check
# relies on (a sanitizer build then hangs at exit). A watchdog kills a
# server that is still running after 90 s instead.
"$server_bin" --root "$tmp/root" "unix:$tmp/files.sock" "tcp://127.0.0.1:0" \
  > "$tmp/server.log" 2>&1 &
server_pid=$!
( sleep 90; kill -KILL "$server_pid" 2>/dev/null ) > /dev/null 2>&1 &
watchdog_pid=$!
for _ in $(seq 100); do
  grep -q '^ready' "$tmp/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q '^ready' "$tmp/server.log" || { cat "$tmp/server.log"; fail "the server did not start"; }
sed 's/^/   server| /' "$tmp/server.log"
unix_address=$(sed -n 's/^listening on \(unix:.*\)$/\1/p' "$tmp/server.log")
tcp_address=$(sed -n 's/^listening on \(tcp:.*\)$/\1/p' "$tmp/server.log")
[[ -n "$unix_address" && -n "$tcp_address" ]] || fail "the server did not print both addresses"
shm_address=shm:${unix_address#unix:}   # the Unix listener accepts shared-memory clients too

status=0
n=1
check() {  # check <file> <extended regex> <what it shows>
  grep -Eq "$2" "$1" || { echo "   expected $3"; status=1; }
}
# address | LOCUS_TRANSPORTS | transport the channel must end on | file name
runs=(
  "$unix_address|unix|unix|notes-unix.txt"
  "$shm_address|shm|shm|notes-shm.txt"
  "$tcp_address|tcp|tcp|notes-tcp.txt"
)
for run in "${runs[@]}"; do
  IFS='|' read -r address policy expected name <<<"$run"
  n=$((n + 1))
  say "$n. Client -> $address (LOCUS_TRANSPORTS=$policy): $name"
  log=$tmp/client-$expected.log
  if LOCUS_TRANSPORTS="$policy" timeout 30 "$client_bin" "$address" --name "$name" > "$log" 2>&1; then
    sed 's/^/   client| /' "$log"
  else
    sed 's/^/   client| /' "$log"
    echo "   the client failed"
    status=1
    continue
  fi
  check "$log" "^connected to .* over $expected\$" "the channel to end on $expected"
  check "$log" "^Open \"$name\" -> a File object" "a File object from Open"
  check "$log" '^Stat  -> ".*", [1-9][0-9]* bytes' "Stat on the File object"
  if [[ $expected == tcp ]]; then
    check "$log" '^Share -> no descriptor over tcp: FAILED_PRECONDITION' \
      "Share to fail FAILED_PRECONDITION over TCP"
  else
    check "$log" '^Share -> descriptor [0-9]+, read here: "line 1 of ' \
      "a descriptor from Share, readable by the client"
    grep -q '^Share -> no descriptor' "$log" &&
      echo "   (the server's $expected connection refused to send it: its transport's" \
           "Connection::CanPassFds() is false in this build)"
  fi
  # Every report was printed by the client's Progress object before Copy
  # returned, and the server counted the same number.
  reports=$(grep -c '^  progress: ' "$log")
  check "$log" "^Copy  -> [0-9]+ bytes; $reports progress reports received during the call \\(server made $reports\\)" \
    "the Copy's reply to count the $reports reports printed"
  [[ $reports -ge 2 ]] || { echo "   expected several progress reports, got $reports"; status=1; }
  last_report=$(grep -n '^  progress: ' "$log" | tail -n 1 | cut -d: -f1)
  copy_line=$(grep -n '^Copy  -> ' "$log" | cut -d: -f1)
  [[ -n "$last_report" && -n "$copy_line" && $last_report -lt $copy_line ]] ||
    { echo "   expected the progress reports before Copy returned"; status=1; }
  check "$log" "^Read \"$name.copy\" -> [0-9]+ bytes, the same as written" "the copy to match"
  check "$log" '^Stat after Close -> FAILED_PRECONDITION' "calls after Close to fail"
  check "$log" "^done over $expected\$" "the client to finish"
  cmp -s "$tmp/root/$name" "$tmp/root/$name.copy" ||
    { echo "   expected $name and $name.copy to be equal in the server's directory"; status=1; }
done

say "$((n + 1)). What the server saw"
# Each client held two File objects; the server releases each once its
# client drops it or disconnects (asynchronously: wait up to 10 s).
for _ in $(seq 100); do
  [[ $(grep -c ' released: no client holds it$' "$tmp/server.log") -ge 6 ]] && break
  sleep 0.1
done
grep -E '^(Open|Copy|session)' "$tmp/server.log" | sed 's/^/   server| /'
for transport in unix shm tcp; do
  grep -q "^Open \"notes-$transport.txt\" over $transport: " "$tmp/server.log" ||
    { echo "   no Open over $transport"; status=1; }
  grep -q "^Copy \"notes-$transport.txt\" -> \"notes-$transport.txt.copy\" over $transport: " \
    "$tmp/server.log" || { echo "   no Copy over $transport"; status=1; }
done
released=$(grep -c ' released: no client holds it$' "$tmp/server.log")
[[ $released -eq 6 ]] || { echo "   expected 6 File objects released, got $released"; status=1; }

say "$((n + 2)). Stopping the server (SIGINT, like Ctrl-C)"
kill -INT "$server_pid"
wait "$server_pid"
server_rc=$?
server_pid=
kill "$watchdog_pid" 2>/dev/null
watchdog_pid=
tail -n 2 "$tmp/server.log" | sed 's/^/   server| /'
[[ $server_rc -eq 0 ]] || { echo "   the server exited with $server_rc"; status=1; }

if [[ $status -eq 0 ]]; then
  say "Demo OK: objects returned by calls, callbacks during a call and descriptors, over unix, shm and TCP."
else
  fail "see the output above"
fi
