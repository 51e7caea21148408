#!/usr/bin/env bash
# Install test: installs a Locus build tree to a temporary prefix, then
# configures, builds and runs the consumer project against that prefix.
#
#   run_install_test.sh <locus-build-dir> <consumer-source-dir> [<work-dir>]
#
# Exits non-zero if any step fails.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 <locus-build-dir> <consumer-source-dir> [<work-dir>]" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
consumer_src=$(cd "$2" && pwd)
work=${3:-}
if [[ -z "$work" ]]; then
  work=$(mktemp -d /tmp/locus-install-test.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
prefix=$work/prefix
consumer_build=$work/consumer-build
rm -rf "$prefix" "$consumer_build"
mkdir -p "$work"

step() { echo "== $*"; }

step "installing $build_dir to $prefix"
cmake --install "$build_dir" --prefix "$prefix" > "$work/install.log" || {
  cat "$work/install.log"; echo "FAIL: cmake --install" >&2; exit 1; }

step "checking installed files"
missing=0
for f in include/locus/locus.h include/locus/server.h include/locus/channel.h \
         include/locus/codegen_support.h include/locus/object.h include/locus/fd.h \
         include/locus/options.pb.h include/locus/rmi.pb.h include/locus/wire.pb.h \
         lib/liblocus.a lib/liblocus_idl.a bin/locusc bin/protoc-gen-locus \
         share/locus/idl/locus/options.proto share/locus/idl/locus/rmi.proto \
         share/locus/idl/locus/wire.proto \
         lib/cmake/Locus/LocusConfig.cmake lib/cmake/Locus/LocusConfigVersion.cmake \
         lib/cmake/Locus/LocusTargets.cmake lib/cmake/Locus/LocusGenerate.cmake; do
  if [[ ! -e "$prefix/$f" ]]; then
    echo "missing: $f" >&2
    missing=1
  fi
done
if [[ -e "$prefix/include/locus/internal" ]] || find "$prefix/include" -path '*internal*' | grep -q .; then
  echo "runtime/internal headers must not be installed" >&2
  missing=1
fi
[[ $missing -eq 0 ]] || { echo "FAIL: installed tree incomplete" >&2; exit 1; }

step "configuring the consumer project"
# Only the temporary prefix: no package registry, no system-wide Locus.
cmake -S "$consumer_src" -B "$consumer_build" -G Ninja \
      -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
      -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$work/configure.log" 2>&1 || {
  cat "$work/configure.log"; echo "FAIL: consumer configure" >&2; exit 1; }
grep "Locus .* from" "$work/configure.log" || true
if ! grep -q "from $prefix/" "$work/configure.log"; then
  echo "FAIL: consumer did not use the Locus installed in $prefix" >&2
  exit 1
fi

step "building the consumer project"
cmake --build "$consumer_build" -j2 > "$work/build.log" 2>&1 || {
  cat "$work/build.log"; echo "FAIL: consumer build" >&2; exit 1; }

step "running the consumer"
rc=0
out=$(timeout 60 "$consumer_build/greeter") || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "$out"; echo "FAIL: greeter exited with $rc" >&2; exit 1
fi
echo "$out"
grep -q "^reply: Hello, installed Locus!" <<<"$out" || { echo "FAIL: no reply" >&2; exit 1; }
echo "PASS"
