/* The decode step's elementwise work between its matmuls, for CPUs (float32), each one
 * pass over its rows: called by elementwise.py, which documents the arguments and names
 * the torch reference of each (rollout/paged/model.py).
 *
 * At a decode step's size (a few dozen rows of a few hundred floats) each of these takes
 * a microsecond or two; as torch ops the same work is five to ten calls per layer, each
 * of which costs more than that to dispatch. Rows are split over OpenMP threads only
 * when there are enough of them to pay for waking a thread.
 */
#include <math.h>
#include <string.h>

#include "vec.h"

#define PARALLEL_MIN_FLOATS 65536

/* h += delta (when delta is not NULL), then out = h * rsqrt(mean(h^2) + eps) * weight:
 * a residual connection followed by transformers' float32 RMSNorm. */
void treadle_add_rms_norm_f32(float *h, const float *delta, const float *weight, float eps, float *out,
                              int64_t rows, int64_t dim, int num_threads) {
#pragma omp parallel for num_threads(num_threads) if (rows * dim >= PARALLEL_MIN_FLOATS)
    for (int64_t r = 0; r < rows; ++r) {
        float *x = h + r * dim;
        if (delta != NULL)
            for (int64_t i = 0; i < dim; ++i) x[i] += delta[r * dim + i];
        float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
        for (int64_t i = 0; i < dim; ++i) squares += x[i] * x[i];
        const float rstd = 1.0f / sqrtf(squares / (float)dim + eps);
        for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = x[i] * rstd * weight[i];
    }
}

/* One head of `x` rotated by RoPE at the position whose tables are cos, signed_sin:
 * x * cos + cat(x2, x1) * signed_sin (signed_sin: sin with its first half negated).
 * With `norm` (Qwen3's q_norm / k_norm), x is first RMS-normalised over the head and
 * scaled by norm, as transformers does before RoPE: x * rstd * norm, rounded the same. */
static inline void rotate(const float *x, const float *norm, float eps, const float *cos, const float *signed_sin,
                          float *out, int64_t head_dim) {
    const int64_t half = head_dim / 2;
    if (norm == NULL) {
        for (int64_t d = 0; d < head_dim; ++d) out[d] = x[d] * cos[d] + x[d < half ? d + half : d - half] * signed_sin[d];
        return;
    }
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int64_t d = 0; d < head_dim; ++d) squares += x[d] * x[d];
    const float rstd = 1.0f / sqrtf(squares / (float)head_dim + eps);
    for (int64_t d = 0; d < head_dim; ++d) {
        const int64_t p = d < half ? d + half : d - half;
        out[d] = x[d] * rstd * norm[d] * cos[d] + x[p] * rstd * norm[p] * signed_sin[d];
    }
}

/* Rows of qkv = [q heads | k heads | v heads]: q rotated into q_out [rows, num_heads,
 * head_dim]; k rotated and v copied into the caches ([slots, kv_heads, head_dim]) at
 * slots[r], unless slots[r] < 0 (a row whose KV is cached already). q_norm and k_norm
 * ([head_dim] each, or both NULL): a per-head RMSNorm of q and of k before the rotation. */
void treadle_rope_write_f32(const float *qkv, const int64_t *positions, const float *cos, const float *signed_sin,
                            const float *q_norm, const float *k_norm, float eps, float *q_out, float *k_cache,
                            float *v_cache, const int64_t *slots, int64_t rows, int64_t num_heads, int64_t kv_heads,
                            int64_t head_dim, int num_threads) {
    const int64_t width = (num_heads + 2 * kv_heads) * head_dim, kv_width = kv_heads * head_dim;
#pragma omp parallel for num_threads(num_threads) if (rows * width >= PARALLEL_MIN_FLOATS)
    for (int64_t r = 0; r < rows; ++r) {
        const float *row = qkv + r * width;
        const float *c = cos + positions[r] * head_dim, *s = signed_sin + positions[r] * head_dim;
        for (int64_t h = 0; h < num_heads; ++h)
            rotate(row + h * head_dim, q_norm, eps, c, s, q_out + (r * num_heads + h) * head_dim, head_dim);
        if (slots[r] < 0) continue;
        const float *k = row + num_heads * head_dim, *v = k + kv_width;
        for (int64_t h = 0; h < kv_heads; ++h)
            rotate(k + h * head_dim, k_norm, eps, c, s, k_cache + slots[r] * kv_width + h * head_dim, head_dim);
        memcpy(v_cache + slots[r] * kv_width, v, sizeof(float) * (size_t)kv_width);
    }
}

/* out[r] = silu(gate[r]) * up[r] for rows of gate_up = [gate | up], each `inter` wide.
 * silu(x) = x sigmoid(x), with sigmoid from exp(-|x|) so that exp never overflows. */
void treadle_silu_mul_f32(const float *gate_up, float *out, int64_t rows, int64_t inter, int num_threads) {
#pragma omp parallel for num_threads(num_threads) if (rows * inter >= PARALLEL_MIN_FLOATS)
    for (int64_t r = 0; r < rows; ++r) {
        const float *gate = gate_up + r * 2 * inter, *up = gate + inter;
        float *o = out + r * inter;
        int64_t i = 0;
        for (; i + LANES <= inter; i += LANES) {
            const vf x = load(gate + i);
            const vi negative = x < splat(0.0f);
            const vf e = exp_nonpositive((vf)(((vi)x & negative) | ((vi)-x & ~negative))); /* exp(-|x|) */
            const vf numerator = (vf)(((vi)e & negative) | ((vi)splat(1.0f) & ~negative));
            store(o + i, x * (numerator / (1.0f + e)) * load(up + i));
        }
        for (; i < inter; ++i) {
            const float x = gate[i], e = exp_nonpositive_scalar(-fabsf(x));
            o[i] = x * ((x < 0.0f ? e : 1.0f) / (1.0f + e)) * up[i];
        }
    }
}
