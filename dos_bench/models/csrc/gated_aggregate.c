/* Edge-gated aggregation of ALIGNN's convolutions (ALIGNN-DOS eqs. 1-3), forward and backward,
 * for float32 CPU tensors; loaded by dos_bench/models/native.py, used by
 * dos_bench/models/encoders/alignn.py.
 *
 *   m_t   = C_t + b + S_src(t) + Q_dst(t)     (C = W e: the edge projection, overwritten; b its bias)
 *   out_i = sum_{t: dst(t)=i} sigmoid(m_t) * P_src(t) / (sum_{t: dst(t)=i} sigmoid(m_t) + eps)
 *
 * The edges are sorted by destination (dos_bench's crystal graphs and line graphs are), so every
 * output row is owned by one thread: one pass over the (T, d) edge rows computes m, the sigmoid,
 * the weighted sum and the normaliser together, where torch needs a dozen passes and temporaries.
 * The backward recomputes the sigmoid from m; its sums into source rows go to per-thread buffers
 * (thread 0 writes the output directly), added up at the end.
 *
 * Return codes: 0 ok, 1 destinations not sorted, 2 index out of range, 3 out of memory.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "vexp.h"

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + dos_expf(-x)); }

/* ptr[i] .. ptr[i+1]: the edges with destination i; checks the order and both index ranges. */
int dos_csr_from_sorted(const int64_t *dst, const int64_t *src, int64_t n_edges, int64_t n_dst,
                        int64_t n_src, int64_t *ptr) {
    int64_t prev = 0;
    for (int64_t t = 0; t < n_edges; ++t) {
        const int64_t i = dst[t], j = src[t];
        if (i < 0 || i >= n_dst || j < 0 || j >= n_src) return 2;
        if (i < prev) return 1;
        prev = i;
    }
    int64_t t = 0;
    for (int64_t i = 0; i <= n_dst; ++i) {
        while (t < n_edges && dst[t] < i) ++t;
        ptr[i] = t;
    }
    return 0;
}

/* STATS (2 d doubles, zeroed, may be NULL): per-channel sum and sum of squares of m, for the
 * BatchNorm of the edge update. */
int dos_gated_forward(const float *S, const float *P, const float *Q, const float *BIAS, float *M,
                      const int64_t *src, const int64_t *ptr, int64_t n_dst, int64_t d,
                      float eps, float *OUT, float *DEN, double *STATS, int n_threads) {
#pragma omp parallel num_threads(n_threads)
    {
        float *num = (float *)malloc(3 * (size_t)d * sizeof(float));
        float *den = num + d, *qb = den + d;
        double *acc = STATS ? (double *)calloc(2 * (size_t)d, sizeof(double)) : NULL;
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < n_dst; ++i) {
            memset(num, 0, 2 * (size_t)d * sizeof(float));
            const float *q = Q + i * d;
            for (int64_t k = 0; k < d; ++k) qb[k] = q[k] + BIAS[k];
            for (int64_t t = ptr[i]; t < ptr[i + 1]; ++t) {
                const int64_t j = src[t];
                const float *s = S + j * d, *p = P + j * d;
                float *m = M + t * d;
#pragma omp simd
                for (int64_t k = 0; k < d; ++k) {
                    const float v = m[k] + s[k] + qb[k];
                    m[k] = v;
                    const float g = sigmoidf_(v);
                    num[k] += g * p[k];
                    den[k] += g;
                }
            }
            float *out = OUT + i * d, *dn = DEN + i * d;
#pragma omp simd
            for (int64_t k = 0; k < d; ++k) {
                const float dd = den[k] + eps;
                dn[k] = dd;
                out[k] = num[k] / dd;
            }
            if (acc) {
                for (int64_t t = ptr[i]; t < ptr[i + 1]; ++t) {
                    const float *m = M + t * d;
#pragma omp simd
                    for (int64_t k = 0; k < d; ++k) {
                        acc[k] += m[k];
                        acc[d + k] += (double)m[k] * m[k];
                    }
                }
            }
        }
        if (acc) {
#pragma omp critical
            for (int64_t k = 0; k < 2 * d; ++k) STATS[k] += acc[k];
            free(acc);
        }
        free(num);
    }
    return 0;
}

/* The edge update e' = e + silu(m * A + B) (BatchNorm folded into A = w / std, B = b - mean A). */
int dos_bn_silu_residual(const float *E, const float *M, const float *A, const float *B,
                         int64_t n_rows, int64_t d, float *OUT, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < n_rows; ++t) {
        const float *e = E + t * d, *m = M + t * d;
        float *o = OUT + t * d;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) {
            const float y = m[k] * A[k] + B[k];
            o[k] = e[k] + y * sigmoidf_(y);
        }
    }
    return 0;
}

/* Gradient of silu(y) at y = m A + B times G: g_y = G sigma(y) (1 + y (1 - sigma(y))). */
static inline float silu_grad_(float g, float y) {
    const float sg = sigmoidf_(y);
    return g * sg * (1.0f + y * (1.0f - sg));
}

/* SUMS (2 d doubles, zeroed): per-channel sum of g_y and of g_y * xhat, xhat = (m - MEAN) INVSTD.
 * GY (n_rows, d): g_y itself, kept for dos_gated_backward (which then needs no second sigmoid per
 * element). */
int dos_bn_silu_grad_sums(const float *G, const float *M, const float *A, const float *B,
                          const float *MEAN, const float *INVSTD, int64_t n_rows, int64_t d,
                          double *SUMS, float *GY, int n_threads) {
#pragma omp parallel num_threads(n_threads)
    {
        double *acc = (double *)calloc(2 * (size_t)d, sizeof(double));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_rows; ++t) {
            const float *g = G + t * d, *m = M + t * d;
            float *gy_out = GY + t * d;
#pragma omp simd
            for (int64_t k = 0; k < d; ++k) {
                const float gy = silu_grad_(g[k], m[k] * A[k] + B[k]);
                gy_out[k] = gy;
                acc[k] += gy;
                acc[d + k] += (double)gy * ((m[k] - MEAN[k]) * INVSTD[k]);
            }
        }
#pragma omp critical
        for (int64_t k = 0; k < 2 * d; ++k) SUMS[k] += acc[k];
        free(acc);
    }
    return 0;
}

/* GS, GP: (n_src, d) zeroed; GQ: (n_dst, d); GM: (T, d) written. GIN (may be NULL): a copy of
 * G_E, written while its rows are in cache, for the caller to add the projection's gradient to
 * in place. GOUT may be NULL; so may G_E,
 * the gradient of the edge update e' = e + silu(bn(m)), whose BatchNorm gradient is added to m's:
 * then GM holds g_y on entry (dos_bn_silu_grad_sums' GY) and is overwritten row by row, and
 * BN (3 d floats) = K0, K1, A with dm = A (g_y - C1 - xhat C2) = A g_y + K0 - m K1 (C1 = mean
 * of g_y, C2 = mean of g_y xhat with batch statistics, both 0 with running statistics; the
 * caller folds them with MEAN and INVSTD into K0 = A (MEAN INVSTD C2 - C1), K1 = A INVSTD C2). */
int dos_gated_backward(const float *GOUT, const float *G_E, const float *BN, const float *M,
                       const float *P,
                       const float *OUT, const float *DEN, const int64_t *src,
                       const int64_t *ptr, int64_t n_dst, int64_t n_src, int64_t d,
                       float *GM, float *GS, float *GP, float *GQ, float *GIN, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    const size_t plane = (size_t)n_src * (size_t)d;
    float *bufs = NULL;
    if (n_threads > 1) {
        bufs = (float *)calloc((size_t)(n_threads - 1) * 2 * plane, sizeof(float));
        if (!bufs) return 3;
    }
    int used = 1;
#pragma omp parallel num_threads(n_threads)
    {
        const int tid = omp_get_thread_num();
#pragma omp single
        used = omp_get_num_threads();
        float *gs = tid == 0 ? GS : bufs + (size_t)(tid - 1) * 2 * plane;
        float *gp = tid == 0 ? GP : gs + plane;
        float *gn = (float *)malloc(3 * (size_t)d * sizeof(float));
        float *gd = gn + d, *gq = gd + d;
#pragma omp for schedule(dynamic, 8)
        for (int64_t i = 0; i < n_dst; ++i) {
            if (GOUT) {
                const float *go = GOUT + i * d, *dn = DEN + i * d, *out = OUT + i * d;
#pragma omp simd
                for (int64_t k = 0; k < d; ++k) {
                    gn[k] = go[k] / dn[k];
                    gd[k] = -gn[k] * out[k];
                }
            } else {
                memset(gn, 0, 2 * (size_t)d * sizeof(float));
            }
            memset(gq, 0, (size_t)d * sizeof(float));
            for (int64_t t = ptr[i]; t < ptr[i + 1]; ++t) {
                const int64_t j = src[t];
                const float *m = M + t * d, *p = P + j * d;
                float *gm = GM + t * d, *gsj = gs + j * d, *gpj = gp + j * d;
                /* two loops rather than a test inside one: the vectoriser keeps both straight */
                if (G_E) {
                    const float *ge = G_E + t * d;
                    if (GIN) memcpy(GIN + t * d, ge, (size_t)d * sizeof(float));
                    const float *K0 = BN, *K1 = BN + d, *A = BN + 2 * d;
#pragma omp simd
                    for (int64_t k = 0; k < d; ++k) {
                        const float sg = sigmoidf_(m[k]);
                        const float g = (gn[k] * p[k] + gd[k]) * sg * (1.0f - sg) +
                                        A[k] * gm[k] + K0[k] - m[k] * K1[k];
                        gm[k] = g;
                        gq[k] += g;
                        gsj[k] += g;
                        gpj[k] += gn[k] * sg;
                    }
                } else {
#pragma omp simd
                    for (int64_t k = 0; k < d; ++k) {
                        const float sg = sigmoidf_(m[k]);
                        const float g = (gn[k] * p[k] + gd[k]) * sg * (1.0f - sg);
                        gm[k] = g;
                        gq[k] += g;
                        gsj[k] += g;
                        gpj[k] += gn[k] * sg;
                    }
                }
            }
            memcpy(GQ + i * d, gq, (size_t)d * sizeof(float));
        }
        free(gn);
    }
    if (bufs) {
        const int extra = used - 1;
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int64_t r = 0; r < (int64_t)plane; ++r) {
            float a = GS[r], b = GP[r];
            for (int u = 0; u < extra; ++u) {
                a += bufs[(size_t)u * 2 * plane + r];
                b += bufs[(size_t)u * 2 * plane + plane + r];
            }
            GS[r] = a;
            GP[r] = b;
        }
        free(bufs);
    }
    return 0;
}
