#!/bin/sh
# Runs a CTest-style shell test under `bazel test`.
#
#   ctest_shim.sh [@setenv:NAME=VALUE]... SCRIPT [ARG]...
#
# CTest passes absolute paths and build-dir scratch directories; Bazel gives
# runfiles-relative paths and $TEST_TMPDIR. In each VALUE and ARG:
#   @abs:PATH   becomes $PWD/PATH (the runfiles root: scripts that cd
#               elsewhere still find the tool);
#   @tmp:NAME   becomes $TEST_TMPDIR/NAME.
# @setenv: arguments are exported and dropped. SCRIPT is then exec'd.
set -eu

subst() {
  case $1 in
    @abs:*) printf '%s\n' "$PWD/${1#@abs:}" ;;
    @tmp:*) printf '%s\n' "${TEST_TMPDIR:?}/${1#@tmp:}" ;;
    *) printf '%s\n' "$1" ;;
  esac
}

n=$#
i=0
while [ "$i" -lt "$n" ]; do
  arg=$1
  shift
  i=$((i + 1))
  case $arg in
    @setenv:*=*)
      kv=${arg#@setenv:}
      name=${kv%%=*}
      value=$(subst "${kv#*=}")
      export "$name=$value"
      ;;
    *)
      set -- "$@" "$(subst "$arg")"
      ;;
  esac
done
exec "$@"
