// Host run of the kernel bodies themselves (cuda/gather.cu, cuda/sample.cu): every thread of a
// small grid runs in turn, with blockIdx/threadIdx/blockDim/gridDim emulated and the launch
// configurations the Python launchers use. Checks the grid-stride loops, sub-warp groups, the
// permutation, index wrapping and skipping, and the sampler's count/scan/fill hand-off, for int32
// and int64 ids and offsets.
//
// Threads run one after the other, in lane order: valid for these kernels, whose only intra-warp
// dependency (sample_fill: lane 0's Floyd draws, read by the other lanes after __syncwarp) goes
// from lane 0 to higher lanes, and whose lanes otherwise write disjoint elements.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

struct Dim3 {
  unsigned x, y, z;
};
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
static int atomicExch(int* p, int v) {
  const int old = *p;
  *p = v;
  return old;
}
static long long atomicMin(long long* p, long long v) {
  const long long old = *p;
  if (v < old) *p = v;
  return old;
}
static long long atomicMax(long long* p, long long v) {
  const long long old = *p;
  if (v > old) *p = v;
  return old;
}
static void __syncwarp(unsigned = 0xffffffffu) {}

#include "check.h"
#include "gather.cu"
#include "sample.cu"

using ut::i64;
using ut::u64;


template <typename F>
static void launch(unsigned grid, unsigned block, F body) {
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  for (unsigned b = 0; b < grid; ++b)
    for (unsigned t = 0; t < block; ++t) {
      blockIdx = {b, 0, 0};
      threadIdx = {t, 0, 0};
      body();
    }
}

// ------------------------------------------------------------------------------------- gather
// Mirrors unified_tensor/_gather_cuda.py: BLOCK 256, threads = min(ceil(m / BATCH) * group, cap).
static const unsigned kBlock = 256;
// The GPU row cache the next gathers read (null: none).
const char* g_cache = nullptr;
const int* g_slot_of = nullptr;

template <int VEC, bool ALIGNED, int BATCH, typename IdxT>
static void run_gather(const char* table, i64 n, i64 row_bytes, const IdxT* index, const i64* perm,
                       i64 m, char* out, i64 cap, i64* bad) {
  const int group = ut::group_size(row_bytes / VEC);
  const i64 threads = std::min<i64>((m + BATCH - 1) / BATCH * group, std::max<i64>(cap, kBlock));
  const unsigned grid = (unsigned)std::max<i64>(1, (threads + kBlock - 1) / kBlock);
  launch(grid, kBlock, [&] {
    ut::gather_rows<VEC, ALIGNED, IdxT, BATCH>(table, n, row_bytes, index, perm, m, out, group, bad,
                                                g_cache, g_slot_of);
  });
}

template <bool ALIGNED, int BATCH, typename IdxT>
static void dispatch_vec(int vec, const char* table, i64 n, i64 row_bytes, const IdxT* index,
                         const i64* perm, i64 m, char* out, i64 cap, i64* bad) {
  switch (vec) {
    case 16: run_gather<16, ALIGNED, BATCH>(table, n, row_bytes, index, perm, m, out, cap, bad); break;
    case 8: run_gather<8, ALIGNED, BATCH>(table, n, row_bytes, index, perm, m, out, cap, bad); break;
    case 4: run_gather<4, ALIGNED, BATCH>(table, n, row_bytes, index, perm, m, out, cap, bad); break;
    case 2: run_gather<2, ALIGNED, BATCH>(table, n, row_bytes, index, perm, m, out, cap, bad); break;
    default: run_gather<1, ALIGNED, BATCH>(table, n, row_bytes, index, perm, m, out, cap, bad); break;
  }
}

// Every rows-in-flight count the Python launcher compiles (1 and 4).
static int g_batch = 4;

template <bool ALIGNED, typename IdxT>
static void dispatch_gather(int vec, const char* table, i64 n, i64 row_bytes, const IdxT* index,
                            const i64* perm, i64 m, char* out, i64 cap, i64* bad) {
  if (g_batch == 1)
    dispatch_vec<ALIGNED, 1>(vec, table, n, row_bytes, index, perm, m, out, cap, bad);
  else
    dispatch_vec<ALIGNED, 4>(vec, table, n, row_bytes, index, perm, m, out, cap, bad);
}

template <typename IdxT>
static void check_gather(i64 row_bytes, u64 src_off, u64 dst_off, bool aligned, bool use_perm,
                         i64 cap, bool record_bad) {
  const i64 n = 53, m = 300;
  std::vector<unsigned char> tbuf(n * row_bytes + 256), obuf(m * row_bytes + 256);
  char* table = (char*)((((u64)tbuf.data() + 127) / 128 * 128) + src_off);
  char* out = (char*)((((u64)obuf.data() + 127) / 128 * 128) + dst_off);
  for (i64 i = 0; i < n * row_bytes; ++i) table[i] = (char)(i * 131 + 7);
  std::memset(out, 0xAB, m * row_bytes);
  std::vector<IdxT> index(m);
  for (i64 q = 0; q < m; ++q) index[q] = (IdxT)(((q * 7919) % (3 * n)) - n - 3);  // some out of range
  std::vector<i64> perm(m);
  for (i64 p = 0; p < m; ++p) perm[p] = p;
  std::sort(perm.begin(), perm.end(), [&](i64 a, i64 b) { return index[a] < index[b]; });
  const int vec = ut::vec_bytes(row_bytes, (u64)table, (u64)out);
  i64 bad[2] = {INT64_MAX, INT64_MIN};
  i64* badp = record_bad ? bad : nullptr;
  if (aligned)
    dispatch_gather<true>(vec, table, n, row_bytes, index.data(), use_perm ? perm.data() : nullptr,
                          m, out, cap, badp);
  else
    dispatch_gather<false>(vec, table, n, row_bytes, index.data(), use_perm ? perm.data() : nullptr,
                           m, out, cap, badp);
  i64 want_lo = INT64_MAX, want_hi = INT64_MIN;
  for (i64 q = 0; q < m; ++q) {
    const i64 row = ut::wrap_index((i64)index[q], n);
    if (row < 0) {
      want_lo = std::min<i64>(want_lo, (i64)index[q]);
      want_hi = std::max<i64>(want_hi, (i64)index[q]);
    }
    for (i64 b = 0; b < row_bytes; ++b) {
      const unsigned char got = (unsigned char)out[q * row_bytes + b];
      // An out-of-range row is written as zeros, never read.
      const unsigned char want = row < 0 ? 0 : (unsigned char)table[row * row_bytes + b];
      if (got != want) {
        CHECK(false, "row_bytes %lld src_off %llu dst_off %llu aligned %d perm %d cap %lld: q %lld "
              "byte %lld", (long long)row_bytes, (unsigned long long)src_off,
              (unsigned long long)dst_off, (int)aligned, (int)use_perm, (long long)cap,
              (long long)q, (long long)b);
        return;
      }
    }
  }
  // The padding around the output is never written.
  for (char* c = (char*)obuf.data(); c < out; ++c) CHECK((unsigned char)*c == 0, "before out");
  if (record_bad)
    CHECK(bad[0] == want_lo && bad[1] == want_hi && want_lo < 0 && want_hi >= n,
          "bad range [%lld, %lld], want [%lld, %lld]", (long long)bad[0], (long long)bad[1],
          (long long)want_lo, (long long)want_hi);
  else
    CHECK(bad[0] == INT64_MAX && bad[1] == INT64_MIN, "no record without a pointer");
}

// With a row cache: cached rows come from the cache (their table rows are poisoned so a read from
// the table shows), the others from the table; out-of-range ids still give zeros.
template <typename IdxT>
static void check_gather_cached(i64 row_bytes, u64 cache_off, bool use_perm) {
  const i64 n = 61, m = 257;
  std::vector<char> table(n * row_bytes), want(n * row_bytes);
  for (i64 i = 0; i < n * row_bytes; ++i) want[i] = table[i] = (char)(i * 37 + 11);
  std::vector<int> slot_of(n, -1);
  std::vector<unsigned char> cbuf(n * row_bytes + 256);
  char* cache = (char*)((((u64)cbuf.data() + 127) / 128 * 128) + cache_off);
  int slots = 0;
  for (i64 r = n - 1; r >= 0; --r)  // every third row, in descending row order
    if (r % 3 == 0) {
      slot_of[r] = slots;
      std::memcpy(cache + (i64)slots * row_bytes, &table[r * row_bytes], row_bytes);
      std::memset(&table[r * row_bytes], 0x5A, row_bytes);
      ++slots;
    }
  std::vector<IdxT> index(m);
  for (i64 q = 0; q < m; ++q) index[q] = (IdxT)(((q * 7919) % (2 * n + 6)) - n - 3);
  std::vector<i64> perm(m);
  for (i64 p = 0; p < m; ++p) perm[p] = p;
  std::sort(perm.begin(), perm.end(), [&](i64 a, i64 b) { return index[a] < index[b]; });
  std::vector<char> out(m * row_bytes, (char)0xAB);
  const int vec = ut::vec_bytes(row_bytes, (u64)table.data() | (u64)cache, (u64)out.data());
  i64 bad[2] = {INT64_MAX, INT64_MIN};
  g_cache = cache;
  g_slot_of = slot_of.data();
  g_batch = 4;
  dispatch_gather<true>(vec, table.data(), n, row_bytes, index.data(),
                        use_perm ? perm.data() : nullptr, m, out.data(), 1 << 20, bad);
  g_cache = nullptr;
  g_slot_of = nullptr;
  for (i64 q = 0; q < m; ++q) {
    const i64 row = ut::wrap_index((i64)index[q], n);
    bool same = true;
    for (i64 b = 0; b < row_bytes; ++b)
      same &= out[q * row_bytes + b] == (row < 0 ? (char)0 : want[row * row_bytes + b]);
    CHECK(same, "cached gather row_bytes %lld cache_off %llu perm %d: q %lld (row %lld)",
          (long long)row_bytes, (unsigned long long)cache_off, (int)use_perm, (long long)q,
          (long long)row);
  }
  CHECK(bad[0] < -n && bad[1] >= n, "cached gather records the bad ids");
}

static void test_gather_cached() {
  for (i64 r : {1, 4, 12, 16, 100, 512})
    for (u64 off : {0, 4, 16})
      for (int p = 0; p < 2; ++p) {
        check_gather_cached<int>(r, off, p != 0);
        check_gather_cached<long long>(r, off, p != 0);
      }
}

// All indices in range: the record stays at its sentinels.
static void check_gather_clean() {
  const i64 n = 40, m = 100, row_bytes = 24;
  std::vector<char> table(n * row_bytes), out(m * row_bytes);
  std::vector<long long> index(m);
  for (i64 q = 0; q < m; ++q) index[q] = (q * 13) % (2 * n) - n;  // [-n, n)
  i64 bad[2] = {INT64_MAX, INT64_MIN};
  g_batch = 4;
  dispatch_gather<true>(8, table.data(), n, row_bytes, index.data(), nullptr, m, out.data(), 1 << 20,
                        bad);
  CHECK(bad[0] == INT64_MAX && bad[1] == INT64_MIN, "clean gather leaves the record alone");
}

static void test_gather() {
  const i64 rows[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 100, 128, 400, 1028, 4096};
  const u64 offs[] = {0, 1, 4, 8, 36, 100};
  for (i64 r : rows)
    for (u64 so : offs)
      for (int variant = 0; variant < 4; ++variant) {
        const bool aligned = variant & 1, use_perm = variant & 2;
        const i64 cap = (so % 8 == 0) ? 1 << 20 : 256;  // full grid, and one block striding
        for (int batch : {1, 4}) {
          g_batch = batch;
          check_gather<int>(r, so, so % 16, aligned, use_perm, cap, variant != 1);
          check_gather<long long>(r, so, (so + 4) % 16, aligned, use_perm, cap, variant != 2);
        }
      }
}

// ------------------------------------------------------------------------------------ sampler
// Mirrors samplers/sampling/_layer_cuda.py: 256 threads; count grid = ceil(n / 256), fill grid =
// ceil(n / 8) (one warp per seed), both capped at 65535 blocks; offsets = exclusive scan.
template <typename IdT, typename PtrT>
static void check_sample(i64 fanout, bool replace, bool with_eids, bool with_excl) {
  // Node v has in-degree (v * 7) % 23 (0 included), plus node 5 with degree 300.
  const i64 n = 200;
  std::vector<PtrT> indptr(n + 1, 0);
  for (i64 v = 0; v < n; ++v) indptr[v + 1] = indptr[v] + (PtrT)(v == 5 ? 300 : (v * 7) % 23);
  const i64 e = (i64)indptr[n];
  std::vector<IdT> indices(e), eids(e);
  for (i64 i = 0; i < e; ++i) {
    indices[i] = (IdT)((i * 37) % n);
    eids[i] = (IdT)(i + 1000);
  }
  // Excluded positions (ascending): every 4th position, and all of node 7's in-edges.
  std::vector<i64> excl;
  if (with_excl)
    for (i64 p = 0; p < e; ++p)
      if (p % 4 == 1 || (p >= (i64)indptr[7] && p < (i64)indptr[8])) excl.push_back(p);
  const i64 nx = (i64)excl.size();
  const i64* xp = with_excl ? excl.data() : nullptr;
  std::vector<IdT> seeds;
  for (i64 v = 0; v < n; v += 3) seeds.push_back((IdT)v);
  seeds.push_back((IdT)7);
  seeds.push_back((IdT)5);
  const i64 ns = (i64)seeds.size();
  const u64 key = 0x1234567890ABCDEFULL;
  const int rep = replace ? 1 : 0;
  std::vector<i64> counts(ns), offsets(ns + 1, 0);
  int err = 0;
  launch((unsigned)std::min<i64>(65535, (ns + 255) / 256), 256, [&] {
    ut::sample_count<IdT, PtrT>(indptr.data(), n, seeds.data(), ns, fanout, rep, xp, nx, 0,
                                counts.data(), &err);
  });
  CHECK(err == 0, "no bad seed");
  for (i64 i = 0; i < ns; ++i) offsets[i + 1] = offsets[i] + counts[i];
  const i64 total = offsets[ns];
  std::vector<IdT> out_src(total);
  std::vector<i64> out_eid(total, -7), out_dst(total, -7);
  launch((unsigned)std::min<i64>(65535, (ns + 7) / 8), 256, [&] {
    ut::sample_fill<IdT, PtrT>(indptr.data(), indices.data(), with_eids ? eids.data() : nullptr, n,
                               seeds.data(), ns, offsets.data(), fanout, rep, key, xp, nx,
                               out_src.data(), out_eid.data(), out_dst.data());
  });
  for (i64 i = 0; i < ns; ++i) {
    const i64 v = (i64)seeds[i], start = (i64)indptr[v], full = (i64)indptr[v + 1] - start;
    // The node's kept in-edges, in CSC order (the reference the draws index into).
    std::vector<i64> kept;
    for (i64 p = start; p < start + full; ++p)
      if (!std::binary_search(excl.begin(), excl.end(), p)) kept.push_back(p);
    const i64 deg = (i64)kept.size();
    if (v == 7 && with_excl) CHECK(deg == 0, "node 7 keeps no in-edge");
    const i64 k = offsets[i + 1] - offsets[i];
    CHECK(k == ut::num_picks(deg, fanout, replace), "seed %lld: %lld edges", (long long)v, (long long)k);
    std::vector<i64> local(k);
    if (k && !ut::take_all(deg, fanout, replace) && !replace)
      ut::floyd_pick(key, v, deg, k, local.data());
    std::set<i64> seen;
    for (i64 t = 0; t < k; ++t) {
      const i64 o = offsets[i] + t;
      const i64 pos = with_eids ? out_eid[o] - 1000 : out_eid[o];
      i64 want;
      if (ut::take_all(deg, fanout, replace)) want = t;
      else if (replace) want = ut::pick_with_replacement(key, v, t, deg);
      else want = local[t];
      CHECK(want >= 0 && want < deg && pos == kept[want], "seed %lld edge %lld: position %lld, "
            "expected kept[%lld]", (long long)v, (long long)t, (long long)pos, (long long)want);
      CHECK(pos >= start && pos < start + full, "position in the seed's in-edges");
      CHECK(!std::binary_search(excl.begin(), excl.end(), pos), "an excluded edge was drawn");
      CHECK((i64)out_src[o] == (i64)indices[pos < 0 || pos >= e ? 0 : pos], "source id");
      CHECK(out_dst[o] == i, "dst is the seed's position");
      seen.insert(pos);
    }
    if (!replace) CHECK((i64)seen.size() == k, "seed %lld: repeated edges without replacement", (long long)v);
  }
  // An out-of-range seed is counted 0 and flagged.
  std::vector<IdT> bad = {(IdT)1, (IdT)n, (IdT)2};
  std::vector<i64> bc(3, -1);
  err = 0;
  launch(1, 256, [&] {
    ut::sample_count<IdT, PtrT>(indptr.data(), n, bad.data(), 3, fanout, rep, xp, nx, 0, bc.data(),
                                &err);
  });
  CHECK(err == 1 && bc[1] == 0, "out-of-range seed flagged");
  // Padding: with pad_negative a -1 seed counts 0 and is not flagged (without it, it is), and
  // sample_fill skips it.
  std::vector<IdT> padded = {(IdT)1, (IdT)-1, (IdT)2, (IdT)-1};
  std::vector<i64> pc(4, -1);
  for (int pad = 0; pad < 2; ++pad) {
    err = 0;
    launch(1, 256, [&] {
      ut::sample_count<IdT, PtrT>(indptr.data(), n, padded.data(), 4, fanout, rep, xp, nx, pad,
                                  pc.data(), &err);
    });
    CHECK(pc[1] == 0 && pc[3] == 0 && err == (pad ? 0 : 1), "pad_negative=%d", pad);
  }
  std::vector<i64> po(5, 0);
  for (int i = 0; i < 4; ++i) po[i + 1] = po[i] + pc[i];
  std::vector<IdT> ps(po[4] + 1, (IdT)-5);
  std::vector<i64> pe(po[4] + 1, -5), pd(po[4] + 1, -5);
  launch(1, 256, [&] {
    ut::sample_fill<IdT, PtrT>(indptr.data(), indices.data(), nullptr, n, padded.data(), 4,
                               po.data(), fanout, rep, key, xp, nx, ps.data(), pe.data(), pd.data());
  });
  for (i64 t = 0; t < po[4]; ++t) CHECK(pd[t] == 0 || pd[t] == 2, "padding wrote no edge");
  CHECK(pd[po[4]] == -5, "nothing written past the last offset");
}

template <typename IdT, typename PtrT>
static void check_sample_all() {
  for (i64 fanout : {(i64)-1, (i64)1, (i64)5, (i64)40})
    for (int replace = 0; replace < 2; ++replace)
      for (int with_eids = 0; with_eids < 2; ++with_eids)
        for (int with_excl = 0; with_excl < 2; ++with_excl)
          check_sample<IdT, PtrT>(fanout, replace != 0, with_eids != 0, with_excl != 0);
}

int main() {
  test_gather();
  check_gather_clean();
  test_gather_cached();
  check_sample_all<int, int>();
  check_sample_all<int, long long>();
  check_sample_all<long long, int>();
  check_sample_all<long long, long long>();
  return report("test_kernels_host");
}
