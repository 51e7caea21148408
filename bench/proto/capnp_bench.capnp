# Cap'n Proto baseline of locus-bench (bench/harness/capnp_cases.cc): the same
# echo as proto/locus_bench.proto. Compiled with `capnp compile -oc++` when
# CMake finds Cap'n Proto (libcapnp-dev + capnproto).
@0xf324c54002b9cb9f;

$import "/capnp/c++.capnp".namespace("locus_bench_capnp");

interface Bench {
  echo @0 (data :Data) -> (data :Data);
}
