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
 * Matrix products go to the BLAS sgemm_ that torch itself uses (a pointer set once by
 * dos_attn_set_gemm); inside a task each call runs on one thread.
 *
 * Tensors are addressed by element strides (batch, head, row), the last dimension contiguous, so
 * the (B, n, H, d) layout of a multi-head projection is read and written without a transpose.
 * KEY_MASK (may be NULL): B x n_k bytes, nonzero = may be attended to; keys after a row's last
 * allowed one (the padding of a batch of crystals) are not scored at all. A query with no key it
 * may attend to gets a zero output row and lse = -inf (and zero gradients).
 *
 * Return codes: 0 ok, 3 out of memory, 4 no gemm set.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "vexp.h"

typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                         const float *, const float *, const int *, const float *, const int *,
                         const float *, float *, const int *);

static sgemm_fn gemm_ = NULL;

void dos_attn_set_gemm(void *fn) { gemm_ = (sgemm_fn)fn; }

/* Query rows per block: 64 under a causal mask (finer blocks skip more of the triangle but make
 * the products too small), else as many as keep the block's scores within 128 KiB. */
static int64_t block_rows(int causal, int64_t n_q, int64_t n_k) {
    int64_t bq = causal ? 64 : 32768 / (n_k > 0 ? n_k : 1);
    if (bq < 64) bq = 64;
    return bq < n_q ? bq : (n_q > 0 ? n_q : 1);
}

/* Row-major C (m x n) = alpha op(A) op(B) + beta C through the column-major sgemm_:
 * C^T = op(B)^T op(A)^T, with a row-major matrix read as its column-major transpose. */
static void mm(char ta, char tb, int m, int n, int k, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int la = (int)lda, lb = (int)ldb, lc = (int)ldc;
    gemm_(&tb, &ta, &n, &m, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
}

typedef struct {
    int64_t b, h, r;
} strides_t;

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

/* Scores of rows r0 .. r0+m-1 against keys 0 .. kend-1 into S (ld kend), masked to -inf. */
static void scores(const float *q, const float *k, strides_t sq, strides_t sk, int64_t r0,
                   int64_t m, int64_t kend, int64_t d, float scale, int causal,
                   const uint8_t *mask, float *S) {
    mm('N', 'T', (int)m, (int)kend, (int)d, scale, q + r0 * sq.r, sq.r, k, sk.r, 0.0f, S, kend);
    for (int64_t i = 0; i < m; ++i) {
        float *s = S + i * kend;
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
    if (!gemm_) return 4;
    int status = 0;
    const strides_t sq = {qb, qh, qr}, sk = {kb, kh, kr};
    const int64_t BQ = block_rows(causal, n_q, n_k);
#pragma omp parallel num_threads(n_threads)
    {
        float *S = (float *)malloc((size_t)BQ * ((size_t)n_k + 1) * sizeof(float));
        float *inv = S ? S + (size_t)BQ * (size_t)n_k : NULL;
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
            for (int64_t r0 = 0; r0 < n_q; r0 += BQ) {
                const int64_t m = n_q - r0 < BQ ? n_q - r0 : BQ;
                const int64_t kend = causal && r0 + m < n_valid ? r0 + m : n_valid;
                if (kend == 0) {  /* no key at all: zero rows */
                    for (int64_t i = 0; i < m; ++i) {
                        memset(o + (r0 + i) * orow, 0, (size_t)d * sizeof(float));
                        lse[r0 + i] = -INFINITY;
                    }
                    continue;
                }
                scores(q, k, sq, sk, r0, m, kend, d, scale, causal, mask, S);
                for (int64_t i = 0; i < m; ++i) {
                    float *s = S + i * kend;
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
                mm('N', 'N', (int)m, (int)d, (int)kend, 1.0f, S, kend, v, vr, 0.0f, o_i, orow);
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
    if (!gemm_) return 4;
    int status = 0;
    const strides_t sq = {qb, qh, qr}, sk = {kb, kh, kr};
    const int64_t BQ = block_rows(causal, n_q, n_k);
#pragma omp parallel num_threads(n_threads)
    {
        float *P = (float *)malloc(2 * (size_t)BQ * (size_t)n_k * sizeof(float));
        float *dP = P ? P + (size_t)BQ * (size_t)n_k : NULL;
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
            for (int64_t r0 = 0; r0 < n_q; r0 += BQ) {
                const int64_t m = n_q - r0 < BQ ? n_q - r0 : BQ;
                const int64_t kend = causal && r0 + m < n_valid ? r0 + m : n_valid;
                if (kend == 0) {  /* no key: zero gradient rows */
                    for (int64_t i = 0; i < m; ++i)
                        memset(dq + (r0 + i) * dqr, 0, (size_t)d * sizeof(float));
                    continue;
                }
                scores(q, k, sq, sk, r0, m, kend, d, scale, causal, mask, P);
                for (int64_t i = 0; i < m; ++i) {
                    float *p = P + i * kend;
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
                mm('T', 'N', (int)kend, (int)d, (int)m, 1.0f, P, kend, go_i, gr, 1.0f, dv, dkr);
                mm('N', 'T', (int)m, (int)kend, (int)d, 1.0f, go_i, gr, v, vr, 0.0f, dP, kend);
                for (int64_t i = 0; i < m; ++i) {
                    const float *a = go_i + i * gr, *c = o + (r0 + i) * orow;
                    float D = 0.0f;
#pragma omp simd reduction(+ : D)
                    for (int64_t t = 0; t < d; ++t) D += a[t] * c[t];
                    float *g = dP + i * kend;
                    const float *p = P + i * kend;
#pragma omp simd
                    for (int64_t j = 0; j < kend; ++j) g[j] = p[j] * (g[j] - D) * scale;
                }
                /* dQ_i = dS K ; dK += dS^T Q_i */
                mm('N', 'N', (int)m, (int)d, (int)kend, 1.0f, dP, kend, k, kr, 0.0f,
                   dq + r0 * dqr, dqr);
                mm('T', 'N', (int)kend, (int)d, (int)m, 1.0f, dP, kend, q_i, qr, 1.0f, dk, dkr);
            }
        }
        free(P);
    }
    return status;
}
