// Index math of the zero-copy row gather (gather.cu). Host and device share this code; the CPU
// tests in tests/cpp/test_gather_math.cpp exercise these exact functions.
#pragma once
#include "ut_common.cuh"

namespace ut {

// Largest load width in bytes (16, 8, 4, 2 or 1) that divides the row size and both base
// addresses, so every vector load and store of every row is naturally aligned.
UT_HD int vec_bytes(u64 row_bytes, u64 src_addr, u64 dst_addr) {
  const u64 all = row_bytes | src_addr | dst_addr;
  if (all % 16 == 0) return 16;
  if (all % 8 == 0) return 8;
  if (all % 4 == 0) return 4;
  if (all % 2 == 0) return 2;
  return 1;
}

// Number of lanes that cooperate on one row: the smallest power of two >= the row's vector
// units, capped at a warp. Short rows use sub-warps so a warp still moves several rows at once.
UT_HD int group_size(i64 units) {
  int g = 1;
  while (g < kWarpSize && (i64)g < units) g <<= 1;
  return g;
}

// Units of `vec` bytes between `addr` and the aligned chunk boundary at or below it. The chunk is
// what one pass of the group reads: min(128, group * vec) bytes, a power of two that divides the
// 128-byte line. Lanes start at that boundary, so every pass reads one aligned chunk inside one
// line (or, for 16-byte lanes of a full warp, four whole lines), and a shifted row needs at most
// one pass more than an unshifted one.
UT_HD int align_shift(u64 addr, int vec, int group) {
  u64 chunk = (u64)group * (u64)vec;
  if (chunk > (u64)kLineBytes) chunk = (u64)kLineBytes;
  return (int)((addr % chunk) / (u64)vec);
}

// The unit of the row that `lane` moves on pass `pass`, or -1 when the lane idles on that pass
// (before the row start or past its end). Passes run while pass * group < units + shift.
UT_HD i64 lane_unit(int lane, i64 pass, int group, int shift, i64 units) {
  const i64 u = pass * (i64)group + (i64)lane - (i64)shift;
  return (u >= 0 && u < units) ? u : -1;
}

// Number of passes a group of `group` lanes needs for a row of `units` units with `shift`.
UT_HD i64 num_passes(i64 units, int shift, int group) {
  return (units + (i64)shift + group - 1) / group;
}

// Python-style index wrap. Returns the row in [0, n) or -1 when `i` is out of range.
UT_HD i64 wrap_index(i64 i, i64 n) {
  if (i < 0) i += n;
  return (i >= 0 && i < n) ? i : -1;
}

// Vector unit of `VEC` bytes.
template <int VEC> struct VecT;
template <> struct VecT<1> { typedef unsigned char type; };
template <> struct VecT<2> { typedef unsigned short type; };
template <> struct VecT<4> { typedef unsigned int type; };
template <> struct VecT<8> { typedef u64 type; };
struct alignas(16) U128 { u64 lo, hi; };
template <> struct VecT<16> { typedef U128 type; };

}  // namespace ut
