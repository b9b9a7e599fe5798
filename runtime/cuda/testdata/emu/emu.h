// emu.h: runs generated CUDA kernels on the CPU, for runtime/cuda's tests on
// machines without a GPU. Included (g++ -include emu.h) before a generated
// module, which is then compiled as host C++. Every CUDA thread of a block
// is a fiber (ucontext) on the calling thread; __syncthreads, __syncwarp
// and the warp shuffles are barriers at which fibers switch. Blocks run one
// after another. Slow, exact about the synchronisation the kernels rely on,
// and enough for the tiny golden models.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ucontext.h>

#define PIO_EMULATE 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__ static
#define __shared__ static
#define __launch_bounds__(n)
#define __align__(n) alignas(n)

struct dim3e { unsigned x, y, z; };
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };

struct pio_fiber;
extern "C" {
extern pio_fiber* pio_cur;  // the running fiber
extern dim3e pio_block_idx, pio_block_dim, pio_grid_dim;
void pio_emu_sync_block();
void pio_emu_sync_warp();
float pio_emu_shfl(float v, int src_lane, int mode);  // mode 0: src lane, 1: xor
int pio_emu_shfl_i(int v, int src_lane, int mode);
unsigned pio_emu_tid();
}
#define threadIdx (dim3e{pio_emu_tid(), 0, 0})
#define blockIdx pio_block_idx
#define blockDim pio_block_dim
#define gridDim pio_grid_dim

inline void __syncthreads() { pio_emu_sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { pio_emu_sync_warp(); }
inline float __shfl_xor_sync(unsigned, float v, int o) { return pio_emu_shfl(v, o, 1); }
inline int __shfl_xor_sync(unsigned, int v, int o) { return pio_emu_shfl_i(v, o, 1); }
inline float __shfl_sync(unsigned, float v, int l) { return pio_emu_shfl(v, l, 0); }
inline unsigned __shfl_sync(unsigned, unsigned v, int l) { return (unsigned)pio_emu_shfl_i((int)v, l, 0); }

inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline void sincos(double a, double* s, double* c) { *s = std::sin(a); *c = std::cos(a); }
#include <algorithm>
#include <math.h>
using std::min;
using std::max;

inline float pio_emu_f16_to_f32(unsigned short h) {
  unsigned s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023, u;
  if (e == 0) {
    if (m == 0) u = s << 31;
    else { int k = -1; do { m <<= 1; k++; } while (!(m & 1024)); u = (s << 31) | ((112 - k) << 23) | ((m & 1023) << 13); }
  } else if (e == 31) u = (s << 31) | 0x7f800000u | (m << 13);
  else u = (s << 31) | ((e + 112) << 23) | (m << 13);
  return __uint_as_float(u);
}
inline unsigned short pio_emu_f32_to_f16(float f) { return (unsigned short)(__float_as_uint(f) >> 16); }  // unused by the tests
