#!/usr/bin/env bash
# Echo sample demo: starts echo_server on a Unix socket and on TCP, runs
# echo_client against it with the transport forced to unix, then tcp, then
# left to Locus (a client given the TCP address of a server on the same host
# ends on shared memory), then stops the server with SIGINT (as Ctrl-C
# would).
#
#   samples/echo/demo.sh [<bin-dir>]      # default: build/bin
#
# Exits non-zero if any step fails. Every step is bounded by `timeout`.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-$here/../../build/bin}
server_bin=$bin_dir/echo_server
client_bin=$bin_dir/echo_client
for b in "$server_bin" "$client_bin"; do
  if [[ ! -x "$b" ]]; then
    echo "demo: $b not found; build it first (cmake --build build --target echo_server echo_client)" >&2
    exit 2
  fi
done

tmp=$(mktemp -d /tmp/locus-echo.XXXXXX)   # short path: Unix socket paths are limited
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

say "1. Starting the server on a Unix socket and on TCP (any free port)"
# Not under timeout(1): it follows every signal it forwards with SIGCONT,
# which can discard the SIGSTOP that LeakSanitizer's exit-time leak check
# relies on (a sanitizer build then hangs at exit). A watchdog kills a
# server that is still running after 90 s instead.
"$server_bin" "unix:$tmp/echo.sock" "tcp://127.0.0.1:0" > "$tmp/server.log" 2>&1 &
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

status=0
n=1
# address | LOCUS_TRANSPORTS | transport the channel must end on | what it shows
runs=(
  "$unix_address|unix|unix|over the Unix socket"
  "$tcp_address|tcp|tcp|over TCP"
  "$tcp_address||shm|given the TCP address, Locus picks shared memory (same host)"
)
for run in "${runs[@]}"; do
  IFS='|' read -r address policy expected what <<<"$run"
  n=$((n + 1))
  say "$n. Client -> $address ${policy:+(LOCUS_TRANSPORTS=$policy) }$what"
  if LOCUS_TRANSPORTS="$policy" timeout 30 "$client_bin" "$address" "hello, Locus" --count 200 \
      > "$tmp/client.log" 2>&1; then
    sed 's/^/   client| /' "$tmp/client.log"
    grep -q '^Say   -> "hello, Locus"' "$tmp/client.log" &&
      grep -q '^Shout -> "HELLO, LOCUS"' "$tmp/client.log" ||
      { echo "   unexpected replies"; status=1; }
    grep -q "over $expected\$" "$tmp/client.log" ||
      { echo "   expected the channel to end on $expected"; status=1; }
  else
    sed 's/^/   client| /' "$tmp/client.log"
    echo "   the client failed"
    status=1
  fi
done

say "$((n + 1)). Calls the server saw"
grep -E '^(Say|Shout) over' "$tmp/server.log" | sort | uniq -c | sort -rn | sed 's/^ */   /'
for transport in unix tcp shm; do
  grep -q "^Say over $transport" "$tmp/server.log" || { echo "   no call over $transport"; status=1; }
done

say "$((n + 2)). Stopping the server (SIGINT, like Ctrl-C)"
kill -INT "$server_pid"
wait "$server_pid"
server_rc=$?
server_pid=
kill "$watchdog_pid" 2>/dev/null
watchdog_pid=
tail -n 2 "$tmp/server.log" | sed 's/^/   server| /'
[[ $server_rc -eq 0 ]] || { echo "   the server exited with $server_rc"; status=1; }
[[ -e "$tmp/echo.sock" ]] && echo "   (note: the socket file $tmp/echo.sock was left behind)"

if [[ $status -eq 0 ]]; then
  say "Demo OK: the same service answered over a Unix socket, TCP and shared memory."
else
  fail "see the output above"
fi
