// Thrift baseline of locus-bench (bench/harness/thrift_cases.cc): the same
// echo as proto/locus_bench.proto. Compiled with `thrift --gen cpp` when CMake
// finds Thrift (libthrift-dev + thrift-compiler).
namespace cpp locus_bench_thrift

service Bench {
  binary echo(1: binary data)
}
