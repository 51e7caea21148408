// Runs a libFuzzer-style target without libFuzzer: every file in the corpus
// directories given on the command line, then `--mutations=N` deterministic
// mutations (bit flips, byte changes, truncations, splices) of each. Used by
// CTest so every build replays the corpus; real fuzzing uses -DLOCUS_FUZZ=ON.
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

namespace {

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::vector<std::string> ReadCorpus(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
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
    out.push_back(buffer.str());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 200;
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--mutations=", 12) == 0) {
      mutations = std::atol(argv[i] + 12);
    } else {
      std::vector<std::string> files = ReadCorpus(argv[i]);
      corpus.insert(corpus.end(), files.begin(), files.end());
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no corpus files found\n");
    return 1;
  }
  std::mt19937_64 rng(42);
  size_t runs = 0;
  for (const std::string& seed : corpus) {
    Run(seed);
    ++runs;
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
  std::printf("%zu inputs ran without a crash\n", runs);
  return 0;
}
