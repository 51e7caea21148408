// locusc: the Locus IDL compiler. protoc with two generators built in:
// protobuf's C++ generator (--cpp_out) and Locus's (--locus_out), plus the
// import paths for Locus's IDL (locus/options.proto, locus/rmi.proto) and the
// well-known types. See codegen/README.md.
#include <sys/stat.h>

#include <iostream>
#include <sstream>
#include <string>
#include <system_error>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "codegen/locus_generator.h"
#include "google/protobuf/compiler/command_line_interface.h"
#include "google/protobuf/compiler/cpp/generator.h"
#include "google/protobuf/stubs/common.h"

#ifndef LOCUS_VERSION
#define LOCUS_VERSION "unknown"
#endif
#ifndef LOCUS_SOURCE_IDL_DIR
#define LOCUS_SOURCE_IDL_DIR ""
#endif
#ifndef LOCUS_INSTALLED_IDL_DIR
#define LOCUS_INSTALLED_IDL_DIR ""
#endif
#ifndef LOCUS_PROTOBUF_INCLUDE_DIR
#define LOCUS_PROTOBUF_INCLUDE_DIR "/usr/include"
#endif

namespace {

constexpr char kUsage[] =
    R"(Usage: locusc [OPTION]... PROTO_FILE...
Compiles .proto files into C++ messages (foo.pb.h/.cc, protobuf's C++
generator) and Locus stubs and services (foo.locus.h/.cc).

  --out=DIR              Write both the C++ messages and the Locus code to DIR
                         (created if missing). Same as --cpp_out=DIR
                         --locus_out=DIR.
  -IPATH, --proto_path=PATH
                         Directory in which to search for imports (repeatable).
                         Default: the current directory.
  --cpp_out=DIR          Only the protobuf C++ messages.
  --locus_out=DIR        Only the Locus code.
  --version              Print the version and exit.
  -h, --help             Print this help and exit.

The import paths for Locus's IDL ("locus/options.proto", "locus/rmi.proto")
and the protobuf well-known types ("google/protobuf/empty.proto", ...) are
added automatically, after yours. Set LOCUS_IDL_DIR to override where Locus's
IDL is looked up.
Any other protoc option (--descriptor_set_out, --dependency_out, --plugin,
--foo_out, ...) is passed through to protoc's command-line interface.

Errors are reported as "file.proto:LINE:COL: message"; the exit code is then
1 and no file is written.
)";

bool FileExists(const std::string& path) {
  struct stat st;
  return !path.empty() && stat(path.c_str(), &st) == 0;
}

// The directory holding Locus's IDL, the files users import: the first of
// $LOCUS_IDL_DIR, the source tree (in-tree builds) and the installed share dir
// that holds all of them.
std::string LocusIdlDir() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("LOCUS_IDL_DIR"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  }
  candidates.push_back(LOCUS_SOURCE_IDL_DIR);
  candidates.push_back(LOCUS_INSTALLED_IDL_DIR);
  for (const std::string& dir : candidates) {
    if (FileExists(dir + "/locus/options.proto") && FileExists(dir + "/locus/rmi.proto")) {
      return dir;
    }
  }
  return "";
}

std::string ProtobufIncludeDir() {
  for (const char* dir : {LOCUS_PROTOBUF_INCLUDE_DIR, "/usr/include", "/usr/local/include"}) {
    if (FileExists(std::string(dir) + "/google/protobuf/descriptor.proto")) return dir;
  }
  return "";
}

bool IsImportPathFlag(const std::string& arg) {
  return absl::StartsWith(arg, "-I") || absl::StartsWith(arg, "--proto_path");
}

}  // namespace

int main(int argc, char* argv[]) {
  std::vector<std::string> args = {argv[0]};
  bool has_import_path = false;
  std::vector<std::string> out_dirs;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "locusc " << LOCUS_VERSION << " (libprotoc "
                << google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION) << ")\n";
      return 0;
    }
    if (arg == "--out" || absl::StartsWith(arg, "--out=")) {
      std::string dir;
      if (arg == "--out") {
        if (i + 1 >= argc) {
          std::cerr << "locusc: --out needs a directory\n";
          return 1;
        }
        dir = argv[++i];
      } else {
        dir = arg.substr(6);
      }
      if (dir.empty()) {
        std::cerr << "locusc: --out needs a directory\n";
        return 1;
      }
      out_dirs.push_back(dir);
      args.push_back("--cpp_out=" + dir);
      args.push_back("--locus_out=" + dir);
      continue;
    }
    if (IsImportPathFlag(arg)) has_import_path = true;
    args.push_back(arg);
  }
  if (argc == 1) {
    std::cerr << kUsage;
    return 1;
  }

  // protoc's default import path "." applies only without any -I; keep it
  // when we add ours.
  std::vector<std::string> extra;
  if (!has_import_path) extra.push_back("-I.");
  if (std::string dir = LocusIdlDir(); !dir.empty()) extra.push_back("-I" + dir);
  if (std::string dir = ProtobufIncludeDir(); !dir.empty()) extra.push_back("-I" + dir);
  // protoc reads all flags before any file, and searches import paths in
  // order: ours come after the user's.
  std::vector<std::string> final_args = args;
  final_args.insert(final_args.end(), extra.begin(), extra.end());

  for (const std::string& dir : out_dirs) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::cerr << "locusc: cannot create " << dir << ": " << ec.message() << "\n";
      return 1;
    }
  }

  google::protobuf::compiler::CommandLineInterface cli;
  cli.SetVersionInfo(std::string("locusc ") + LOCUS_VERSION);
  cli.AllowPlugins("protoc-");
  google::protobuf::compiler::cpp::CppGenerator cpp_generator;
  cli.RegisterGenerator("--cpp_out", "--cpp_opt", &cpp_generator, "Generate C++ messages.");
  locus::codegen::LocusGenerator locus_generator;
  cli.RegisterGenerator("--locus_out", "--locus_opt", &locus_generator,
                        "Generate Locus stubs and services.");

  std::vector<const char*> cargv;
  cargv.reserve(final_args.size());
  for (const std::string& arg : final_args) cargv.push_back(arg.c_str());

  // protoc prefixes a generator's errors with its flag ("--locus_out: ");
  // ours already start with "file.proto:LINE:COL:", so drop the prefix.
  std::stringstream captured;
  std::streambuf* saved = std::cerr.rdbuf(captured.rdbuf());
  int rc = cli.Run(static_cast<int>(cargv.size()), cargv.data());
  std::cerr.rdbuf(saved);
  std::string line;
  while (std::getline(captured, line)) {
    constexpr absl::string_view kPrefix = "--locus_out: ";
    if (absl::StartsWith(line, kPrefix)) line = line.substr(kPrefix.size());
    std::cerr << line << "\n";
  }
  return rc;
}
