#!/usr/bin/env bash
# Builds and tests all of Locus with Bazel, offline (flags in .bazelrc).
#
#   bazel/check.sh [extra bazel flags...]     e.g. --config=sanitize
#
# Environment:
#   BAZEL                        bazel binary (default: bazel, from Debian's
#                                bazel-bootstrap package)
#   LOCUS_BAZEL_OUTPUT_USER_ROOT passed as --output_user_root (e.g. a fresh
#                                temp dir, to check a first run from scratch)
#   LOCUS_BAZEL_TARGETS          target patterns (default: every package, as
#                                //... would give)
#
# Prints "bazel: N passed, N failed" as its last line and exits non-zero if
# the build or any test fails.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

BAZEL=${BAZEL:-bazel}
# Default: everything, like //..., but spelled as the top-level packages
# so that Bazel's convenience symlinks (bazel-bin, bazel-<checkout dir>) are
# never descended into: after a run with another output root they point into
# a stale execroot, and only the names in .bazelignore are skipped by Bazel.
if [[ -n "${LOCUS_BAZEL_TARGETS:-}" ]]; then
  read -r -a TARGETS <<<"$LOCUS_BAZEL_TARGETS"
else
  TARGETS=("//:all")
  for dir in */; do
    dir=${dir%/}
    [[ -L $dir || $dir == bazel-* ]] && continue
    if [[ -n $(find "$dir" \( -name BUILD -o -name BUILD.bazel \) -print -quit) ]]; then
      TARGETS+=("//$dir/...")
    fi
  done
fi

STARTUP=()
if [[ -n "${LOCUS_BAZEL_OUTPUT_USER_ROOT:-}" ]]; then
  mkdir -p "$LOCUS_BAZEL_OUTPUT_USER_ROOT"
  STARTUP+=("--output_user_root=$LOCUS_BAZEL_OUTPUT_USER_ROOT")
  # Leave the bazel-* symlinks of the usual output root alone.
  set -- --symlink_prefix=/ "$@"
fi

shutdown_oneoff() {
  if [[ -n "${LOCUS_BAZEL_OUTPUT_USER_ROOT:-}" ]]; then
    # A one-off output root: don't leave its server running.
    "$BAZEL" "${STARTUP[@]}" shutdown >/dev/null 2>&1 || true
  fi
}

fail() {
  echo "bazel/check.sh: $*" >&2
  shutdown_oneoff
  echo "bazel: build FAILED"
  exit 1
}

missing=()
command -v "$BAZEL" >/dev/null || missing+=("$BAZEL (apt-get install bazel-bootstrap)")
command -v pkg-config >/dev/null || missing+=("pkg-config (apt-get install pkg-config)")
[[ -x /usr/bin/protoc ]] || missing+=("/usr/bin/protoc (apt-get install protobuf-compiler)")
if ((${#missing[@]})); then
  fail "missing: ${missing[*]}"
fi

echo "== bazel build ${TARGETS[*]} $*"
if ! "$BAZEL" "${STARTUP[@]}" build "$@" -- "${TARGETS[@]}"; then
  fail "bazel build failed"
fi

echo "== bazel test ${TARGETS[*]} $*"
log=$(mktemp "${TMPDIR:-/tmp}/locus-bazel-test.XXXXXX")
trap 'rm -f "$log"' EXIT
"$BAZEL" "${STARTUP[@]}" test --keep_going --test_summary=short "$@" -- "${TARGETS[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# One summary line per test target: "//pkg:name  (cached) PASSED in 0.1s".
passed=$(grep -cE '^//[^ ]+ +(\(cached\) +)?PASSED' "$log")
failed=$(grep -cE '^//[^ ]+ +(\(cached\) +)?(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY|REMOTE FAILURE|FAILED TO BUILD)' "$log")
# Bazel does not always list every test that failed to build; its closing
# "Executed N out of M tests" line has the total.
total=$(sed -nE 's/^Executed [0-9]+ out of ([0-9]+) tests?:.*/\1/p' "$log" | tail -1)
if [[ -n $total ]] && ((total - passed > failed)); then
  failed=$((total - passed))
fi

case $rc in
  0) ;;
  4)  # Bazel: build OK but no test targets matched.
    echo "bazel/check.sh: no test targets found" >&2
    rc=1 ;;
  *)
    if ((failed == 0)); then
      failed=1  # the build of a test failed, or bazel itself did
    fi ;;
esac
shutdown_oneoff
echo "bazel: ${passed} passed, ${failed} failed"
exit "$rc"
