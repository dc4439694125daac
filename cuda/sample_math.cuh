// Draws of the uniform neighbour sampler (sample.cu). Host and device share this code, the Numba
// CPU sampler (samplers/sampling/_layer_cpu.py) implements the same arithmetic bit for bit, and the host
// tests in tests/cpp/test_sample_math.cpp exercise these exact functions.
//
// Randomness is counter based: every draw is a pure function of (key, node, t), where `key`
// identifies the sampler seed, the batch and the layer, `node` is the destination node and `t` the
// draw number. Results therefore never depend on thread scheduling, and the CPU and GPU paths
// produce the same samples.
#pragma once
#include "ut_common.cuh"

namespace ut {

static const u64 kGolden = 0x9E3779B97F4A7C15ULL;

// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
UT_HD u64 mix64(u64 z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The t-th 64-bit random number of `node` under `key`: element t of a SplitMix64 stream whose
// state is seeded from (key, node).
UT_HD u64 draw(u64 key, i64 node, i64 t) {
  const u64 state = mix64(key ^ ((u64)node * kGolden));
  return mix64(state + ((u64)t + 1ULL) * kGolden);
}

// A number in [0, n) from a 64-bit draw (n > 0). The modulo bias is below n / 2^64.
UT_HD i64 uniform_below(u64 r, i64 n) {
  return (i64)(r % (u64)n);
}

// Whether a node of in-degree `deg` keeps all its in-edges: fanout -1, or sampling without
// replacement from no more neighbours than the fanout.
UT_HD bool take_all(i64 deg, i64 fanout, bool replace) {
  return fanout < 0 || (!replace && deg <= fanout);
}

// Number of edges sampled for a node of in-degree `deg`.
UT_HD i64 num_picks(i64 deg, i64 fanout, bool replace) {
  if (deg <= 0) return 0;
  if (take_all(deg, fanout, replace)) return deg;
  return fanout;
}

// Position (in [0, deg)) of the t-th neighbour drawn with replacement.
UT_HD i64 pick_with_replacement(u64 key, i64 node, i64 t, i64 deg) {
  return uniform_below(draw(key, node, t), deg);
}

// Robert Floyd's algorithm: k distinct positions of [0, deg) (0 < k <= deg), uniformly among all
// k-subsets, written to sel[0..k). Step t draws r in [0, j] with j = deg - k + t and keeps r, or j
// when r was already taken. O(k^2) comparisons, no extra memory; `sel` may be global memory.
template <typename T>
UT_HD void floyd_pick(u64 key, i64 node, i64 deg, i64 k, T* sel) {
  for (i64 t = 0; t < k; ++t) {
    const i64 j = deg - k + t;
    const i64 r = uniform_below(draw(key, node, t), j + 1);
    bool taken = false;
    for (i64 q = 0; q < t; ++q) {
      if ((i64)sel[q] == r) {
        taken = true;
        break;
      }
    }
    sel[t] = (T)(taken ? j : r);
  }
}

// Excluded edges (link prediction: the seed edges and their reverses are removed before the
// draws, as DGL's sample_neighbors(exclude_edges=...) does). `ex` is an ascending array of
// excluded CSC positions; a node's in-edges are the positions [start, start + deg).

// First index of ex[0, n) holding a value >= x (n when none).
UT_HD i64 lower_bound_i64(const i64* ex, i64 n, i64 x) {
  i64 lo = 0, hi = n;
  while (lo < hi) {
    const i64 mid = lo + (hi - lo) / 2;
    if (ex[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Position of the r-th (0-based) kept in-edge of a node whose in-edges start at `start` and whose
// excluded positions are ex[lo, hi) (ascending, all inside the node's range): step over every
// excluded position at or before the candidate. O(hi - lo).
UT_HD i64 nth_kept(i64 start, i64 r, const i64* ex, i64 lo, i64 hi) {
  i64 pos = start + r;
  for (i64 q = lo; q < hi && ex[q] <= pos; ++q) ++pos;
  return pos;
}

}  // namespace ut
