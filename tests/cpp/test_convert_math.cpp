// Host tests of cuda/convert_math.cuh and of the kernel body of cuda/gather_convert.cu: the exact
// functions the fused compressed-row gather runs, checked against references written here
// independently (16-bit float values from their definition, rounding by nearest-of-all-candidates).
//   - bf16/fp16 -> float for all 65536 bit patterns; float -> bf16/fp16 round to nearest even on
//     every representable value, every midpoint and their float neighbours, infinities, NaNs,
//     overflow and (double) subnormals, plus random floats;
//   - the elements-per-lane choice and the lane mapping for every width and alignment;
//   - the kernel body (every thread of the launch the Python launcher makes, in turn, as in
//     test_kernels_host.cpp) for every in/out kind, per-column and per-row int8, perm, the GPU row
//     cache, out-of-range ids, a capped grid, int32 and int64 ids, against a scalar reference.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

struct Dim3 {
  unsigned x, y, z;
};
static Dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
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

#include "check.h"
#include "gather_convert.cu"

using ut::i64;
using ut::u16;
using ut::u32;
using ut::u64;

static u32 fbits(float f) {
  u32 u;
  std::memcpy(&u, &f, 4);
  return u;
}
static float bitsf(u32 u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ------------------------------------------------------------------------------- references
// Value of the non-negative 16-bit pattern b of a format with `man_bits` mantissa bits and
// exponent bias `bias`, from the definition; the pattern of infinity gives 2^(emax + 1), the value
// the rounding treats as the next one after the largest finite (IEEE overflow under round to
// nearest: a value at or past the midpoint becomes infinity).
static double value_of(u32 b, int man_bits, int bias) {
  const u32 exp = b >> man_bits, man = b & ((1u << man_bits) - 1u);
  if (exp == 0) return std::ldexp((double)man, 1 - bias - man_bits);
  return std::ldexp((double)((1u << man_bits) + man), (int)exp - bias - man_bits);
}

struct Format {
  int man_bits, bias;
  u32 inf_bits;  // 0x7c00 (fp16), 0x7f80 (bf16)
  std::vector<double> v;  // v[b] for b in [0, inf_bits]
  Format(int m, int bias_, u32 inf) : man_bits(m), bias(bias_), inf_bits(inf) {
    for (u32 b = 0; b <= inf; ++b) v.push_back(value_of(b, m, bias_));
  }
  bool is_nan(u16 h) const { return (h & 0x7fffu) > inf_bits; }
  // The nearest of all candidates to f (not NaN), ties to the even pattern. 2|f| and the sum of
  // two neighbouring candidates are exact in double.
  u16 round(float f) const {
    const u16 sign = std::signbit(f) ? 0x8000 : 0;
    const double a = std::fabs((double)f);
    if (std::isinf(f)) return (u16)(sign | inf_bits);
    const u32 b = (u32)(std::upper_bound(v.begin(), v.end(), a) - v.begin()) - 1u;
    if (b >= inf_bits) return (u16)(sign | inf_bits);
    const double twice = 2.0 * a, mid2 = v[b] + v[b + 1];
    const u32 r = twice < mid2 ? b : twice > mid2 ? b + 1 : (b % 2 == 0 ? b : b + 1);
    return (u16)(sign | r);
  }
  // The float value of pattern h (not NaN; infinity: infinity).
  float to_float(u16 h) const {
    const float s = (h & 0x8000u) ? -1.0f : 1.0f;
    const u32 a = h & 0x7fffu;
    if (a > inf_bits) return std::copysign(NAN, s);
    return a == inf_bits ? s * INFINITY : s * (float)v[a];
  }
};

static const Format kHalf(10, 15, 0x7c00u), kBf16(7, 127, 0x7f80u);

// ------------------------------------------------------------------- 16-bit floats <-> float
static void test_to_float_exhaustive() {
  for (u32 h = 0; h < 65536; ++h) {
    const u32 got_bf = fbits(ut::bf16_to_float((u16)h));
    CHECK(got_bf == h << 16, "bf16 0x%04x -> 0x%08x", h, got_bf);
    const float got = ut::f16_to_float((u16)h);
    if (kHalf.is_nan((u16)h)) {
      // NaN: stays NaN, sign and payload kept
      CHECK(std::isnan(got) && (fbits(got) >> 31) == (h >> 15) &&
                ((fbits(got) >> 13) & 0x3ffu) == (h & 0x3ffu) && (fbits(got) & 0x1fffu) == 0,
            "fp16 NaN 0x%04x -> 0x%08x", h, fbits(got));
    } else {
      const float want = kHalf.to_float((u16)h);
      CHECK(fbits(got) == fbits(want), "fp16 0x%04x -> 0x%08x, want 0x%08x", h, fbits(got),
            fbits(want));
    }
    // and back: every non-NaN pattern survives the round trip through float
    if (!kHalf.is_nan((u16)h))
      CHECK(ut::float_to_f16(got) == h, "fp16 round trip 0x%04x", h);
    if (!kBf16.is_nan((u16)h))
      CHECK(ut::float_to_bf16(bitsf(h << 16)) == h, "bf16 round trip 0x%04x", h);
  }
}

static void check_round(float f) {
  if (std::isnan(f)) return;
  const u16 h = ut::float_to_f16(f), b = ut::float_to_bf16(f);
  const u16 wh = kHalf.round(f), wb = kBf16.round(f);
  CHECK(h == wh, "float 0x%08x (%.9g) -> fp16 0x%04x, want 0x%04x", fbits(f), (double)f, h, wh);
  CHECK(b == wb, "float 0x%08x (%.9g) -> bf16 0x%04x, want 0x%04x", fbits(f), (double)f, b, wb);
}

// Every candidate value, every midpoint between neighbours (the ties), and the float just below
// and above each, of both formats and both signs.
static void test_round_ties_and_neighbours() {
  for (const Format* fmt : {&kHalf, &kBf16})
    for (u32 b = 0; b < fmt->inf_bits; ++b) {
      const float lo = (float)fmt->v[b], mid = (float)((fmt->v[b] + fmt->v[b + 1]) / 2);
      CHECK((double)mid * 2 == fmt->v[b] + fmt->v[b + 1], "midpoint is a float");
      for (float x : {lo, mid}) {
        for (float y : {x, std::nextafter(x, 0.0f), std::nextafter(x, INFINITY)}) {
          check_round(y);
          check_round(-y);
        }
      }
    }
  // Specific cases, with the expected patterns spelled out.
  CHECK(ut::float_to_f16(65504.0f) == 0x7bff, "max fp16");
  CHECK(ut::float_to_f16(65519.996f) == 0x7bff, "below the overflow midpoint");
  CHECK(ut::float_to_f16(65520.0f) == 0x7c00, "the overflow midpoint rounds to infinity");
  CHECK(ut::float_to_f16(-1e10f) == 0xfc00, "overflow keeps the sign");
  CHECK(ut::float_to_f16(INFINITY) == 0x7c00 && ut::float_to_f16(-INFINITY) == 0xfc00, "inf");
  CHECK(ut::float_to_f16(std::ldexp(1.0f, -24)) == 0x0001, "smallest subnormal");
  CHECK(ut::float_to_f16(std::ldexp(1.0f, -25)) == 0x0000, "tie with 0 goes to 0");
  CHECK(ut::float_to_f16(std::ldexp(3.0f, -25)) == 0x0002, "tie 1.5 ulp goes to 2");
  CHECK(ut::float_to_f16(std::ldexp(1.0f, -14)) == 0x0400, "smallest normal");
  CHECK(ut::float_to_f16(std::ldexp(1023.5f, -24)) == 0x0400, "subnormal rounds up to normal");
  CHECK(ut::float_to_f16(-0.0f) == 0x8000 && ut::float_to_f16(1e-45f) == 0, "signed zero, tiny");
  CHECK(ut::float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00, "1 + half ulp: tie to even");
  CHECK(ut::float_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02, "1 + 1.5 ulp: tie to even");
  CHECK(ut::float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80, "bf16 tie to even (down)");
  CHECK(ut::float_to_bf16(1.0f + std::ldexp(3.0f, -8)) == 0x3f82, "bf16 tie to even (up)");
  CHECK(ut::float_to_bf16(3.4028235e38f) == 0x7f80, "FLT_MAX rounds to bf16 infinity");
  CHECK(ut::float_to_bf16(bitsf(0x7f7f7fffu)) == 0x7f7f, "below the bf16 overflow midpoint");
  CHECK(ut::float_to_bf16(bitsf(0x00000001u)) == 0x0000, "smallest float subnormal -> 0");
  CHECK(ut::float_to_bf16(bitsf(0x00008000u)) == 0x0000, "tie with 0 goes to 0");
  CHECK(ut::float_to_bf16(bitsf(0x00018000u)) == 0x0002, "subnormal tie to even");
  CHECK(ut::float_to_bf16(bitsf(0x807fffffu)) == 0x8080, "largest negative subnormal rounds up");
  CHECK(ut::float_to_bf16(-INFINITY) == 0xff80, "-inf");
}

static void test_round_random_and_every_exponent() {
  std::mt19937 rng(12345);
  for (int i = 0; i < 3000000; ++i) check_round(bitsf((u32)rng()));
  for (u32 e = 0; e < 255; ++e)
    for (int i = 0; i < 2000; ++i) {
      const u32 x = (e << 23) | ((u32)rng() & 0x7fffffu) | (i & 1 ? 0x80000000u : 0);
      check_round(bitsf(x));
    }
}

static void test_nan() {
  const u32 payloads[] = {0x7fc00000u, 0x7f800001u, 0x7fbfffffu, 0x7fffffffu, 0x7f802000u,
                          0x7f800100u, 0x7fa00000u, 0x7fc00001u};
  for (u32 p : payloads)
    for (u32 sign : {0u, 0x80000000u}) {
      const float f = bitsf(p | sign);
      const u16 h = ut::float_to_f16(f), b = ut::float_to_bf16(f);
      CHECK(kHalf.is_nan(h) && (h & 0x0200u) && (h >> 15) == (sign >> 31),
            "NaN 0x%08x -> fp16 0x%04x: a quiet NaN of the same sign", p | sign, h);
      CHECK(kBf16.is_nan(b) && (b & 0x0040u) && (b >> 15) == (sign >> 31),
            "NaN 0x%08x -> bf16 0x%04x: a quiet NaN of the same sign", p | sign, b);
    }
}

// Same kind in and out: a bitwise copy, NaN payloads (signalling too) included; across kinds:
// through float.
static void test_convert_elements() {
  for (u32 h = 0; h < 65536; ++h) {
    CHECK((ut::Convert<ut::BF16, ut::BF16>::apply((u16)h, 0, 0)) == h, "bf16 copy 0x%04x", h);
    CHECK((ut::Convert<ut::F16, ut::F16>::apply((u16)h, 0, 0)) == h, "fp16 copy 0x%04x", h);
    CHECK(fbits(ut::Convert<ut::BF16, ut::F32>::apply((u16)h, 0, 0)) == h << 16, "bf16 -> f32");
    CHECK((ut::Convert<ut::F16, ut::BF16>::apply((u16)h, 0, 0)) ==
              ut::float_to_bf16(ut::f16_to_float((u16)h)), "fp16 -> bf16 0x%04x", h);
    CHECK((ut::Convert<ut::BF16, ut::F16>::apply((u16)h, 0, 0)) ==
              ut::float_to_f16(ut::bf16_to_float((u16)h)), "bf16 -> fp16 0x%04x", h);
  }
  // int8: q * scale + offset, a multiply and an add, each rounded
  CHECK(ut::decode_int8(-128, 0.5f, 1.0f) == -63.0f, "int8 -128");
  CHECK(ut::decode_int8(127, 0.25f, -0.5f) == 31.25f, "int8 127");
  CHECK(ut::decode_int8(0, 3.0f, 0.125f) == 0.125f, "int8 0");
  for (int q = -128; q < 128; ++q) {
    const float s = 0.0123f, o = -0.77f;
    volatile float prod = (float)q * s;  // not fused
    const float want = prod + o;
    CHECK(fbits(ut::decode_int8((signed char)q, s, o)) == fbits(want), "int8 %d", q);
    CHECK((ut::Convert<ut::I8, ut::F16>::apply((signed char)q, s, o)) == kHalf.round(want),
          "int8 %d -> fp16", q);
    CHECK((ut::Convert<ut::I8, ut::BF16>::apply((signed char)q, s, o)) == kBf16.round(want),
          "int8 %d -> bf16", q);
  }
  // a subnormal result is kept (no flush to zero)
  CHECK(fbits(ut::decode_int8(1, std::ldexp(1.0f, -140), 0.0f)) == fbits(std::ldexp(1.0f, -140)),
        "subnormal decode");
}

// ---------------------------------------------------------------------------- lane mapping
static void test_elems_per_lane() {
  CHECK(ut::max_elems_per_lane(1, 4) == 4 && ut::max_elems_per_lane(1, 2) == 8 &&
            ut::max_elems_per_lane(2, 4) == 4 && ut::max_elems_per_lane(2, 2) == 8,
        "at most 16-byte stores");
  CHECK(ut::elems_per_lane(128, 1, 4, 0x1000, 0x2000) == 4, "int8 -> f32");
  CHECK(ut::elems_per_lane(128, 2, 2, 0x1000, 0x2000) == 8, "bf16 -> bf16");
  CHECK(ut::elems_per_lane(602, 1, 4, 0x1000, 0x2000) == 2, "602 columns");
  CHECK(ut::elems_per_lane(257, 2, 4, 0x1000, 0x2000) == 1, "257 columns");
  CHECK(ut::elems_per_lane(128, 1, 4, 0x1002, 0x2000) == 2, "table at +2");
  CHECK(ut::elems_per_lane(128, 2, 2, 0x1000, 0x2004) == 2, "out at +4");
  const int sizes[][2] = {{1, 4}, {1, 2}, {2, 4}, {2, 2}};
  for (auto& sz : sizes)
    for (i64 cols = 1; cols <= 260; ++cols)
      for (u64 io = 0; io < 32; io += sz[0])
        for (u64 oo = 0; oo < 32; oo += sz[1]) {
          const u64 ia = 0x10000 + io, oa = 0x20000 + oo;
          const int e = ut::elems_per_lane(cols, sz[0], sz[1], ia, oa);
          const bool ok = cols % e == 0 && ia % (u64)(e * sz[0]) == 0 && oa % (u64)(e * sz[1]) == 0;
          const int e2 = 2 * e;
          const bool wider = e2 <= ut::max_elems_per_lane(sz[0], sz[1]) && cols % e2 == 0 &&
                             ia % (u64)(e2 * sz[0]) == 0 && oa % (u64)(e2 * sz[1]) == 0;
          CHECK(ok && !wider && e * std::max(sz[0], sz[1]) <= 16,
                "in %d out %d cols %lld offsets %llu %llu: e %d", sz[0], sz[1], (long long)cols,
                (unsigned long long)io, (unsigned long long)oo, e);
        }
}

// One group converting one row, lane by lane, as gather_convert_rows maps it: every column is
// handled exactly once; loads and stores are aligned to their width; a pass's loads stay inside
// one aligned 128-byte line (or cover whole lines, for wide passes); a pass's stores are one
// contiguous span in lane order (coalesced); the shift costs at most one extra pass.
static void check_lanes(int in_size, int out_size, i64 cols, u64 in_off, u64 out_off) {
  const u64 in_addr = 0x100000 + in_off, out_addr = 0x200000 + out_off;
  const int e = ut::elems_per_lane(cols, in_size, out_size, in_addr, out_addr);
  const i64 units = cols / e;
  const int group = ut::group_size(units);
  const int vin = e * in_size, vout = e * out_size;
  const int shift = ut::align_shift(in_addr, vin, group);
  const i64 passes = ut::num_passes(units, shift, group);
  std::vector<int> seen(cols, 0);
  bool ok = true;
  for (i64 p = 0; p < passes; ++p) {
    u64 lo = ~0ull, hi = 0, next_store = 0;
    bool first = true;
    for (int lane = 0; lane < group; ++lane) {
      const i64 c = ut::lane_first_col(lane, p, group, shift, units, e);
      if (c < 0) continue;
      ok &= c % e == 0 && c + e <= cols;
      for (int i = 0; i < e && c + i < cols; ++i) seen[c + i]++;
      const u64 la = in_addr + (u64)c * in_size, sa = out_addr + (u64)c * out_size;
      ok &= la % vin == 0 && sa % vout == 0;
      ok &= first || sa == next_store;  // consecutive active lanes store consecutive units
      first = false;
      next_store = sa + vout;
      lo = std::min(lo, la);
      hi = std::max(hi, la + vin);
    }
    if (hi > lo) {
      const u64 span = (u64)group * vin;
      if (span <= (u64)ut::kLineBytes)
        ok &= lo / ut::kLineBytes == (hi - 1) / ut::kLineBytes;
      else {
        const u64 start = in_addr - (u64)shift * vin + (u64)p * span;
        ok &= start % ut::kLineBytes == 0 && lo >= start && hi <= start + span;
      }
    }
  }
  for (i64 c = 0; c < cols; ++c) ok &= seen[c] == 1;
  ok &= passes <= (units + group - 1) / group + 1;
  CHECK(ok, "lanes: in %d out %d cols %lld in_off %llu out_off %llu (e %d, group %d, shift %d)",
        in_size, out_size, (long long)cols, (unsigned long long)in_off,
        (unsigned long long)out_off, e, group, shift);
}

static void test_lanes() {
  const int sizes[][2] = {{1, 4}, {1, 2}, {2, 4}, {2, 2}};
  std::vector<i64> cols;
  for (i64 c = 1; c <= 300; ++c) cols.push_back(c);
  for (i64 c : {384, 512, 602, 1000, 1024, 2048, 4100}) cols.push_back(c);
  for (auto& sz : sizes)
    for (i64 c : cols)
      for (u64 io = 0; io < 128; io += sz[0])
        for (u64 oo : {0, 2, 4, 8, 12})
          if (oo % sz[1] == 0) check_lanes(sz[0], sz[1], c, io, oo);
}

// ----------------------------------------------------------------------------- kernel body
// Mirrors unified_tensor/_convert_cuda.py: BLOCK 256, BATCH 4, threads = min(ceil(m / 4) * group,
// max(cap, 256)).
static const unsigned kBlock = 256;

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

struct Args {
  const char* values;
  i64 n, cols;
  const i64* perm;
  i64 m;
  char* out;
  i64* bad;
  const char* cache;
  const int* slot_of;
  const float *scale, *offset;
  i64 cap;
};

template <typename In, typename Out, bool PER_ROW, int E, typename IdxT>
static void run_e(const Args& a, const IdxT* index) {
  const int group = ut::group_size(a.cols / E);
  const i64 threads = std::min<i64>((a.m + 3) / 4 * group, std::max<i64>(a.cap, kBlock));
  const unsigned grid = (unsigned)std::max<i64>(1, (threads + kBlock - 1) / kBlock);
  launch(grid, kBlock, [&] {
    ut::gather_convert_rows<In, Out, IdxT, PER_ROW, E, 4>(a.values, a.n, a.cols, index, a.perm, a.m,
                                                          a.out, group, a.bad, a.cache, a.slot_of,
                                                          a.scale, a.offset);
  });
}

template <typename In, typename Out, bool PER_ROW, typename IdxT>
static void run(int e, const Args& a, const IdxT* index) {
  constexpr int kMax = 16 / (sizeof(typename In::raw) > sizeof(typename Out::raw)
                                 ? sizeof(typename In::raw) : sizeof(typename Out::raw));
  CHECK(e >= 1 && e <= kMax, "E %d out of the instantiated range", e);
  if constexpr (kMax >= 8) {
    if (e == 8) return run_e<In, Out, PER_ROW, 8>(a, index);
  }
  if (e == 4) return run_e<In, Out, PER_ROW, 4>(a, index);
  if (e == 2) return run_e<In, Out, PER_ROW, 2>(a, index);
  run_e<In, Out, PER_ROW, 1>(a, index);
}

// The scalar reference of one element (the reference conversions above, not convert_math's).
template <typename K> struct Ref;
template <> struct Ref<ut::I8> {
  static const bool kFloat = false;
};
template <> struct Ref<ut::BF16> {
  static float to_float(u16 v) { return bitsf((u32)v << 16); }
  static u16 from_float(float x) { return kBf16.round(x); }
  static bool is_nan(u16 v) { return kBf16.is_nan(v); }
};
template <> struct Ref<ut::F16> {
  static float to_float(u16 v) { return kHalf.to_float(v); }
  static u16 from_float(float x) { return kHalf.round(x); }
  static bool is_nan(u16 v) { return kHalf.is_nan(v); }
};
template <> struct Ref<ut::F32> {
  static float from_float(float x) { return x; }
  static bool is_nan(float v) { return std::isnan(v); }
};

template <typename In, typename Out>
static float ref_float(typename In::raw v, float s, float o) {
  if constexpr (std::is_same<In, ut::I8>::value) {
    volatile float prod = (float)v * s;
    return prod + o;
  } else {
    return Ref<In>::to_float(v);
  }
}

// Whether `got` is the reference conversion of `v`: bitwise, except that a NaN result only needs
// to be a NaN of the same sign; the same kind in and out is a bitwise copy.
template <typename In, typename Out>
static bool same_as_ref(typename In::raw v, float s, float o, typename Out::raw got) {
  if constexpr (std::is_same<In, Out>::value) {
    return got == v;
  } else {
    const float x = ref_float<In, Out>(v, s, o);
    if (std::isnan(x)) {
      u64 gb = 0;
      std::memcpy(&gb, &got, sizeof got);
      const bool neg = (gb >> (8 * sizeof got - 1)) & 1;
      return Ref<Out>::is_nan(got) && neg == (bool)std::signbit(x);
    }
    typename Out::raw want = Ref<Out>::from_float(x);
    return std::memcmp(&want, &got, sizeof got) == 0;
  }
}

template <typename In, typename Out, bool PER_ROW, typename IdxT>
static void check_kernel(i64 cols, u64 in_off, u64 out_off, bool use_perm, bool use_cache,
                         bool record_bad, i64 cap, std::mt19937& rng) {
  typedef typename In::raw I;
  typedef typename Out::raw O;
  const i64 n = 37, m = 150;
  const i64 in_row = cols * (i64)sizeof(I), out_row = cols * (i64)sizeof(O);
  std::vector<unsigned char> tbuf(n * in_row + 256), obuf(m * out_row + 512), cbuf(n * in_row + 256);
  char* values = (char*)((((u64)tbuf.data() + 127) / 128 * 128) + in_off);
  char* out = (char*)((((u64)obuf.data() + 127) / 128 * 128) + out_off);
  char* cache = (char*)((((u64)cbuf.data() + 127) / 128 * 128) + (in_off * 3) % 64);
  std::vector<I> want_rows(n * cols);
  for (i64 i = 0; i < n * cols; ++i) {
    u32 r = (u32)rng();
    if (!std::is_same<In, ut::I8>::value && i % 7 == 0)  // a NaN in both formats, either sign
      r = (0x7f81u + r % 0x7eu) | (i % 2 ? 0x8000u : 0u);
    std::memcpy(&want_rows[i], &r, sizeof(I));
  }
  std::memcpy(values, want_rows.data(), n * in_row);
  // Scales and offsets: per column or per row, some of them zero, negative or tiny.
  const i64 ns = PER_ROW ? n : cols;
  std::vector<float> scale(ns), offset(ns);
  for (i64 i = 0; i < ns; ++i) {
    scale[i] = (float)((int)(rng() % 2001) - 1000) * 1e-4f * (i % 5 == 0 ? 1e-30f : 1.0f);
    offset[i] = (float)((int)(rng() % 2001) - 1000) * 1e-3f;
  }
  // The row cache: every third row, its table row poisoned so a read from the table shows.
  std::vector<int> slot_of(n, -1);
  if (use_cache) {
    int slots = 0;
    for (i64 r = n - 1; r >= 0; --r)
      if (r % 3 == 0) {
        slot_of[r] = slots;
        std::memcpy(cache + (i64)slots * in_row, values + r * in_row, in_row);
        std::memset(values + r * in_row, 0x7f, in_row);
        ++slots;
      }
  }
  std::vector<IdxT> index(m);
  for (i64 q = 0; q < m; ++q) index[q] = (IdxT)(((q * 7919) % (3 * n)) - n - 4);  // some out of range
  std::vector<i64> perm(m);
  for (i64 p = 0; p < m; ++p) perm[p] = p;
  std::sort(perm.begin(), perm.end(), [&](i64 a, i64 b) { return index[a] < index[b]; });
  std::memset(obuf.data(), 0xAB, obuf.size());
  i64 bad[2] = {INT64_MAX, INT64_MIN};
  Args a{values, n, cols, use_perm ? perm.data() : nullptr, m, out, record_bad ? bad : nullptr,
         use_cache ? cache : nullptr, use_cache ? slot_of.data() : nullptr,
         std::is_same<In, ut::I8>::value ? scale.data() : nullptr,
         std::is_same<In, ut::I8>::value ? offset.data() : nullptr, cap};
  const u64 in_addr = (u64)values | (use_cache ? (u64)cache : 0);
  const int e = ut::elems_per_lane(cols, (int)sizeof(I), (int)sizeof(O), in_addr, (u64)out);
  run<In, Out, PER_ROW>(e, a, index.data());
  i64 want_lo = INT64_MAX, want_hi = INT64_MIN;
  for (i64 q = 0; q < m; ++q) {
    const i64 row = ut::wrap_index((i64)index[q], n);
    if (row < 0) {
      want_lo = std::min<i64>(want_lo, (i64)index[q]);
      want_hi = std::max<i64>(want_hi, (i64)index[q]);
    }
    for (i64 c = 0; c < cols; ++c) {
      O got;
      std::memcpy(&got, out + q * out_row + c * (i64)sizeof(O), sizeof(O));
      bool ok;
      if (row < 0) {  // never read, written as zeros
        O zero;
        std::memset(&zero, 0, sizeof zero);
        ok = std::memcmp(&got, &zero, sizeof(O)) == 0;
      } else {
        const i64 si = PER_ROW ? row : c;
        ok = same_as_ref<In, Out>(want_rows[row * cols + c], scale[si], offset[si], got);
      }
      if (!ok) {
        CHECK(false, "in %d out %d per_row %d idx %d cols %lld in_off %llu out_off %llu e %d "
              "perm %d cache %d cap %lld: q %lld (row %lld) col %lld", (int)sizeof(I),
              (int)sizeof(O), (int)PER_ROW, (int)sizeof(IdxT), (long long)cols,
              (unsigned long long)in_off, (unsigned long long)out_off, e, (int)use_perm,
              (int)use_cache, (long long)cap, (long long)q, (long long)row, (long long)c);
        return;
      }
    }
  }
  // Nothing written around the output.
  bool untouched = true;
  for (unsigned char* p = obuf.data(); p < (unsigned char*)out; ++p) untouched &= *p == 0xAB;
  for (unsigned char* p = (unsigned char*)out + m * out_row; p < obuf.data() + obuf.size(); ++p)
    untouched &= *p == 0xAB;
  CHECK(untouched, "bytes around the output were written");
  if (record_bad)
    CHECK(bad[0] == want_lo && bad[1] == want_hi && want_lo < -n && want_hi >= n,
          "bad range [%lld, %lld], want [%lld, %lld]", (long long)bad[0], (long long)bad[1],
          (long long)want_lo, (long long)want_hi);
  else
    CHECK(bad[0] == INT64_MAX && bad[1] == INT64_MIN, "no record without a pointer");
}

template <typename In, typename Out, bool PER_ROW>
static void check_kind(std::mt19937& rng) {
  const int in_size = (int)sizeof(typename In::raw), out_size = (int)sizeof(typename Out::raw);
  for (i64 cols : {1, 2, 3, 4, 5, 8, 12, 16, 24, 100, 128, 130, 257, 300, 512})
    for (u64 in_off : {0, 2, 4, 8, 36, 100})
      for (int variant = 0; variant < 8; ++variant) {
        const bool use_perm = variant & 1, use_cache = variant & 2, record_bad = !(variant & 4);
        const u64 io = in_off / in_size * in_size;
        const u64 oo = (u64)(variant * 4) % 16 / out_size * out_size;
        const i64 cap = (variant % 3 == 0) ? 256 : 1 << 20;  // one block striding, or a full grid
        check_kernel<In, Out, PER_ROW, int>(cols, io, oo, use_perm, use_cache, record_bad, cap, rng);
        check_kernel<In, Out, PER_ROW, long long>(cols, io, (oo + 4) % 16 / out_size * out_size,
                                                  use_perm, use_cache, record_bad, cap, rng);
      }
}

// A table of no rows: every id is out of range, nothing is read (no table, no scales per row).
static void test_kernel_empty_table() {
  const i64 cols = 16, m = 9;
  std::vector<long long> index(m);
  for (i64 q = 0; q < m; ++q) index[q] = q - 4;
  std::vector<float> out(m * cols, 1.0f);
  i64 bad[2] = {INT64_MAX, INT64_MIN};
  Args a{nullptr, 0, cols, nullptr, m, (char*)out.data(), bad, nullptr, nullptr, nullptr, nullptr,
         1 << 20};
  run<ut::I8, ut::F32, true>(4, a, index.data());
  bool zeros = true;
  for (float v : out) zeros &= fbits(v) == 0;
  CHECK(zeros && bad[0] == -4 && bad[1] == 4, "empty table: zeros, ids -4..4 recorded");
}

static void test_kernel() {
  test_kernel_empty_table();
  std::mt19937 rng(7);
  check_kind<ut::I8, ut::F32, false>(rng);
  check_kind<ut::I8, ut::F32, true>(rng);
  check_kind<ut::I8, ut::BF16, false>(rng);
  check_kind<ut::I8, ut::BF16, true>(rng);
  check_kind<ut::I8, ut::F16, false>(rng);
  check_kind<ut::I8, ut::F16, true>(rng);
  check_kind<ut::BF16, ut::F32, false>(rng);
  check_kind<ut::BF16, ut::BF16, false>(rng);
  check_kind<ut::BF16, ut::F16, false>(rng);
  check_kind<ut::F16, ut::F32, false>(rng);
  check_kind<ut::F16, ut::BF16, false>(rng);
  check_kind<ut::F16, ut::F16, false>(rng);
}

int main() {
  test_to_float_exhaustive();
  test_round_ties_and_neighbours();
  test_round_random_and_every_exponent();
  test_nan();
  test_convert_elements();
  test_elems_per_lane();
  test_lanes();
  test_kernel();
  return report("test_convert_math");
}
