/* Sampling a token from each row of logits, for CPUs (float32): called by sampling.py,
 * whose torch reference is rollout/paged/sampler.py (the same rule, in five to seven
 * torch ops over the whole [rows, vocab] matrix, several of them in float64).
 *
 * Per row: the policy logprob log_softmax(logits)[token] at temperature 1, and the token:
 * temperature 0 is greedy (the first index of the maximum); otherwise, with weights
 * w_i = exp((logits_i - max) / temperature), the first token whose cumulative weight
 * (summed in double) exceeds u * the total weight, u ~ U[0, 1) given per row. A token of
 * weight 0 is never chosen. Rows are split over OpenMP threads.
 */
#include <math.h>

#include "vec.h"

static float row_max(const float *x, int64_t n) {
    float peak = x[0];
    int64_t i = 0;
    if (n >= LANES) {
        vf top = load(x);
        for (i = LANES; i + LANES <= n; i += LANES) {
            const vf v = load(x + i);
            const vi more = v > top;
            top = (vf)(((vi)v & more) | ((vi)top & ~more));
        }
        for (int k = 0; k < LANES; ++k) peak = top[k] > peak ? top[k] : peak;
    }
    for (; i < n; ++i) peak = x[i] > peak ? x[i] : peak;
    return peak;
}

/* w_i = exp((x_i - peak) * inverse_temperature); returns the sum of the w_i. */
static double weights(const float *x, float peak, float inverse_temperature, float *w, int64_t n) {
    vf sums = splat(0.0f);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const vf e = exp_nonpositive((load(x + i) - peak) * inverse_temperature);
        store(w + i, e);
        sums += e;
    }
    double total = hsum(sums);
    for (; i < n; ++i) total += w[i] = exp_nonpositive_scalar((x[i] - peak) * inverse_temperature);
    return total;
}

/* The first i whose cumulative weight exceeds target (skipping whole vectors at a time);
 * the last token of positive weight if rounding left none (u * mass rounded up). */
static int64_t draw(const float *w, int64_t n, double target) {
    double cumulative = 0.0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const double chunk = hsum(load(w + i));
        if (cumulative + chunk > target) break;
        cumulative += chunk;
    }
    for (; i < n; ++i) {
        cumulative += w[i];
        if (w[i] > 0.0f && cumulative > target) return i;
    }
    for (int64_t j = n - 1; j > 0; --j)
        if (w[j] > 0.0f) return j;
    return 0;
}

void treadle_sample_f32(const float *logits, const float *temperatures, const double *uniforms, int64_t *tokens,
                        float *logprobs, float *scratch, int64_t rows, int64_t vocab, int num_threads) {
#pragma omp parallel for num_threads(num_threads) if (rows * vocab >= 65536)
    for (int64_t r = 0; r < rows; ++r) {
        const float *x = logits + r * vocab;
        float *w = scratch + r * vocab;
        const float peak = row_max(x, vocab);
        const double total = weights(x, peak, 1.0f, w, vocab); /* temperature 1: the logprob's */
        const float temperature = temperatures[r];
        int64_t token = 0;
        if (temperature <= 0.0f) {
            while (x[token] != peak) ++token;
        } else {
            const double mass = temperature == 1.0f ? total : weights(x, peak, 1.0f / temperature, w, vocab);
            token = draw(w, vocab, uniforms[r] * mass);
        }
        tokens[r] = token;
        logprobs[r] = (x[token] - peak) - (float)log(total);
    }
}
