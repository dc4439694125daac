// Host tests of the sampler's draws (cuda/sample_math.cuh): the exact functions sample.cu runs.
// Build: g++ -std=c++17 -O1 -Icuda tests/cpp/test_sample_math.cpp && ./a.out
#include <cmath>
#include <cstdio>
#include <set>
#include <vector>

#include "check.h"
#include "sample_math.cuh"

using ut::i64;
using ut::u64;


// Reference values shared with tests/samplers/sampling/test_sampler.py (the Numba port must match them).
static void test_known_values() {
  CHECK(ut::mix64(0) == 0ULL, "mix64(0) = %llu", ut::mix64(0));
  CHECK(ut::mix64(1) == 0x5692161D100B05E5ULL, "mix64(1) = %llx", ut::mix64(1));
  CHECK(ut::draw(42, 7, 0) == ut::draw(42, 7, 0), "draw is not a pure function");
  CHECK(ut::draw(42, 7, 0) == 11404588283923461343ULL, "draw(42, 7, 0) = %llu", ut::draw(42, 7, 0));
  CHECK(ut::draw(123456789ULL, 1000000, 3) == 2354254935084745847ULL,
        "draw(123456789, 1000000, 3) = %llu", ut::draw(123456789ULL, 1000000, 3));
}

static void test_num_picks() {
  CHECK(ut::num_picks(0, 5, false) == 0, "deg 0");
  CHECK(ut::num_picks(0, -1, true) == 0, "deg 0 all");
  CHECK(ut::num_picks(3, 5, false) == 3, "low degree takes all");
  CHECK(ut::num_picks(3, 5, true) == 5, "with replacement draws fanout");
  CHECK(ut::num_picks(10, 5, false) == 5, "fanout respected");
  CHECK(ut::num_picks(10, -1, false) == 10, "fanout -1");
  CHECK(ut::num_picks(10, -1, true) == 10, "fanout -1 with replacement");
  CHECK(ut::num_picks(5, 5, false) == 5, "deg == fanout");
  CHECK(ut::take_all(5, 5, false), "deg == fanout takes all");
  CHECK(!ut::take_all(5, 5, true), "replace never takes all for fanout > 0");
  CHECK(ut::num_picks(1LL << 40, 7, false) == 7, "huge degree");
}

static void test_with_replacement() {
  const i64 deg = 37, draws = 37 * 4000;
  std::vector<i64> hist(deg, 0);
  bool in_range = true;
  for (i64 node = 0; node < 4000; ++node)
    for (i64 t = 0; t < deg; ++t) {
      const i64 p = ut::pick_with_replacement(99, node, t, deg);
      if (p < 0 || p >= deg) in_range = false;
      else hist[p]++;
    }
  CHECK(in_range, "draw out of [0, deg)");
  // Chi-square with deg-1 = 36 degrees of freedom; 99.9th percentile ~ 67.98.
  const double expect = (double)draws / deg;
  double chi2 = 0;
  for (i64 c : hist) chi2 += (c - expect) * (c - expect) / expect;
  CHECK(chi2 < 68.0, "with-replacement chi2 = %f", chi2);
  CHECK(ut::pick_with_replacement(5, 6, 7, 1000) == ut::pick_with_replacement(5, 6, 7, 1000),
        "deterministic");
  CHECK(ut::uniform_below(~0ULL, 1) == 0, "uniform_below(., 1)");
  CHECK(ut::uniform_below(~0ULL, 1LL << 40) < (1LL << 40), "uniform_below large n");
}

static void test_floyd() {
  // No duplicates, in range, k entries, for many (deg, k).
  bool ok_range = true, ok_unique = true;
  for (i64 deg = 1; deg <= 40; ++deg)
    for (i64 k = 1; k <= deg; ++k)
      for (i64 node = 0; node < 5; ++node) {
        std::vector<i64> sel(k, -1);
        ut::floyd_pick(1234, node, deg, k, sel.data());
        std::set<i64> s(sel.begin(), sel.end());
        if ((i64)s.size() != k) ok_unique = false;
        for (i64 x : sel)
          if (x < 0 || x >= deg) ok_range = false;
      }
  CHECK(ok_unique, "floyd_pick returned a duplicate");
  CHECK(ok_range, "floyd_pick out of range");

  // k == deg returns a permutation; int32 output type works.
  std::vector<int> perm(9, -1);
  ut::floyd_pick(7, 3, 9, 9, perm.data());
  std::set<int> ps(perm.begin(), perm.end());
  CHECK(ps.size() == 9 && *ps.begin() == 0 && *ps.rbegin() == 8, "k == deg is a permutation");

  // Determinism.
  std::vector<i64> a(5), b(5);
  ut::floyd_pick(77, 12345, 100, 5, a.data());
  ut::floyd_pick(77, 12345, 100, 5, b.data());
  CHECK(a == b, "floyd_pick is not deterministic");
  ut::floyd_pick(78, 12345, 100, 5, b.data());
  CHECK(a != b, "floyd_pick ignores the key");

  // Uniform marginals: each position is picked with probability k / deg.
  const i64 deg = 20, k = 5, trials = 40000;
  std::vector<i64> hist(deg, 0);
  std::vector<i64> sel(k);
  for (i64 node = 0; node < trials; ++node) {
    ut::floyd_pick(2024, node, deg, k, sel.data());
    for (i64 x : sel) hist[x]++;
  }
  const double expect = (double)trials * k / deg;
  double chi2 = 0;
  for (i64 c : hist) chi2 += (c - expect) * (c - expect) / expect;
  // 19 degrees of freedom, 99.9th percentile ~ 43.8 (marginals are slightly negatively
  // correlated, which only lowers the statistic).
  CHECK(chi2 < 43.8, "floyd chi2 = %f", chi2);

  // Uniform over the C(4, 2) = 6 subsets.
  std::vector<i64> pairs(16, 0);
  for (i64 node = 0; node < 60000; ++node) {
    i64 s2[2];
    ut::floyd_pick(5, node, 4, 2, s2);
    const i64 lo = s2[0] < s2[1] ? s2[0] : s2[1], hi = s2[0] < s2[1] ? s2[1] : s2[0];
    pairs[lo * 4 + hi]++;
  }
  double chi2p = 0;
  int nonzero = 0;
  for (i64 c : pairs)
    if (c) {
      ++nonzero;
      chi2p += (c - 10000.0) * (c - 10000.0) / 10000.0;
    }
  CHECK(nonzero == 6, "subsets seen: %d", nonzero);
  CHECK(chi2p < 20.5, "subset chi2 = %f", chi2p);  // 5 dof, 99.9th percentile 20.5
}

// Exclusion before the draws: lower_bound_i64 and nth_kept against brute force.
static void test_excluded_positions() {
  const std::vector<i64> ex = {3, 4, 7, 10, 11, 12, 20};
  const i64 n = (i64)ex.size();
  for (i64 x = -1; x <= 22; ++x) {
    i64 want = 0;
    while (want < n && ex[want] < x) ++want;
    CHECK(ut::lower_bound_i64(ex.data(), n, x) == want, "lower_bound(%lld)", (long long)x);
  }
  CHECK(ut::lower_bound_i64(ex.data(), 0, 5) == 0, "empty");
  // Nodes as ranges [start, start + deg) of positions 0..24.
  const i64 ranges[][2] = {{0, 5}, {3, 2}, {5, 9}, {10, 3}, {13, 12}, {0, 25}};
  for (const auto& rg : ranges) {
    const i64 start = rg[0], deg = rg[1];
    const i64 lo = ut::lower_bound_i64(ex.data(), n, start);
    const i64 hi = ut::lower_bound_i64(ex.data(), n, start + deg);
    std::vector<i64> kept;
    for (i64 p = start; p < start + deg; ++p) {
      bool x = false;
      for (i64 e : ex) x = x || e == p;
      if (!x) kept.push_back(p);
    }
    CHECK((i64)kept.size() == deg - (hi - lo), "kept count of [%lld, +%lld)", (long long)start,
          (long long)deg);
    for (i64 r = 0; r < (i64)kept.size(); ++r)
      CHECK(ut::nth_kept(start, r, ex.data(), lo, hi) == kept[r], "nth_kept(%lld, %lld)",
            (long long)start, (long long)r);
  }
}

int main() {
  test_excluded_positions();
  test_known_values();
  test_num_picks();
  test_with_replacement();
  test_floyd();
  return report("test_sample_math");
}
