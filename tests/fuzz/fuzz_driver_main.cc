// Runs a libFuzzer-style target without libFuzzer: every file in the corpus
// directories given on the command line, then `--mutations=N` deterministic
// mutations (bit flips, byte changes, truncations, splices) of each. Used by
// CTest so every build replays the corpora (the seeds make_seed_corpus
// writes, and the regression corpus checked in under tests/fuzz/corpus/);
// real fuzzing uses -DLOCUS_FUZZ=ON.
//
// A corpus file named "valid-..." is a well-formed input that must get
// somewhere: after running it (unmutated) the target's LocusFuzzReached()
// must be non-zero (handlers reached, frames decoded, a setup accepted),
// else the run fails. The targets abort on their own invariants.
#include <dirent.h>

#include <algorithm>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// What the last input got through (defined by each target).
extern "C" size_t LocusFuzzReached();

namespace {

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

struct CorpusFile {
  std::string name;
  std::string bytes;
};

// The files of `dir`, sorted by name; false if it cannot be read.
bool ReadCorpus(const std::string& dir, std::vector<CorpusFile>* out) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    out->push_back({dir + "/" + name, buffer.str()});
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 200;
  std::vector<CorpusFile> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--mutations=", 12) == 0) {
      mutations = std::atol(argv[i] + 12);
    } else {
      const size_t before = files.size();
      if (!ReadCorpus(argv[i], &files) || files.size() == before) {
        // Every directory named must hold inputs: a missing corpus must not
        // pass for a replayed one.
        std::fprintf(stderr, "no corpus files in %s\n", argv[i]);
        return 1;
      }
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "no corpus files found\n");
    return 1;
  }
  std::vector<std::string> corpus;
  for (const CorpusFile& file : files) corpus.push_back(file.bytes);
  std::mt19937_64 rng(42);
  size_t runs = 0;
  size_t valid = 0;
  for (const CorpusFile& file : files) {
    const std::string& seed = file.bytes;
    Run(seed);
    ++runs;
    const std::string base = file.name.substr(file.name.rfind('/') + 1);
    if (base.rfind("valid-", 0) == 0) {
      ++valid;
      if (LocusFuzzReached() == 0) {
        std::fprintf(stderr, "FAIL: %s is a valid input but got nowhere (LocusFuzzReached() == 0)\n",
                     file.name.c_str());
        return 1;
      }
    }
    for (long m = 0; m < mutations; ++m) {
      std::string input = seed;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !input.empty(); ++e) {
        size_t pos = rng() % input.size();
        switch (rng() % 5) {
          case 0: input[pos] ^= static_cast<char>(1u << (rng() % 8)); break;
          case 1: input[pos] = static_cast<char>(rng()); break;
          case 2: input.resize(pos); break;
          case 3: input.insert(pos, corpus[rng() % corpus.size()]); break;
          case 4: input.insert(pos, std::string(1 + rng() % 8, static_cast<char>(rng()))); break;
        }
      }
      Run(input);
      ++runs;
    }
  }
  if (valid == 0) {
    std::fprintf(stderr, "FAIL: no \"valid-\" input in the corpora: nothing shows the target is reached\n");
    return 1;
  }
  std::printf("%zu inputs ran without a crash or a broken invariant; %zu valid ones got through\n", runs,
              valid);
  return 0;
}
