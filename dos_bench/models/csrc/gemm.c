/* Weight gradients of dense layers, dW = dY^T X, for float32 CPU tensors; loaded by
 * dos_bench/models/native.py, used by dos_bench/models/gemm.py (``matmul_tn``).
 *
 * dY is (rows x m), X is (rows x n), both with contiguous rows; the product sums over the rows,
 * the long dimension (a batch's atoms or grid points, 10^4-10^5), which no BLAS or oneDNN call
 * takes without first transposing both operands. Here the micro-kernel of microgemm.h reads dY
 * transposed in place (broadcasts) and X as rows. The columns of dW are split into strips of
 * one tile's width, dealt out to the threads (no two threads write the same element); the rows
 * are taken KC at a time, and each thread first copies its strip of those KC rows of X into a
 * contiguous buffer (32 KiB: it stays in L1 while all m rows of dW are swept). Read in place,
 * the strip's rows are a power-of-two stride apart (2 or 8 KiB) and fall into a few cache sets:
 * 398-437 GFLOP/s; copied, 463-482 (Xtal2DoS's 19,200-row products, two Zen 5 cores; oneDNN on
 * transposed 1,024-row blocks: 315-386, MKL ~210).
 *
 * SUMS (may be NULL): also the column sums of dY (the bias gradient, m values), added up block by
 * block while the block is in cache instead of in a separate pass over dY.
 *
 * Return codes: 0 ok, 3 out of memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "microgemm.h"

enum { KC = 128, STRIP = DOS_NV * DOS_VW };

/* SUMS[i0 .. i1) (+)= the sums of those columns of A over rows k0 .. k0+kk-1 (i1 - i0 <= 64:
 * four independent vector sums per row, not one dependent chain). */
static void column_sums(const float *A, int64_t lda, int64_t k0, int64_t kk, int64_t i0, int64_t i1,
                        float *SUMS) {
    float acc[64] = {0};
    const int64_t w = i1 - i0;
    for (int64_t t = 0; t < kk; ++t) {
        const float *a = A + (k0 + t) * lda + i0;
        if (w == 64)
#pragma omp simd
            for (int i = 0; i < 64; ++i) acc[i] += a[i];
        else
            for (int64_t i = 0; i < w; ++i) acc[i] += a[i];
    }
    for (int64_t i = 0; i < w; ++i) SUMS[i0 + i] = (k0 ? SUMS[i0 + i] : 0.0f) + acc[i];
}

/* C (m x n, ldc) = A^T B with A (k x m, lda) and B (k x n, ldb); SUMS (m, or NULL) = the
 * column sums of A. */
int dos_gemm_tn(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                int64_t ldb, float *C, int64_t ldc, float *SUMS, int n_threads) {
    const int64_t strips = (n + STRIP - 1) / STRIP, chunks = (m + 63) / 64;
    int status = 0;
    if (k == 0) {
        dos_mm(m, n, 0, 1.0f, A, 1, lda, B, ldb, 0.0f, C, ldc);
        for (int64_t i = 0; SUMS && i < m; ++i) SUMS[i] = 0.0f;
        return 0;
    }
#pragma omp parallel num_threads(n_threads)
    {
        /* 64-byte aligned: every vector load of the strip stays within one cache line */
        float *buf = (float *)aligned_alloc(64, (size_t)KC * STRIP * sizeof(float));
        if (!buf) {
#pragma omp atomic write
            status = 3;
        }
        for (int64_t k0 = 0; k0 < k && buf; k0 += KC) {
            const int64_t kk = k - k0 < KC ? k - k0 : KC;
            const float beta = k0 ? 1.0f : 0.0f;
            /* the same strips (and column chunks) go to the same thread in every block (static
             * schedule), so a thread only ever adds to the elements it wrote itself: no barrier */
            if (SUMS) {
#pragma omp for schedule(static) nowait
                for (int64_t c = 0; c < chunks; ++c)
                    column_sums(A, lda, k0, kk, c * 64, c * 64 + 64 < m ? c * 64 + 64 : m, SUMS);
            }
#pragma omp for schedule(static) nowait
            for (int64_t s = 0; s < strips; ++s) {
                const int64_t j0 = s * STRIP, w = n - j0 < STRIP ? n - j0 : STRIP;
                for (int64_t t = 0; t < kk; ++t)
                    memcpy(buf + t * STRIP, B + (k0 + t) * ldb + j0, (size_t)w * sizeof(float));
                dos_mm_cols(m, 0, w, kk, 1.0f, A + k0 * lda, 1, lda, buf, STRIP, beta, C + j0, ldc);
            }
        }
        free(buf);
    }
    return status;
}
