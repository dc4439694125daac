// Host test of cuda/gather_math.cuh: the functions gather.cu runs, executed lane by lane on the CPU.
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "check.h"
#include "gather_math.cuh"

using namespace ut;


static void test_vec_bytes() {
  CHECK(vec_bytes(512, 0x1000, 0x2000) == 16, "aligned");
  CHECK(vec_bytes(400, 0x1000, 0x2000) == 16, "400 = 25 * 16");
  CHECK(vec_bytes(1028, 0x1000, 0x2000) == 4, "1028 = 257 * 4");
  CHECK(vec_bytes(12, 0x1000, 0x2000) == 4, "12 bytes");
  CHECK(vec_bytes(6, 0x1000, 0x2000) == 2, "6 bytes");
  CHECK(vec_bytes(3, 0x1000, 0x2000) == 1, "3 bytes");
  CHECK(vec_bytes(512, 0x1004, 0x2000) == 4, "src offset 4");
  CHECK(vec_bytes(512, 0x1000, 0x2008) == 8, "dst offset 8");
  for (u64 row = 1; row < 300; ++row)
    for (u64 off = 0; off < 32; ++off) {
      int v = vec_bytes(row, 0x10000 + off, 0x20000);
      CHECK(row % v == 0 && (0x10000 + off) % v == 0, "row %llu off %llu v %d", row, off, v);
      CHECK(v == 16 || (row | off) % (2 * v) != 0, "not the widest: row %llu off %llu", row, off);
    }
}

static void test_group_size() {
  CHECK(group_size(1) == 1, "1");
  CHECK(group_size(2) == 2, "2");
  CHECK(group_size(3) == 4, "3");
  CHECK(group_size(32) == 32, "32");
  CHECK(group_size(33) == 32, "33");
  CHECK(group_size(1000) == 32, "1000");
}

static void test_align_shift() {
  CHECK(align_shift(0x1000, 4, 32) == 0, "aligned");
  CHECK(align_shift(0x1004, 4, 32) == 1, "one unit");
  CHECK(align_shift(0x107c, 4, 32) == 31, "last unit of the line");
  CHECK(align_shift(0x1010, 16, 32) == 1, "16-byte lanes: line is the chunk");
  CHECK(align_shift(0x1010, 16, 1) == 0, "one lane: chunk of 16 bytes");
  CHECK(align_shift(0x1018, 8, 2) == 1, "two 8-byte lanes: chunk of 16 bytes");
}

static void test_wrap() {
  CHECK(wrap_index(0, 5) == 0, "0");
  CHECK(wrap_index(4, 5) == 4, "4");
  CHECK(wrap_index(5, 5) == -1, "5");
  CHECK(wrap_index(-1, 5) == 4, "-1");
  CHECK(wrap_index(-5, 5) == 0, "-5");
  CHECK(wrap_index(-6, 5) == -1, "-6");
  CHECK(wrap_index(0, 0) == -1, "empty table");
}

// Simulates one group copying one row, every lane in turn, exactly as gather_rows does, and checks
// (1) the row is copied exactly, each unit exactly once; (2) with ALIGNED, every pass of the group
// reads within aligned 128-byte lines, and a pass of a full warp covers whole aligned lines.
template <int VEC, bool ALIGNED>
static void check_row(i64 row_bytes, u64 src_off) {
  const i64 units = row_bytes / VEC;
  const int group = group_size(units);
  std::vector<unsigned char> buf(row_bytes + 256 + 64), dst(row_bytes + 64, 0);
  // Host buffers get an address with the wanted offset within a 128-byte line.
  u64 base = (u64)buf.data();
  u64 aligned_base = (base + 127) / 128 * 128;
  unsigned char* src = (unsigned char*)(aligned_base + src_off);
  for (i64 i = 0; i < row_bytes; ++i) src[i] = (unsigned char)(i * 7 + 3);
  unsigned char* d = (unsigned char*)(((u64)dst.data() + 15) / 16 * 16);
  std::vector<int> touched(units, 0);
  const int shift = ALIGNED ? align_shift((u64)src, VEC, group) : 0;
  const i64 passes = num_passes(units, shift, group);
  for (i64 p = 0; p < passes; ++p) {
    u64 lo = ~0ull, hi = 0;
    for (int lane = 0; lane < group; ++lane) {
      i64 u = lane_unit(lane, p, group, shift, units);
      if (u < 0) continue;
      CHECK(u < units, "unit %lld out of row", (long long)u);
      touched[u]++;
      std::memcpy(d + u * VEC, src + u * VEC, VEC);
      u64 a = (u64)src + (u64)u * VEC;
      if (a < lo) lo = a;
      if (a + VEC > hi) hi = a + VEC;
    }
    if (ALIGNED && hi > lo) {
      const u64 span = (u64)group * VEC;  // bytes one pass of the group covers
      if (span <= (u64)kLineBytes) {
        CHECK(lo / kLineBytes == (hi - 1) / kLineBytes,
              "VEC %d row %lld off %llu pass %lld straddles a line", VEC, (long long)row_bytes,
              (unsigned long long)src_off, (long long)p);
        CHECK(lo / span == (hi - 1) / span, "pass leaves its aligned chunk");
      } else {
        // Wider passes (16-byte lanes) start on a line boundary and cover whole lines.
        const u64 first = (u64)src - (u64)shift * VEC + (u64)p * span;
        CHECK(first % kLineBytes == 0, "pass start not line aligned");
        CHECK(lo >= first && hi <= first + span, "pass outside its lines");
      }
    }
  }
  for (i64 u = 0; u < units; ++u) CHECK(touched[u] == 1, "unit %lld touched %d times", (long long)u, touched[u]);
  for (i64 i = 0; i < row_bytes; ++i)
    CHECK(d[i] == src[i], "VEC %d ALIGNED %d row %lld off %llu byte %lld differs", VEC, (int)ALIGNED,
          (long long)row_bytes, (unsigned long long)src_off, (long long)i);
  CHECK(passes <= (units + group - 1) / group + (ALIGNED ? 1 : 0), "too many passes: %lld for %lld units, group %d",
        (long long)passes, (long long)units, group);
}

template <int VEC>
static void check_all_rows() {
  for (i64 row = VEC; row <= 4 * 1024 + 64; row += VEC * (row < 600 ? 1 : 37))
    for (u64 off = 0; off < 128; off += VEC) {
      check_row<VEC, true>(row, off);
      check_row<VEC, false>(row, off);
    }
}

int main() {
  test_vec_bytes();
  test_group_size();
  test_align_shift();
  test_wrap();
  check_all_rows<1>();
  check_all_rows<2>();
  check_all_rows<4>();
  check_all_rows<8>();
  check_all_rows<16>();
  return report("test_gather_math");
}
