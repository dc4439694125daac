// Zero-copy row gather: out[q] = table[wrap(index[q])] for q in [0, num_index), rows as bytes.
//
// The table may live in pinned host memory (read over PCIe through UVA) or in device memory.
// Each group of `group` lanes (a warp, or a sub-warp for short rows) owns one row at a time;
// with ALIGNED the lanes are shifted so every pass reads whole aligned 128-byte lines.
// A grid-stride loop lets the host cap the number of resident threads (so the gather can share
// the GPU with training) without changing the result. blockDim.x must be a multiple of `group`.
//
// perm (may be null): the group handling position p works on q = perm[p]; passing the argsort of
// the index reads the table in ascending row order while writing rows in the caller's order.
// An out-of-range index (callers validate first) is skipped: its row is neither read nor written.
#include "gather_math.cuh"

namespace ut {

template <int VEC, bool ALIGNED, typename IdxT>
__global__ void gather_rows(const char* __restrict__ table, i64 num_rows, i64 row_bytes,
                            const IdxT* __restrict__ index, const i64* __restrict__ perm,
                            i64 num_index, char* __restrict__ out, int group) {
  const i64 units = row_bytes / VEC;
  const i64 tid = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const i64 nthreads = (i64)gridDim.x * blockDim.x;
  const int lane = (int)(tid % group);
  const i64 groups = nthreads / group;
  for (i64 p = tid / group; p < num_index; p += groups) {
    const i64 q = perm ? perm[p] : p;
    const i64 row = wrap_index((i64)index[q], num_rows);
    if (row < 0) continue;
    copy_row_lane<VEC, ALIGNED>(table + row * row_bytes, out + q * row_bytes, units, lane, group);
  }
}

}  // namespace ut
