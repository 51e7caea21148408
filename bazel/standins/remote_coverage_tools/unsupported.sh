#!/bin/sh
# Stand-in for the coverage tools Bazel would download: coverage is not
# available in the offline Bazel build (use the CMake build for coverage).
echo "bazel coverage is not supported in Locus's offline Bazel setup; use the CMake build" >&2
exit 1
