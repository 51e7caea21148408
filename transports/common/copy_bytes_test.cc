#include "transports/common/copy_bytes.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace locus::internal {
namespace {

std::string Pattern(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
  return out;
}

// Every distance class (fast, the slow window, around its edges) and sizes
// around the chunk size copy exactly the bytes memcpy would.
TEST(CopyBytes, CopiesLikeMemcpyAtEveryDistance) {
  std::vector<char> arena(64 << 10);
  for (size_t size : {0, 1, 2047, 2048, 2049, 4096, 4097, 10000}) {
    const std::string source = Pattern(size);
    for (size_t distance : {0, 1, 16, 31, 32, 63, 64, 65, 4095}) {
      char* src = arena.data() + 64;
      char* dst = arena.data() + 4096 * 4 + 64 + distance;  // (dst - src) mod 4 KiB == distance
      std::copy(source.begin(), source.end(), src);
      std::fill(dst, dst + size + 16, '\x5a');
      CopyBytes(dst, src, size);
      EXPECT_EQ(std::string(dst, size), source) << "size " << size << " distance " << distance;
      EXPECT_EQ(dst[size], '\x5a') << "wrote past the end";
      EXPECT_EQ(IsSlowCopy(dst, src, size), size > kCopyChunkBytes && distance > 0 && distance < 64);
    }
  }
}

TEST(CopyBytes, AppendsLikeStringAppend) {
  for (size_t prefix : {0, 5, 40}) {
    for (size_t size : {0, 100, 2048, 2049, 5000, 70000}) {
      const std::string bytes = Pattern(size);
      std::string out(prefix, 'p');
      AppendBytes(&out, bytes.data(), bytes.size());
      EXPECT_EQ(out, std::string(prefix, 'p') + bytes) << "prefix " << prefix << " size " << size;
    }
  }
}

}  // namespace
}  // namespace locus::internal
