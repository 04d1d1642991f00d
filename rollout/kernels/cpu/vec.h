/* Vector helpers of the CPU kernels: 16 floats as one GCC/Clang vector type, which the
 * compiler maps to the machine's SIMD registers (one AVX-512 register, two AVX2 ones,
 * four SSE or NEON ones), and exp as a polynomial in those vectors. */
#ifndef TREADLE_VEC_H
#define TREADLE_VEC_H

#include <stdint.h>

#define LANES 16
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef float vf_unaligned __attribute__((vector_size(4 * LANES), aligned(4)));

#ifdef __clang__
#define SHUFFLE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define SHUFFLE(v, ...) __builtin_shuffle(v, (vi){__VA_ARGS__})
#endif

#define EXP_FLOOR -87.0f

static inline vf load(const float *p) { return *(const vf_unaligned *)p; }
static inline void store(float *p, vf v) { *(vf_unaligned *)p = v; }
static inline vf splat(float x) { return (vf){0} + x; }

static inline float hsum(vf v) {
    v += SHUFFLE(v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v += SHUFFLE(v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v += SHUFFLE(v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v += SHUFFLE(v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    return v[0];
}

/* exp(x) for x <= 0 (a score minus the row's maximum): 2^(x log2 e) = 2^n 2^f with n
 * integral and f in [-0.5, 0.5], 2^f by the degree-6 Taylor polynomial of exp(f ln 2)
 * (relative error below 2e-7, float32 expf's order). At and below -87 the result is
 * flushed to 0 (expf gives < 2e-38 there), so 2^n stays a normal float. */
static inline vf exp_nonpositive(vf x) {
    const vi low = x <= splat(EXP_FLOOR);
    x = (vf)(((vi)x & ~low) | ((vi)splat(EXP_FLOOR) & low));
    const vf y = x * 1.44269504088896341f;
    const vi n = __builtin_convertvector(y - 0.5f, vi); /* y <= 0: truncation rounds to nearest */
    const vf r = (y - __builtin_convertvector(n, vf)) * 0.693147180559945309f;
    vf p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    p *= (vf)((n + 127) << 23);
    return (vf)((vi)p & ~low);
}

static inline float exp_nonpositive_scalar(float x) { return exp_nonpositive(splat(x))[0]; }

#endif
