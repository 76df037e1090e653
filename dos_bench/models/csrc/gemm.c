/* Weight gradients of dense layers, dW = dY^T X, for float32 CPU tensors; loaded by
 * dos_bench/models/native.py, used by dos_bench/models/gemm.py (``matmul_tn``).
 *
 * dY is (rows x m), X is (rows x n), both with contiguous rows; the product sums over the rows,
 * the long dimension (a batch's atoms or grid points, 10^4-10^5), which no BLAS or oneDNN call
 * takes without first transposing both operands. Here the micro-kernel of microgemm.h reads dY
 * transposed in place (broadcasts) and X as rows, in blocks that stay in cache: KC rows at a
 * time (the X strip of KC x 64 floats stays in L1/L2 while MC rows of dW are swept), the columns
 * of dW split between the threads (no two threads write the same element).
 * On two Zen 5 cores: 416-455 GFLOP/s for Xtal2DoS's 19,200-row products against 315-386 for
 * oneDNN on transposed 1,024-row blocks and ~210 for MKL (scripts/bench.py, section models).
 *
 * Return code: 0.
 */
#include <stdint.h>
#include <omp.h>

#include "microgemm.h"

enum { KC = 256, MC = 384 };

/* C (m x n, ldc) = A^T B with A (k x m, lda) and B (k x n, ldb). */
int dos_gemm_tn(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B,
                int64_t ldb, float *C, int64_t ldc, int n_threads) {
    const int64_t W = DOS_NV * DOS_VW, strips = (n + W - 1) / W;
    if (k == 0) {
        dos_mm(m, n, 0, 1.0f, A, 1, lda, B, ldb, 0.0f, C, ldc);
        return 0;
    }
#pragma omp parallel num_threads(n_threads)
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
        const int64_t kk = k - k0 < KC ? k - k0 : KC;
        const float beta = k0 ? 1.0f : 0.0f;
        for (int64_t m0 = 0; m0 < m; m0 += MC) {
            const int64_t mm = m - m0 < MC ? m - m0 : MC;
            /* the same strips go to the same thread in every block (static schedule), so a
             * thread only ever adds to the elements it wrote itself: no barrier needed */
#pragma omp for schedule(static) nowait
            for (int64_t s = 0; s < strips; ++s) {
                const int64_t j0 = s * W, j1 = j0 + W < n ? j0 + W : n;
                dos_mm_cols(mm, j0, j1, kk, 1.0f, A + k0 * lda + m0, 1, lda, B + k0 * ldb, ldb,
                            beta, C + m0 * ldc, ldc);
            }
        }
    }
    return 0;
}
