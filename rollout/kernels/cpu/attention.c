/* Paged decode attention for CPUs: one query token per sequence, read through block tables.
 *
 * The CPU counterpart of ../paged_decode_triton.py, called by attention.py (which
 * documents the arguments). Work items are (sequence, KV head) pairs, spread over
 * OpenMP threads; an item reads each of its cached keys and values once, in place, for
 * all the query heads that share the KV head, walking the block table block by block.
 * Scores are computed in full (two passes, not an online softmax): q.k for every key, the
 * maximum, exp, then the weighted sum of the values, all in float32.
 *
 * head_dim a multiple of 16 up to 256 (32, 64, 128: every preset) takes `attend_vector`, written
 * with the vector types of vec.h: the dot products of 16 keys are multiply-adds reduced
 * by one tree (hsum16), exp is a vector polynomial, and the weighted sums of two query
 * heads stay in registers while each value row is read once. The next block's keys, and
 * the values of the block whose keys are read, are prefetched (each measured 10% faster
 * in interleaved runs: these reads from L3 are what a call mostly waits for). Other head
 * sizes take `attend_scalar`, the same steps in plain loops.
 */
#include <stdlib.h>
#include <string.h>

#include "vec.h"

/* Scores are padded to whole vectors with this; its exp is 0. */
#define PADDING_SCORE -1e30f

/* The scores of one query head: softmax in place over keys [0, num_keys). */
static inline void softmax_vector(float *s, int64_t num_keys) {
    const int64_t padded = (num_keys + LANES - 1) / LANES * LANES;
    for (int64_t t = num_keys; t < padded; ++t) s[t] = PADDING_SCORE;
    vf peak = load(s);
    for (int64_t t = LANES; t < padded; t += LANES) {
        const vf v = load(s + t);
        const vi more = v > peak;
        peak = (vf)(((vi)v & more) | ((vi)peak & ~more));
    }
    float top = peak[0];
    for (int i = 1; i < LANES; ++i) top = peak[i] > top ? peak[i] : top;
    vf total = splat(0.0f);
    for (int64_t t = 0; t < padded; t += LANES) {
        const vf e = exp_nonpositive(load(s + t) - top);
        store(s + t, e);
        total += e;
    }
    const vf inverse = splat(1.0f / hsum(total));
    for (int64_t t = 0; t < padded; t += LANES) store(s + t, load(s + t) * inverse);
}

/* What one work item reads: the rows of its KV head, and where its scores go. */
typedef struct {
    const float *keys, *values; /* the item's KV head in block 0 of each cache */
    const int64_t *table;
    int64_t cached;             /* cached keys: positions 0 .. cached - 1 */
    const float *k_new, *v_new; /* this step's key and value, or NULL */
    int64_t row_stride;         /* floats from one position to the next within a block */
    int64_t block_stride;       /* floats from one block to the next */
    int64_t block_size, group, max_keys;
} Item;

/* Ask for the item's rows of `block` ahead of their use (one prefetch per 64-byte line). */
static inline void prefetch_block(const Item *it, const float *base, int64_t block, int64_t head_dim) {
    const float *rows = base + it->table[block] * it->block_stride;
    for (int64_t j = 0; j < it->block_size; ++j)
        for (int64_t d = 0; d < head_dim; d += 16) __builtin_prefetch(rows + j * it->row_stride + d);
}

static inline const float *key_row(const Item *it, const float *base, int64_t t) {
    return base + it->table[t / it->block_size] * it->block_stride + (t % it->block_size) * it->row_stride;
}

/* out[h] = sum_t p[h][t] v_t for `heads` (1 or 2, a constant once inlined) consecutive
 * query heads, whose probabilities are `max_keys` apart: each value row is read once for
 * both, and the sums stay in registers. */
static inline __attribute__((always_inline)) void weighted_values(const Item *it, const int64_t head_dim,
                                                                  const int heads, const float *p, float *out) {
    enum { MAX_CHUNKS = 16 };
    const int64_t chunks = head_dim / LANES;
    vf sum[2][MAX_CHUNKS];
    for (int h = 0; h < heads; ++h)
        for (int64_t c = 0; c < chunks; ++c) sum[h][c] = splat(0.0f);
    for (int64_t start = 0, block = 0; start < it->cached; start += it->block_size, ++block) {
        const float *values = it->values + it->table[block] * it->block_stride;
        const int64_t n = it->cached - start < it->block_size ? it->cached - start : it->block_size;
        if (start + it->block_size < it->cached) prefetch_block(it, it->values, block + 1, head_dim);
        for (int64_t j = 0; j < n; ++j) {
            const float *v = values + j * it->row_stride;
            for (int h = 0; h < heads; ++h) {
                const vf weight = splat(p[h * it->max_keys + start + j]);
                for (int64_t c = 0; c < chunks; ++c) sum[h][c] += weight * load(v + c * LANES);
            }
        }
    }
    for (int h = 0; h < heads; ++h) {
        if (it->v_new != NULL)
            for (int64_t c = 0; c < chunks; ++c) sum[h][c] += splat(p[h * it->max_keys + it->cached]) * load(it->v_new + c * LANES);
        for (int64_t c = 0; c < chunks; ++c) store(out + h * head_dim + c * LANES, sum[h][c]);
    }
}

/* head_dim a multiple of LANES; inlined with a constant head_dim. `queries` holds the
 * group's queries, already scaled; `out` the group's outputs, consecutive. */
static inline __attribute__((always_inline)) void attend_vector(const Item *it, const int64_t head_dim,
                                                                const float *queries, float *scores, float *out) {
    const int64_t chunks = head_dim / LANES, num_keys = it->cached + (it->k_new != NULL);
    for (int64_t start = 0, block = 0; start < it->cached; start += it->block_size, ++block) {
        const float *keys = it->keys + it->table[block] * it->block_stride;
        const int64_t n = it->cached - start < it->block_size ? it->cached - start : it->block_size;
        if (start + it->block_size < it->cached) prefetch_block(it, it->keys, block + 1, head_dim);
        prefetch_block(it, it->values, block, head_dim); /* for the weighted sum that follows */
        int64_t j = 0;
        for (; j + LANES <= n; j += LANES) /* 16 keys at a time: one tree of sums for all */
            for (int64_t g = 0; g < it->group; ++g) {
                const float *q = queries + g * head_dim;
                vf products[LANES];
                for (int key = 0; key < LANES; ++key) {
                    const float *k = keys + (j + key) * it->row_stride;
                    products[key] = load(q) * load(k);
                    for (int64_t c = 1; c < chunks; ++c) products[key] += load(q + c * LANES) * load(k + c * LANES);
                }
                store(scores + g * it->max_keys + start + j, hsum16(products));
            }
        for (; j < n; ++j) {
            const float *k = keys + j * it->row_stride;
            for (int64_t g = 0; g < it->group; ++g) {
                const float *q = queries + g * head_dim;
                vf dot = load(q) * load(k);
                for (int64_t c = 1; c < chunks; ++c) dot += load(q + c * LANES) * load(k + c * LANES);
                scores[g * it->max_keys + start + j] = hsum(dot);
            }
        }
    }
    if (it->k_new != NULL)
        for (int64_t g = 0; g < it->group; ++g) {
            vf dot = splat(0.0f);
            for (int64_t c = 0; c < chunks; ++c) dot += load(queries + g * head_dim + c * LANES) * load(it->k_new + c * LANES);
            scores[g * it->max_keys + it->cached] = hsum(dot);
        }
    for (int64_t g = 0; g < it->group; ++g) softmax_vector(scores + g * it->max_keys, num_keys);
    int64_t g = 0;
    for (; g + 2 <= it->group; g += 2) weighted_values(it, head_dim, 2, scores + g * it->max_keys, out + g * head_dim);
    for (; g < it->group; ++g) weighted_values(it, head_dim, 1, scores + g * it->max_keys, out + g * head_dim);
}

/* Any head_dim: the same steps in plain loops. */
static void attend_scalar(const Item *it, int64_t head_dim, const float *queries, float *scores, float *out) {
    const int64_t num_keys = it->cached + (it->k_new != NULL);
    for (int64_t g = 0; g < it->group; ++g) {
        const float *q = queries + g * head_dim;
        float *s = scores + g * it->max_keys, peak = 0.0f, total = 0.0f;
        for (int64_t t = 0; t < num_keys; ++t) {
            const float *k = t < it->cached ? key_row(it, it->keys, t) : it->k_new;
            float dot = 0.0f;
            for (int64_t d = 0; d < head_dim; ++d) dot += q[d] * k[d];
            s[t] = dot;
            peak = t == 0 || dot > peak ? dot : peak;
        }
        for (int64_t t = 0; t < num_keys; ++t) total += s[t] = exp_nonpositive_scalar(s[t] - peak);
        const float inverse = 1.0f / total;
        float *o = out + g * head_dim;
        memset(o, 0, sizeof(float) * (size_t)head_dim);
        for (int64_t t = 0; t < num_keys; ++t) {
            const float *v = t < it->cached ? key_row(it, it->values, t) : it->v_new;
            const float p = s[t] * inverse;
            for (int64_t d = 0; d < head_dim; ++d) o[d] += p * v[d];
        }
    }
}

int treadle_paged_decode_f32(
    const float *q, const float *k_new, const float *v_new, const float *k_cache, const float *v_cache,
    const int64_t *block_tables, const int64_t *num_cached, const uint8_t *new_visible, float *out,
    int64_t num_seqs, int64_t num_heads, int64_t kv_heads, int64_t head_dim, int64_t block_size,
    int64_t max_blocks, float scale, int num_threads) {
    const int64_t group = num_heads / kv_heads;
    /* room for the new key, rounded up to whole vectors */
    const int64_t max_keys = (max_blocks * block_size + 1 + LANES - 1) / LANES * LANES;
    const int vector = head_dim % LANES == 0 && head_dim / LANES <= 16;
    int failed = 0;
#pragma omp parallel num_threads(num_threads)
    {
        /* Per thread: scores [group][max_keys] and scaled queries [group][head_dim]. */
        float *scores = malloc(sizeof(float) * (size_t)(group * (max_keys + head_dim)));
        if (scores == NULL) {
#pragma omp atomic write
            failed = 1;
        }
        float *queries = scores + group * max_keys;
#pragma omp for schedule(dynamic, kv_heads)
        for (int64_t item = 0; item < num_seqs * kv_heads; ++item) {
            if (scores == NULL) continue;
            const int64_t seq = item / kv_heads, kv_head = item % kv_heads;
            const int sees_new = k_new != NULL && new_visible[seq];
            const int64_t offset = (seq * kv_heads + kv_head) * head_dim;
            const Item it = {
                .keys = k_cache + kv_head * head_dim, .values = v_cache + kv_head * head_dim,
                .table = block_tables + seq * max_blocks, .cached = num_cached[seq],
                .k_new = sees_new ? k_new + offset : NULL, .v_new = sees_new ? v_new + offset : NULL,
                .row_stride = kv_heads * head_dim, .block_stride = block_size * kv_heads * head_dim,
                .block_size = block_size, .group = group, .max_keys = max_keys,
            };
            float *out_group = out + (seq * num_heads + kv_head * group) * head_dim;
            if (it.cached + sees_new == 0) { /* no key to attend to: a zero output */
                memset(out_group, 0, sizeof(float) * (size_t)(group * head_dim));
                continue;
            }
            const float *q_group = q + (seq * num_heads + kv_head * group) * head_dim;
            for (int64_t i = 0; i < group * head_dim; ++i) queries[i] = q_group[i] * scale;
            switch (vector ? head_dim : 0) {
            case 32: attend_vector(&it, 32, queries, scores, out_group); break;
            case 64: attend_vector(&it, 64, queries, scores, out_group); break;
            case 128: attend_vector(&it, 128, queries, scores, out_group); break;
            default:
                if (vector) attend_vector(&it, head_dim, queries, scores, out_group);
                else attend_scalar(&it, head_dim, queries, scores, out_group);
            }
        }
        free(scores);
    }
    return failed ? -1 : 0;
}
