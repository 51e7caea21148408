// protoc-gen-locus: the Locus generator as a protoc plugin.
//   protoc --plugin=protoc-gen-locus=build/bin/protoc-gen-locus
//          -I protos -I <locus>/idl --cpp_out=gen --locus_out=gen foo.proto
#include "codegen/locus_generator.h"
#include "google/protobuf/compiler/plugin.h"

int main(int argc, char* argv[]) {
  locus::codegen::LocusGenerator generator;
  return google::protobuf::compiler::PluginMain(argc, argv, &generator);
}
