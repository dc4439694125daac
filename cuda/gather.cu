// Zero-copy row gather: out[q] = table[wrap(index[q])] for q in [0, num_index), rows as bytes.
//
// The table may live in pinned host memory (read over PCIe through UVA) or in device memory.
// Each group of `group` lanes (a warp, or a sub-warp for short rows) owns BATCH rows at a time;
// with ALIGNED the lanes are shifted so every pass reads whole aligned 128-byte lines.
// A grid-stride loop lets the host cap the number of resident threads (so the gather can share
// the GPU with training) without changing the result. blockDim.x must be a multiple of `group`.
//
// perm (may be null): the group handling position p works on q = perm[p]; passing the argsort of
// the index reads the table in ascending row order while writing rows in the caller's order.
// An out-of-range index (callers validate first) is skipped: its row is neither read nor written.
#include "gather_math.cuh"

namespace ut {

// BATCH rows in flight per group: a group takes rows p, p + groups, ..., p + (BATCH-1) * groups
// together and, pass by pass, first loads one unit of each of them into registers, then stores
// them, so every lane keeps up to BATCH loads in flight over PCIe instead of one (a capped grid
// then still has enough requests outstanding). Rows are covered exactly once: p runs over
// tid/group + j * groups * BATCH.
template <int VEC, bool ALIGNED, typename IdxT, int BATCH>
__global__ void gather_rows(const char* __restrict__ table, i64 num_rows, i64 row_bytes,
                            const IdxT* __restrict__ index, const i64* __restrict__ perm,
                            i64 num_index, char* __restrict__ out, int group) {
  typedef typename VecT<VEC>::type V;
  const i64 units = row_bytes / VEC;
  const i64 tid = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const i64 nthreads = (i64)gridDim.x * blockDim.x;
  const int lane = (int)(tid % group);
  const i64 groups = nthreads / group;
  for (i64 p0 = tid / group; p0 < num_index; p0 += groups * BATCH) {
    const V* src[BATCH];
    V* dst[BATCH];
    int shift[BATCH];
    i64 passes[BATCH];
    i64 max_passes = 0;
UT_UNROLL
    for (int k = 0; k < BATCH; ++k) {
      const i64 p = p0 + (i64)k * groups;
      src[k] = 0;
      dst[k] = 0;
      shift[k] = 0;
      passes[k] = 0;
      const i64 row = p < num_index ? wrap_index((i64)index[perm ? perm[p] : p], num_rows) : -1;
      if (row >= 0) {  // an out-of-range index (callers validate first) is skipped
        const i64 q = perm ? perm[p] : p;
        const char* s = table + row * row_bytes;
        src[k] = reinterpret_cast<const V*>(s);
        dst[k] = reinterpret_cast<V*>(out + q * row_bytes);
        shift[k] = ALIGNED ? align_shift((u64)s, VEC, group) : 0;
        passes[k] = num_passes(units, shift[k], group);
        max_passes = passes[k] > max_passes ? passes[k] : max_passes;
      }
    }
    for (i64 pass = 0; pass < max_passes; ++pass) {
      V r[BATCH];
      i64 u[BATCH];
UT_UNROLL
      for (int k = 0; k < BATCH; ++k) {
        u[k] = pass < passes[k] ? lane_unit(lane, pass, group, shift[k], units) : -1;
        if (u[k] >= 0) r[k] = src[k][u[k]];
      }
UT_UNROLL
      for (int k = 0; k < BATCH; ++k) {
        if (u[k] >= 0) dst[k][u[k]] = r[k];
      }
    }
  }
}

}  // namespace ut
