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
// An out-of-range index is never read: its output row is written as zeros and, when `bad` is not
// null, its value is folded into bad[0] (smallest) and bad[1] (largest) with atomics, so the host
// can raise the IndexError later without a sync per call (unified_tensor/_checks.py). bad[] starts
// at (INT64_MAX, INT64_MIN) and is only touched when an index is out of range.
//
// GPU row cache (may be null): when slot_of is not null, row r with slot_of[r] >= 0 is read from
// cache + slot_of[r] * row_bytes (device memory holding a copy of the row) instead of the table;
// -1 means not cached. The caller passes a VEC that divides the cache's base address too.
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
                            i64 num_index, char* __restrict__ out, int group,
                            i64* __restrict__ bad, const char* __restrict__ cache,
                            const int* __restrict__ slot_of) {
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
      if (p < num_index) {
        const i64 q = perm ? perm[p] : p;
        const i64 value = (i64)index[q];
        const i64 row = wrap_index(value, num_rows);
        V* d = reinterpret_cast<V*>(out + q * row_bytes);
        if (row >= 0) {
          const int c = slot_of != 0 ? slot_of[row] : -1;
          const char* s = c >= 0 ? cache + (i64)c * row_bytes : table + row * row_bytes;
          src[k] = reinterpret_cast<const V*>(s);
          dst[k] = d;
          shift[k] = ALIGNED ? align_shift((u64)s, VEC, group) : 0;
          passes[k] = num_passes(units, shift[k], group);
          max_passes = passes[k] > max_passes ? passes[k] : max_passes;
        } else {  // out of range (rare): never read; the row is written as zeros here
          for (i64 z = lane; z < units; z += group) d[z] = V();
          if (bad != 0 && lane == 0) {  // and the value recorded for the deferred IndexError
            atomicMin(bad, value);
            atomicMax(bad + 1, value);
          }
        }
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
