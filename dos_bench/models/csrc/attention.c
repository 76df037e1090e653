/* Scaled dot-product attention, forward and backward, for float32 CPU tensors, that computes
 * only the scores a query may attend to; loaded by dos_bench/models/native.py, used by
 * dos_bench/models/heads/attention.py (Xtal2DoS's masked decoder self-attention, P-X2D §2.3).
 *
 *   S = s Q K^T (+ mask),   P = softmax_rows(S),   O = P V,   lse_r = log sum_j exp(S_rj)
 *
 * One (batch, head) pair per task; its queries in blocks of BQ rows. With a causal mask the block
 * starting at row r0 needs the keys 0 .. r0+BQ-1 only, so about half of the score matrix is never
 * computed (torch 2.13's fused CPU kernel skips it in the forward only). A whole score row fits
 * in the scratch buffer (n_k is a few hundred here), so the softmax is exact in one pass; the
 * backward recomputes P from the saved log-sum-exp instead of keeping the (n_q, n_k) matrix.
 * Matrix products run on microgemm.h's register-blocked kernel, on the task's own thread: K and V
 * of the task are transposed once into scratch (their rows padded to a multiple of 16 with
 * zeros), so every product reads its right-hand side row by row, and score rows are
 * stored with that padded stride. (They went to the BLAS sgemm_ inside torch before: MKL, whose
 * AVX2 code on AMD and per-call overhead on these 64 x 300 x 64 products gave ~140 GFLOP/s on two
 * Zen 5 cores.)
 *
 * Tensors are addressed by element strides (batch, head, row), the last dimension contiguous, so
 * the (B, n, H, d) layout of a multi-head projection is read and written without a transpose.
 * KEY_MASK (may be NULL): B x n_k bytes, nonzero = may be attended to; keys after a row's last
 * allowed one (the padding of a batch of crystals) are not scored at all. A query with no key it
 * may attend to gets a zero output row and lse = -inf (and zero gradients).
 *
 * Return codes: 0 ok, 3 out of memory.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "microgemm.h"
#include "vexp.h"

#define PAD(n) (((n) + 15) / 16 * 16)

/* Query rows per block: 64 under a causal mask (finer blocks skip more of the triangle but make
 * the products too small), else as many as keep the block's scores within 128 KiB. */
static int64_t block_rows(int causal, int64_t n_q, int64_t n_k) {
    int64_t bq = causal ? 64 : 32768 / (n_k > 0 ? n_k : 1);
    if (bq < 64) bq = 64;
    return bq < n_q ? bq : (n_q > 0 ? n_q : 1);
}

#if DOS_VW == 16
typedef int dos_vi __attribute__((vector_size(64)));

/* Transpose 16 rows of 16 floats in registers: four rounds that swap the off-diagonal blocks of
 * 8, 4, 2 and 1 (one two-source permute per row and round). */
DOS_INLINE void transpose16(dos_vf x[16]) {
    static const dos_vi lo[4] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
        {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
        {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
        {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};
    static const dos_vi hi[4] = {
        {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
        {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
        {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
        {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}};
#pragma GCC unroll 4
    for (int s = 0; s < 4; ++s) {
        const int h = 8 >> s;
#pragma GCC unroll 16
        for (int r = 0; r < 16; ++r)
            if (!(r & h)) {
                const dos_vf a = x[r], b = x[r + h];
                x[r] = __builtin_shuffle(a, b, lo[s]);
                x[r + h] = __builtin_shuffle(a, b, hi[s]);
            }
    }
}
#endif

/* T (d x ld, ld >= PAD(n)) = X^T for the n rows of X (stride xr); columns n .. ld-1 zero.
 * In 16 x 16 blocks through registers where the vectors are 16 wide: read element by element,
 * the rows' H*d stride made this a fifth of the backward's time outside the products. */
static void transpose_rows(const float *X, int64_t xr, int64_t n, int64_t d, int64_t ld, float *T) {
    int64_t j0 = 0, t_vec = 0;
#if DOS_VW == 16
    t_vec = d / 16 * 16;
    for (; j0 + 16 <= n; j0 += 16)
        for (int64_t t0 = 0; t0 < t_vec; t0 += 16) {
            dos_vf x[16];
            for (int r = 0; r < 16; ++r) x[r] = *(const dos_vf *)(X + (j0 + r) * xr + t0);
            transpose16(x);
            for (int r = 0; r < 16; ++r) *(dos_vf *)(T + (t0 + r) * ld + j0) = x[r];
        }
#endif
    for (int64_t t = 0; t < d; ++t) {
        float *row = T + t * ld;
        for (int64_t j = t < t_vec ? j0 : 0; j < n; ++j) row[j] = X[j * xr + t];
        memset(row + n, 0, (size_t)(ld - n) * sizeof(float));
    }
}

/* Keys after the last one MASK allows are padding: never scored. */
static inline int64_t key_extent(const uint8_t *mask, int64_t n_k) {
    if (!mask) return n_k;
    while (n_k > 0 && !mask[n_k - 1]) --n_k;
    return n_k;
}

/* Keys row r of a block may attend to: [0, n) and, if MASK, only where MASK is nonzero. */
static inline int64_t row_keys(int causal, int64_t r, int64_t n_k) {
    return causal ? (r + 1 < n_k ? r + 1 : n_k) : n_k;
}

/* Scores of rows r0 .. r0+m-1 against keys 0 .. kend-1 into S (ld PAD(kend)), masked to -inf;
 * KT is K^T (d x ldk). Columns kend .. PAD(kend)-1 of S hold values nobody reads. */
static void scores(const float *q, int64_t qr, const float *KT, int64_t ldk, int64_t r0, int64_t m,
                   int64_t kend, int64_t d, float scale, int causal, const uint8_t *mask,
                   float *S) {
    const int64_t ld = PAD(kend);
    dos_mm(m, ld, d, scale, q + r0 * qr, qr, 1, KT, ldk, 0.0f, S, ld);
    for (int64_t i = 0; i < m; ++i) {
        float *s = S + i * ld;
        const int64_t n = row_keys(causal, r0 + i, kend);
        for (int64_t j = n; j < kend; ++j) s[j] = -INFINITY;
        if (mask)
            for (int64_t j = 0; j < n; ++j)
                if (!mask[j]) s[j] = -INFINITY;
    }
}

int dos_attn_forward(const float *Q, const float *K, const float *V, const uint8_t *KEY_MASK,
                     int64_t B, int64_t H, int64_t n_q, int64_t n_k, int64_t d, int64_t qb,
                     int64_t qh, int64_t qr, int64_t kb, int64_t kh, int64_t kr, int64_t vb,
                     int64_t vh, int64_t vr, int64_t ob, int64_t oh, int64_t orow, int64_t mask_b,
                     float scale, int causal, float *O, float *LSE, int n_threads) {
    int status = 0;
    const int64_t BQ = block_rows(causal, n_q, n_k), ldk = PAD(n_k);
#pragma omp parallel num_threads(n_threads)
    {
        /* per thread: the block's scores, 1 / row sums, K^T */
        float *S = (float *)malloc(((size_t)BQ * (size_t)(ldk + 1) + (size_t)d * ldk) * sizeof(float));
        float *inv = S ? S + (size_t)BQ * (size_t)ldk : NULL;
        float *KT = S ? inv + BQ : NULL;
        if (!S) {
#pragma omp atomic write
            status = 3;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * H; ++bh) {
            if (!S) continue;
            const int64_t b = bh / H, h = bh % H;
            const float *q = Q + b * qb + h * qh, *k = K + b * kb + h * kh, *v = V + b * vb + h * vh;
            const uint8_t *mask = KEY_MASK ? KEY_MASK + b * mask_b : NULL;
            float *o = O + b * ob + h * oh, *lse = LSE + bh * n_q;
            const int64_t n_valid = key_extent(mask, n_k);
            transpose_rows(k, kr, n_valid, d, ldk, KT);
            for (int64_t r0 = 0; r0 < n_q; r0 += BQ) {
                const int64_t m = n_q - r0 < BQ ? n_q - r0 : BQ;
                const int64_t kend = causal && r0 + m < n_valid ? r0 + m : n_valid;
                const int64_t ld = PAD(kend);
                if (kend == 0) {  /* no key at all: zero rows */
                    for (int64_t i = 0; i < m; ++i) {
                        memset(o + (r0 + i) * orow, 0, (size_t)d * sizeof(float));
                        lse[r0 + i] = -INFINITY;
                    }
                    continue;
                }
                scores(q, qr, KT, ldk, r0, m, kend, d, scale, causal, mask, S);
                for (int64_t i = 0; i < m; ++i) {
                    float *s = S + i * ld;
                    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
                    for (int64_t j = 0; j < kend; ++j) mx = s[j] > mx ? s[j] : mx;
                    if (mx == -INFINITY) {  /* no key: zero row */
                        memset(s, 0, (size_t)kend * sizeof(float));
                        lse[r0 + i] = -INFINITY;
                        inv[i] = 0.0f;
                        continue;
                    }
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int64_t j = 0; j < kend; ++j) {
                        const float e = dos_expf(s[j] - mx);
                        s[j] = e;
                        sum += e;
                    }
                    inv[i] = 1.0f / sum;
                    lse[r0 + i] = mx + logf(sum);
                }
                /* O = diag(1/sum) exp(S - max) V: normalised on the (m, d) output, not on S */
                float *o_i = o + r0 * orow;
                dos_mm(m, d, kend, 1.0f, S, ld, 1, v, vr, 0.0f, o_i, orow);
                for (int64_t i = 0; i < m; ++i) {
                    float *row = o_i + i * orow;
                    const float c = inv[i];
#pragma omp simd
                    for (int64_t t = 0; t < d; ++t) row[t] *= c;
                }
            }
        }
        free(S);
    }
    return status;
}

/* Gradients of Q, K and V given dO, the forward's O and LSE. dK and dV are overwritten. */
int dos_attn_backward(const float *Q, const float *K, const float *V, const uint8_t *KEY_MASK,
                      const float *O, const float *DO, const float *LSE, int64_t B, int64_t H,
                      int64_t n_q, int64_t n_k, int64_t d, int64_t qb, int64_t qh, int64_t qr,
                      int64_t kb, int64_t kh, int64_t kr, int64_t vb, int64_t vh, int64_t vr,
                      int64_t ob, int64_t oh, int64_t orow, int64_t gb, int64_t gh, int64_t gr,
                      int64_t mask_b, float scale, int causal, float *DQ, float *DK, float *DV,
                      int64_t dqb, int64_t dqh, int64_t dqr, int64_t dkb, int64_t dkh,
                      int64_t dkr, int n_threads) {
    int status = 0;
    const int64_t BQ = block_rows(causal, n_q, n_k), ldk = PAD(n_k);
#pragma omp parallel num_threads(n_threads)
    {
        /* per thread: P and dP of the block, K^T and V^T */
        float *P = (float *)malloc(2 * ((size_t)BQ + (size_t)d) * (size_t)ldk * sizeof(float));
        float *dP = P ? P + (size_t)BQ * (size_t)ldk : NULL;
        float *KT = P ? dP + (size_t)BQ * (size_t)ldk : NULL, *VT = P ? KT + (size_t)d * ldk : NULL;
        if (!P) {
#pragma omp atomic write
            status = 3;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * H; ++bh) {
            if (!P) continue;
            const int64_t b = bh / H, h = bh % H;
            const float *q = Q + b * qb + h * qh, *k = K + b * kb + h * kh, *v = V + b * vb + h * vh;
            const float *o = O + b * ob + h * oh, *go = DO + b * gb + h * gh;
            const float *lse = LSE + bh * n_q;
            const uint8_t *mask = KEY_MASK ? KEY_MASK + b * mask_b : NULL;
            float *dq = DQ + b * dqb + h * dqh, *dk = DK + b * dkb + h * dkh;
            float *dv = DV + b * dkb + h * dkh;  /* dK and dV share one layout */
            for (int64_t j = 0; j < n_k; ++j) {
                memset(dk + j * dkr, 0, (size_t)d * sizeof(float));
                memset(dv + j * dkr, 0, (size_t)d * sizeof(float));
            }
            const int64_t n_valid = key_extent(mask, n_k);
            transpose_rows(k, kr, n_valid, d, ldk, KT);
            transpose_rows(v, vr, n_valid, d, ldk, VT);
            for (int64_t r0 = 0; r0 < n_q; r0 += BQ) {
                const int64_t m = n_q - r0 < BQ ? n_q - r0 : BQ;
                const int64_t kend = causal && r0 + m < n_valid ? r0 + m : n_valid;
                const int64_t ld = PAD(kend);
                if (kend == 0) {  /* no key: zero gradient rows */
                    for (int64_t i = 0; i < m; ++i)
                        memset(dq + (r0 + i) * dqr, 0, (size_t)d * sizeof(float));
                    continue;
                }
                scores(q, qr, KT, ldk, r0, m, kend, d, scale, causal, mask, P);
                for (int64_t i = 0; i < m; ++i) {
                    float *p = P + i * ld;
                    const float l = lse[r0 + i];
                    if (l == -INFINITY) {
                        memset(p, 0, (size_t)kend * sizeof(float));
                        continue;
                    }
#pragma omp simd
                    for (int64_t j = 0; j < kend; ++j) p[j] = dos_expf(p[j] - l);
                }
                const float *go_i = go + r0 * gr, *q_i = q + r0 * qr;
                /* dV += P^T dO_i ; dP = dO_i V^T */
                dos_mm(kend, d, m, 1.0f, P, 1, ld, go_i, gr, 1.0f, dv, dkr);
                dos_mm(m, ld, d, 1.0f, go_i, gr, 1, VT, ldk, 0.0f, dP, ld);
                for (int64_t i = 0; i < m; ++i) {
                    const float *a = go_i + i * gr, *c = o + (r0 + i) * orow;
                    float D = 0.0f;
#pragma omp simd reduction(+ : D)
                    for (int64_t t = 0; t < d; ++t) D += a[t] * c[t];
                    float *g = dP + i * ld;
                    const float *p = P + i * ld;
#pragma omp simd
                    for (int64_t j = 0; j < kend; ++j) g[j] = p[j] * (g[j] - D) * scale;
                }
                /* dQ_i = dS K ; dK += dS^T Q_i */
                dos_mm(m, d, kend, 1.0f, dP, ld, 1, k, kr, 0.0f, dq + r0 * dqr, dqr);
                dos_mm(kend, d, m, 1.0f, dP, 1, ld, q_i, qr, 1.0f, dk, dkr);
            }
        }
        free(P);
    }
    return status;
}
