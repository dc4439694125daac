// Shared definitions for unified-tensor kernels.
//
// Everything here compiles three ways: under NVRTC (kernels), under nvcc, and as plain C++ with
// g++ (the host unit tests in tests/cpp/), so the index math the kernels run is the same code the
// CPU tests check.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define UT_HD __host__ __device__ __forceinline__
#define UT_UNROLL _Pragma("unroll")
#else
#define UT_HD inline
#define UT_UNROLL
#endif

#if !defined(__CUDACC_RTC__)
#include <cstdint>
#include <cstring>
#endif

namespace ut {

// NVRTC has no <cstdint>; use the builtin types everywhere.
typedef long long i64;
typedef unsigned long long u64;

// A warp's memory transaction on the PCIe/zero-copy path is one 128-byte line.
static const int kLineBytes = 128;
static const int kWarpSize = 32;

}  // namespace ut
