// Uniform neighbour sampling from a CSC graph (in-edges grouped by destination).
//
// indptr/indices/eids may live in pinned host memory (read over PCIe through UVA) or in device
// memory. One layer takes two launches:
//   sample_count: counts[i] = number of edges sampled for seeds[i]; flags out-of-range seeds in err
//                 (with pad_negative, a negative seed is padding instead: count 0, no flag; the
//                 one-sync sampler pads its fixed-size seed arrays with -1).
//   sample_fill:  after the host turned counts into offsets (n + 1 entries, offsets[0] = 0), one
//                 warp per seed writes its slice [offsets[i], offsets[i+1]) of the outputs:
//                 out_src (global source id), out_eid (edge id: eids[pos], or the CSC position when
//                 eids is null) and out_dst (the seed's position i).
// `excl` (num_excl ascending CSC positions, may be null with num_excl 0) lists in-edges removed
// before the draws: a node draws from its kept in-edges only (deg minus its excluded ones), and
// its r-th kept in-edge is nth_kept(...).
// All draws come from sample_math.cuh, so the outputs equal the CPU sampler's.
#include "sample_math.cuh"

namespace ut {

template <typename IdT, typename PtrT>
__global__ void sample_count(const PtrT* __restrict__ indptr, i64 num_nodes,
                             const IdT* __restrict__ seeds, i64 num_seeds, i64 fanout, int replace,
                             const i64* __restrict__ excl, i64 num_excl, int pad_negative,
                             i64* __restrict__ counts, int* __restrict__ err) {
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < num_seeds; i += stride) {
    const i64 v = (i64)seeds[i];
    if (v < 0 && pad_negative) {
      counts[i] = 0;
      continue;
    }
    if (v < 0 || v >= num_nodes) {
      counts[i] = 0;
      atomicExch(err, 1);
      continue;
    }
    const i64 start = (i64)indptr[v];
    i64 deg = (i64)indptr[v + 1] - start;
    if (num_excl > 0)
      deg -= lower_bound_i64(excl, num_excl, start + deg) - lower_bound_i64(excl, num_excl, start);
    counts[i] = num_picks(deg, fanout, replace != 0);
  }
}

template <typename IdT, typename PtrT>
__global__ void sample_fill(const PtrT* __restrict__ indptr, const IdT* __restrict__ indices,
                            const IdT* __restrict__ eids, i64 num_nodes,
                            const IdT* __restrict__ seeds, i64 num_seeds,
                            const i64* __restrict__ offsets, i64 fanout, int replace, u64 key,
                            const i64* __restrict__ excl, i64 num_excl,
                            IdT* __restrict__ out_src, i64* __restrict__ out_eid,
                            i64* __restrict__ out_dst) {
  const i64 tid = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const int lane = (int)(tid % kWarpSize);
  const i64 warps = ((i64)gridDim.x * blockDim.x) / kWarpSize;
  // Every lane of a warp handles the same seed, so all branches below are warp-uniform.
  for (i64 i = tid / kWarpSize; i < num_seeds; i += warps) {
    const i64 v = (i64)seeds[i];
    if (v < 0 || v >= num_nodes) continue;  // counted 0 and reported by sample_count
    const i64 o = offsets[i];
    const i64 k = offsets[i + 1] - o;
    const i64 start = (i64)indptr[v];
    i64 deg = (i64)indptr[v + 1] - start;
    i64 ex_lo = 0, ex_hi = 0;  // this node's excluded positions: excl[ex_lo, ex_hi)
    if (num_excl > 0) {
      ex_lo = lower_bound_i64(excl, num_excl, start);
      ex_hi = lower_bound_i64(excl, num_excl, start + deg);
      deg -= ex_hi - ex_lo;
    }
    const bool rep = replace != 0;
    const bool all = take_all(deg, fanout, rep);
    if (!all && !rep) {
      // Floyd's draws are sequential: lane 0 writes the local positions into out_eid, then the
      // warp turns them into edges.
      if (lane == 0) floyd_pick(key, v, deg, k, out_eid + o);
      __syncwarp();
    }
    for (i64 t = lane; t < k; t += kWarpSize) {
      i64 local;
      if (all) {
        local = t;
      } else if (rep) {
        local = pick_with_replacement(key, v, t, deg);
      } else {
        local = out_eid[o + t];
      }
      const i64 pos = ex_hi > ex_lo ? nth_kept(start, local, excl, ex_lo, ex_hi) : start + local;
      out_src[o + t] = indices[pos];
      out_eid[o + t] = eids ? (i64)eids[pos] : pos;
      out_dst[o + t] = i;
    }
    __syncwarp();
  }
}

}  // namespace ut
