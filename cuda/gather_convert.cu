// Fused gather of a compressed table: out[q] = convert(values[wrap(index[q])]) for q in
// [0, num_index), one pass, no float copy of the table anywhere.
//
// values: num_rows x num_cols elements of In (I8, BF16 or F16; convert_math.cuh), in pinned host
// memory (read over PCIe through UVA) or device memory. out: num_index x num_cols elements of Out
// (F32, BF16 or F16). Int8 rows decode as float(q) * scale + offset with float scale/offset in
// device memory, per column (scale[c], length num_cols) or, with PER_ROW, per row (scale[r],
// length num_rows); bf16/fp16 rows convert through float (the same kind: a bitwise copy).
//
// Mapping, as gather.cu: a group of `group` lanes (a warp, or a sub-warp for short rows) owns
// BATCH rows at a time; each lane moves E consecutive elements per pass with one aligned load of
// E * sizeof(In) bytes and one aligned store of E * sizeof(Out) bytes (E is sized so the store
// is at most 16 bytes: a warp's pass writes one contiguous, fully used span of output), and the
// lanes are shifted so every pass reads whole aligned 128-byte lines of the compressed row. All
// BATCH rows' loads of a pass are issued before their conversions and stores, so every lane keeps
// up to BATCH loads in flight. A grid-stride loop lets the host cap the resident threads.
// blockDim.x must be a multiple of `group`.
//
// perm (may be null), bad (may be null), cache/slot_of (may be null): exactly as in gather.cu
// (perm: read rows in ascending order, write in caller order; an out-of-range id is never read,
// its output row is written as zeros and its value folded into bad[0] / bad[1]; slot_of[r] >= 0
// reads the compressed row r from cache + slot_of[r] * num_cols * sizeof(In) in device memory).
// The caller passes an E that divides num_cols and keeps the table's, the cache's and the
// output's base addresses aligned (elems_per_lane).
#include "convert_math.cuh"

namespace ut {

template <typename In, typename Out, typename IdxT, bool PER_ROW, int E, int BATCH>
__global__ void gather_convert_rows(const char* __restrict__ values, i64 num_rows, i64 num_cols,
                                    const IdxT* __restrict__ index, const i64* __restrict__ perm,
                                    i64 num_index, char* __restrict__ out, int group,
                                    i64* __restrict__ bad, const char* __restrict__ cache,
                                    const int* __restrict__ slot_of,
                                    const float* __restrict__ scale,
                                    const float* __restrict__ offset) {
  typedef Pack<typename In::raw, E> PIn;
  typedef Pack<typename Out::raw, E> POut;
  const i64 units = num_cols / E;
  const i64 in_row_bytes = num_cols * (i64)sizeof(typename In::raw);
  const i64 out_row_bytes = num_cols * (i64)sizeof(typename Out::raw);
  const i64 tid = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  const i64 nthreads = (i64)gridDim.x * blockDim.x;
  const int lane = (int)(tid % group);
  const i64 groups = nthreads / group;
  for (i64 p0 = tid / group; p0 < num_index; p0 += groups * BATCH) {
    const PIn* src[BATCH];
    POut* dst[BATCH];
    int shift[BATCH];
    i64 passes[BATCH];
    float row_scale[BATCH], row_offset[BATCH];
    i64 max_passes = 0;
UT_UNROLL
    for (int k = 0; k < BATCH; ++k) {
      const i64 p = p0 + (i64)k * groups;
      src[k] = 0;
      dst[k] = 0;
      shift[k] = 0;
      passes[k] = 0;
      row_scale[k] = 0.0f;
      row_offset[k] = 0.0f;
      if (p < num_index) {
        const i64 q = perm ? perm[p] : p;
        const i64 value = (i64)index[q];
        const i64 row = wrap_index(value, num_rows);
        POut* d = reinterpret_cast<POut*>(out + q * out_row_bytes);
        if (row >= 0) {
          const int c = slot_of != 0 ? slot_of[row] : -1;
          const char* s = c >= 0 ? cache + (i64)c * in_row_bytes : values + row * in_row_bytes;
          src[k] = reinterpret_cast<const PIn*>(s);
          dst[k] = d;
          shift[k] = align_shift((u64)s, E * (int)sizeof(typename In::raw), group);
          passes[k] = num_passes(units, shift[k], group);
          max_passes = passes[k] > max_passes ? passes[k] : max_passes;
          if (PER_ROW) {
            row_scale[k] = ldg(scale + row);
            row_offset[k] = ldg(offset + row);
          }
        } else {  // out of range (rare): never read; the row is written as zeros here
          for (i64 z = lane; z < units; z += group) d[z] = POut();
          if (bad != 0 && lane == 0) {  // and the value recorded for the deferred IndexError
            atomicMin(bad, value);
            atomicMax(bad + 1, value);
          }
        }
      }
    }
    for (i64 pass = 0; pass < max_passes; ++pass) {
      PIn r[BATCH];
      i64 col[BATCH];
UT_UNROLL
      for (int k = 0; k < BATCH; ++k) {
        col[k] = pass < passes[k] ? lane_first_col(lane, pass, group, shift[k], units, E) : -1;
        if (col[k] >= 0) r[k] = src[k][col[k] / E];
      }
UT_UNROLL
      for (int k = 0; k < BATCH; ++k) {
        if (col[k] >= 0)
          dst[k][col[k] / E] = convert_pack<In, Out, PER_ROW, E>(r[k], col[k], scale, offset,
                                                                 row_scale[k], row_offset[k]);
      }
    }
  }
}

}  // namespace ut
