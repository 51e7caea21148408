# Locus: the two commands of the README, and a few helpers.
#
#   make demo    install what is missing, build, run the samples' demos: echo
#                (a server and client) and files (remote objects)
#   make test    install what is missing, build, run every CTest test and the
#                Bazel build and tests
#   make build   build everything into build/ (incremental), no tests
#   make asan    build into build-asan/ with AddressSanitizer+UBSan and run CTest
#   make thread-safety
#                build into build-clang/ with clang's -Wthread-safety as errors
#                (every ABSL_GUARDED_BY annotation checked)
#   make bench   run the benchmark of docs/performance.md (Release build in
#                build-bench/) and rewrite docs/perf/ (bench/update_perf_docs.sh)
#   make deps    only install missing Debian packages
#
# JOBS (default: number of cores) bounds build parallelism.

JOBS ?= $(shell nproc)
BUILD_DIR ?= build
CMAKE_FLAGS ?=

# Debian 12 packages the build and tests need.
DEBIAN_PACKAGES := build-essential cmake ninja-build pkg-config \
  libprotobuf-dev libprotoc-dev protobuf-compiler \
  libgrpc++-dev protobuf-compiler-grpc libabsl-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  bazel-bootstrap gnuplot-nox clang

.PHONY: all deps configure build demo test ctest bazel-test asan thread-safety bench clean

all: build

deps:
	@./tools/install_deps.sh $(DEBIAN_PACKAGES)

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/build.ninja

build: deps configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	./samples/echo/demo.sh $(BUILD_DIR)/bin
	./samples/files/demo.sh $(BUILD_DIR)/bin

ctest: build
	cd $(BUILD_DIR) && ctest --output-on-failure --no-tests=error -j $(JOBS) --timeout 900

bazel-test: deps
	./bazel/check.sh

test: ctest bazel-test

asan: deps
	cmake -S . -B build-asan -G Ninja -DLOCUS_SANITIZE=ON -DLOCUS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure --no-tests=error -j $(JOBS) --timeout 900 -LE install

thread-safety: deps
	CC=clang CXX=clang++ cmake -S . -B build-clang -G Ninja -DLOCUS_THREAD_SAFETY=ON -DLOCUS_BUILD_BENCH=OFF
	cmake --build build-clang -j $(JOBS)

bench: deps
	JOBS=$(JOBS) ./bench/update_perf_docs.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-clang
