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
#   make tsan    build into build-tsan/ with clang, ThreadSanitizer and
#                -Wthread-safety as errors, against an Abseil built with TSan
#                (tools/tsan_abseil.sh, cached in ~/.cache/locus), and run CTest
#   make fuzz    libFuzzer runs of the fuzz targets, FUZZ_SECONDS (60) each
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

.PHONY: all deps configure build demo test ctest bazel-test asan tsan tsan-deps fuzz thread-safety bench clean

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

# Debian's deb-src entry and dpkg-dev, for tools/tsan_abseil.sh.
tsan-deps: deps
	@./tools/install_deps.sh dpkg-dev
	@./tools/enable_deb_src.sh

tsan: tsan-deps
	CC=clang CXX=clang++ cmake -S . -B build-tsan -G Ninja -DLOCUS_TSAN=ON -DLOCUS_THREAD_SAFETY=ON \
	  -DLOCUS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_PREFIX_PATH="$$(JOBS=$(JOBS) ./tools/tsan_abseil.sh)"
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tools/tsan.supp" \
	  ctest --output-on-failure --no-tests=error -j $(JOBS) --timeout 900 -LE install

# libFuzzer runs of the fuzz targets, FUZZ_SECONDS each (clang, ASan, UBSan).
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DLOCUS_FUZZ=ON -DLOCUS_BUILD_BENCH=OFF \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-fuzz -j $(JOBS) --target wire_fuzzer shm_fuzzer wire_fuzzer_corpus
	./tools/run_fuzzers.sh build-fuzz $(FUZZ_SECONDS)

thread-safety: deps
	CC=clang CXX=clang++ cmake -S . -B build-clang -G Ninja -DLOCUS_THREAD_SAFETY=ON -DLOCUS_BUILD_BENCH=OFF
	cmake --build build-clang -j $(JOBS)

bench: deps
	JOBS=$(JOBS) ./bench/update_perf_docs.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-clang
