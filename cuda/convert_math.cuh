// Conversion and per-lane index math of the fused "read compressed row, write converted row"
// gather (gather_convert.cu). Host and device share this code: tests/cpp/test_convert_math.cpp
// checks these exact functions (every bf16/fp16 bit pattern, float -> bf16/fp16 rounding, the
// lane mapping for every width and alignment) and runs the kernel body itself on the CPU.
//
// Element kinds are tag types with the storage type of one element (`raw`): a compressed table
// is I8 (affine: x = float(q) * scale + offset), BF16 or F16; an output row is F32, BF16 or F16.
// All conversions are integer bit manipulation (exact and the same on host and device, whatever
// -ftz NVRTC compiles with); the int8 decode is a multiply then an add, each rounded to nearest
// and never fused or flushed, so it gives the bits of `q.float() * scale + offset` in PyTorch.
#pragma once
#include "gather_math.cuh"

namespace ut {

typedef unsigned short u16;
typedef unsigned int u32;

struct I8 { typedef signed char raw; };
struct BF16 { typedef u16 raw; };
struct F16 { typedef u16 raw; };
struct F32 { typedef float raw; };

// ---------------------------------------------------------------------------- bits and floats
UT_HD u32 float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  u32 u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

UT_HD float bits_float(u32 u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Read-only (non-coherent, cached) load of a float in device memory: the scales and offsets.
UT_HD float ldg(const float* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

// a * b and a + b rounded to nearest even, never contracted into an FMA and never flushed to zero
// (the explicit PTX; NVRTC runs with -ftz=true and may fuse a plain `a * b + c`).
UT_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a * b;
#endif
}

UT_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a + b;
#endif
}

// ------------------------------------------------------------------------ 16-bit floats <-> float
// bfloat16 -> float: exact (the high half of the float).
UT_HD float bf16_to_float(u16 h) { return bits_float((u32)h << 16); }

// float16 -> float: exact. Infinities and NaNs keep their sign and payload; subnormals
// (man * 2^-24, man < 1024) are normal floats, computed exactly by one multiplication.
UT_HD float f16_to_float(u16 h) {
  const u32 sign = (u32)(h & 0x8000u) << 16;
  const u32 exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  return bits_float(sign | float_bits((float)man * 5.9604644775390625e-8f));  // 2^-24
}

// float -> bfloat16, rounded to nearest even; overflow gives infinity, subnormals round like any
// other value. A NaN stays a NaN of the same sign (made quiet: its high payload bits may all be
// in the dropped half).
UT_HD u16 float_to_bf16(float f) {
  const u32 x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (u16)((x >> 16) | 0x40u);
  return (u16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// float -> float16, rounded to nearest even, subnormal results included; |x| >= 65520 (the
// midpoint between 65504, the largest float16, and 65536) becomes infinity. A NaN stays a quiet
// NaN of the same sign, with the payload's high bits.
UT_HD u16 float_to_f16(float f) {
  const u32 x = float_bits(f);
  const u32 sign = (x >> 16) & 0x8000u;
  const u32 a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return (u16)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return (u16)(sign | 0x7c00u);
  if (a >= 0x38800000u)  // a normal float16 (>= 2^-14): rebias, round off 13 bits (may carry)
    return (u16)(sign | ((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13));
  if (a <= 0x33000000u) return (u16)sign;  // <= 2^-25 (the tie with 2^-24 goes to even: 0)
  // A subnormal float16: units of 2^-24, m * 2^(e - 150) = m >> (126 - e), shift 14..24.
  const u32 e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
  const u32 s = 126u - e;
  const u32 q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
  return (u16)(sign | (q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u)));
}

// ------------------------------------------------------------------------------ element kinds
UT_HD float to_float(BF16, u16 v) { return bf16_to_float(v); }
UT_HD float to_float(F16, u16 v) { return f16_to_float(v); }
UT_HD float from_float(F32, float x) { return x; }
UT_HD u16 from_float(BF16, float x) { return float_to_bf16(x); }
UT_HD u16 from_float(F16, float x) { return float_to_f16(x); }

// The int8 affine decode: float(q) * scale + offset, two roundings (see the top of the file).
UT_HD float decode_int8(signed char q, float scale, float offset) {
  return add_rn(mul_rn((float)q, scale), offset);
}

// One element of a compressed row -> one element of the output row. Float kinds go through
// float (exact for bf16/fp16 -> float); the same kind in and out is a bitwise copy (NaN payloads
// included). kAffine: the input needs a scale and an offset.
template <typename In, typename Out>
struct Convert {
  static const bool kAffine = false;
  static UT_HD typename Out::raw apply(typename In::raw v, float, float) {
    return from_float(Out(), to_float(In(), v));
  }
};
template <typename K>
struct Convert<K, K> {
  static const bool kAffine = false;
  static UT_HD typename K::raw apply(typename K::raw v, float, float) { return v; }
};
template <typename Out>
struct Convert<I8, Out> {
  static const bool kAffine = true;
  static UT_HD typename Out::raw apply(signed char q, float scale, float offset) {
    return from_float(Out(), decode_int8(q, scale, offset));
  }
};

// ------------------------------------------------------------------------------ lane mapping
// A lane moves E consecutive elements of a row per pass: one aligned load of E compressed
// elements (E * in_size bytes), one aligned store of E converted ones (E * out_size bytes).
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T e[N];
};

// Largest elements-per-lane E that the kernel instantiates for these element sizes (a store of
// at most 16 bytes: 4 for float output, 8 for 16-bit output).
UT_HD int max_elems_per_lane(int in_size, int out_size) {
  return 16 / (in_size > out_size ? in_size : out_size);
}

// Elements per lane for a row of num_cols: the largest power of two E <= max_elems_per_lane that
// divides num_cols and keeps every load and store naturally aligned (E * in_size divides the
// compressed rows' base address(es), E * out_size the output's).
UT_HD int elems_per_lane(i64 num_cols, int in_size, int out_size, u64 in_addr, u64 out_addr) {
  int e = max_elems_per_lane(in_size, out_size);
  while (e > 1 && (num_cols % e != 0 || in_addr % (u64)(e * in_size) != 0 ||
                   out_addr % (u64)(e * out_size) != 0))
    e >>= 1;
  return e;
}

// The first column that `lane` converts on pass `pass` (e columns from there), or -1 when it idles
// on that pass; a row is units = num_cols / e units of e elements, distributed as gather.cu
// distributes its vector units: lane l of the group takes unit pass * group + l - shift, where
// shift = align_shift(row address, e * in_size, group) lines the group's loads up with aligned
// 128-byte lines of the compressed row, and consecutive lanes store consecutive units.
UT_HD i64 lane_first_col(int lane, i64 pass, int group, int shift, i64 units, int e) {
  const i64 u = lane_unit(lane, pass, group, shift, units);
  return u < 0 ? -1 : u * e;
}

// Converts the E elements a lane loaded, starting at column `col` of a row. Int8 per column:
// scale[col + i], offset[col + i] (read through the read-only cache); per row: the row's
// row_scale / row_offset. Float kinds never touch scale or offset.
template <typename In, typename Out, bool PER_ROW, int E>
UT_HD Pack<typename Out::raw, E> convert_pack(const Pack<typename In::raw, E>& v, i64 col,
                                              const float* scale, const float* offset,
                                              float row_scale, float row_offset) {
  Pack<typename Out::raw, E> o;
UT_UNROLL
  for (int i = 0; i < E; ++i) {
    float s = row_scale, b = row_offset;
    if (Convert<In, Out>::kAffine && !PER_ROW) {
      s = ldg(scale + col + i);
      b = ldg(offset + col + i);
    }
    o.e[i] = Convert<In, Out>::apply(v.e[i], s, b);
  }
  return o;
}

}  // namespace ut
