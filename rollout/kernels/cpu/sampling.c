/* Sampling a token from each row of logits, for CPUs (float32): called by sampling.py,
 * whose torch reference is rollout/paged/sampler.py (the same rule, in five to seven
 * torch ops over the whole [rows, vocab] matrix, several of them in float64).
 *
 * Per row: the policy logprob log_softmax(logits)[token] at temperature 1, and the token:
 * temperature 0 is greedy (the first index of the maximum); otherwise, with weights
 * w_i = exp((logits_i - max) / temperature), the first token whose cumulative weight
 * exceeds u * the total weight, u ~ U[0, 1) given per row. Both sums add the same float
 * sums of 16 weights in double, in the same order, so the total is exactly where the
 * cumulative weight ends; a token of weight 0 is never chosen. A row with a NaN gets its
 * first NaN's index (as torch's argmax) and a NaN logprob. Rows are split over OpenMP
 * threads.
 */
#include <math.h>

#include "vec.h"

/* The row's maximum, or NaN if it holds one. */
static float row_max(const float *x, int64_t n) {
    float peak = x[0];
    int64_t i = 0;
    vi nan = (vi){0};
    if (n >= LANES) {
        vf top = load(x);
        for (i = 0; i + LANES <= n; i += LANES) {
            const vf v = load(x + i);
            const vi more = v > top;
            nan |= v != v;
            top = (vf)(((vi)v & more) | ((vi)top & ~more));
        }
        for (int k = 0; k < LANES; ++k) peak = top[k] > peak ? top[k] : peak;
    }
    int any_nan = 0;
    for (int k = 0; k < LANES; ++k) any_nan |= nan[k];
    for (; i < n; ++i) {
        any_nan |= x[i] != x[i];
        peak = x[i] > peak ? x[i] : peak;
    }
    return any_nan ? NAN : peak;
}

/* w_i = exp((x_i - peak) * inverse_temperature); returns the sum of the w_i, as `draw`
 * adds them up: each vector's float sum, then the tail's weights, in double. */
static double weights(const float *x, float peak, float inverse_temperature, float *w, int64_t n) {
    double total = 0.0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const vf e = exp_nonpositive((load(x + i) - peak) * inverse_temperature);
        store(w + i, e);
        total += hsum(e);
    }
    for (; i < n; ++i) total += w[i] = exp_nonpositive_scalar((x[i] - peak) * inverse_temperature);
    return total;
}

/* The last token of positive weight in [begin, end) (there is one: the row's peak has
 * weight 1, and a vector whose sum is positive holds one). */
static int64_t last_positive(const float *w, int64_t begin, int64_t end) {
    for (int64_t i = end - 1; i > begin; --i)
        if (w[i] > 0.0f) return i;
    return begin;
}

/* The first i whose cumulative weight exceeds target. Whole vectors are skipped by their
 * sums, the sums `weights` added up, so the vector holding the target is found exactly;
 * within it, the weights are added one by one, and if rounding leaves the target beyond
 * them, its last token of positive weight is taken. */
static int64_t draw(const float *w, int64_t n, double target) {
    double cumulative = 0.0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const double chunk = hsum(load(w + i));
        if (cumulative + chunk > target) {
            for (int64_t j = i; j < i + LANES; ++j) {
                cumulative += w[j];
                if (w[j] > 0.0f && cumulative > target) return j;
            }
            return last_positive(w, i, i + LANES);
        }
        cumulative += chunk;
    }
    for (; i < n; ++i) {
        cumulative += w[i];
        if (w[i] > 0.0f && cumulative > target) return i;
    }
    return last_positive(w, 0, n); /* u * mass rounded up to the mass */
}

void treadle_sample_f32(const float *logits, const float *temperatures, const double *uniforms, int64_t *tokens,
                        float *logprobs, float *scratch, int64_t rows, int64_t vocab, int num_threads) {
#pragma omp parallel for num_threads(num_threads) if (rows * vocab >= 65536)
    for (int64_t r = 0; r < rows; ++r) {
        const float *x = logits + r * vocab;
        float *w = scratch + r * vocab;
        const float peak = row_max(x, vocab);
        if (peak != peak) {
            int64_t token = 0;
            while (x[token] == x[token]) ++token; /* row_max found a NaN */
            tokens[r] = token;
            logprobs[r] = peak;
            continue;
        }
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
