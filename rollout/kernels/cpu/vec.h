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

/* SHUFFLE picks lanes of v; SHUFFLE2 lanes of a (0-15) and b (16-31). */
#ifdef __clang__
#define SHUFFLE(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#define SHUFFLE2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(v, ...) __builtin_shuffle(v, (vi){__VA_ARGS__})
#define SHUFFLE2(a, b, ...) __builtin_shuffle(a, b, (vi){__VA_ARGS__})
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

/* The lane sums of 16 vectors, as one vector: out[j] = hsum(p[j]). A tree of two-input
 * shuffles and adds (45 operations, against 128 for 16 hsums) that halves the lanes per
 * vector while doubling the vectors per lane; it leaves the sums in bit-reversed order,
 * which the last shuffle undoes. */
static inline vf hsum16(const vf p[16]) {
    vf a[8], b[4], c[2];
    for (int i = 0; i < 8; ++i) /* a[i]: 8 partial sums of p[2i], then 8 of p[2i+1] */
        a[i] = SHUFFLE2(p[2 * i], p[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               SHUFFLE2(p[2 * i], p[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int i = 0; i < 4; ++i) /* b[i]: 4 partial sums each of 4 vectors */
        b[i] = SHUFFLE2(a[2 * i], a[2 * i + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
               SHUFFLE2(a[2 * i], a[2 * i + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int i = 0; i < 2; ++i) /* c[i]: 2 partial sums each of 8 vectors */
        c[i] = SHUFFLE2(b[2 * i], b[2 * i + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
               SHUFFLE2(b[2 * i], b[2 * i + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    const vf sums = SHUFFLE2(c[0], c[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
                    SHUFFLE2(c[0], c[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    return SHUFFLE(sums, 0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15);
}

/* exp(x) for x <= 0 (a score minus the row's maximum): 2^(x log2 e) = 2^n 2^f with n
 * integral and f in [-0.5, 0.5], 2^f by the degree-6 Taylor polynomial of exp(f ln 2).
 * The polynomial is good to 2e-7; the rounding of x log2 e adds up to 1.4e-6 (relative)
 * for x near -87, where exp(x) is 1e-38 and no softmax sees it. At and below -87 the
 * result is flushed to 0 (expf gives < 2e-38 there), so 2^n stays a normal float. */
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
