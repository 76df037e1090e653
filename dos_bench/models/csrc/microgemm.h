/* dos_mm: a register-blocked float32 matrix product for the shapes of dos_bench's kernels,
 * included by gemm.c (weight gradients of dense layers) and attention.c (the attention products).
 *
 *   C (m x n) = beta C + alpha A' B,    A'(i, t) = A[i * ars + t * acs],   B row-major (ldb)
 *
 * Why not the BLAS: torch's CPU sgemm is MKL, which runs its AVX2 code on AMD processors even
 * where the core has AVX-512; and the attention products are small (64 x 300 x 64), where a
 * library call's own overhead shows. A' may be A or its transpose (acs = 1 or ars = 1), which
 * covers every product here without packing: the B side is always read as contiguous rows.
 *
 * The tile: MR = 6 rows of C by NV vectors of VW floats (AVX-512: 6 x 64; AVX2: 6 x 16), kept
 * in registers over the whole k loop: per step, NV vector loads of B's row t and MR broadcasts
 * of A' feed MR * NV fused multiply-adds (24 on AVX-512: 10 loads for 24 FMAs). The B vectors are
 * pinned in registers (an empty asm): left to itself GCC re-loads them inside every FMA, which
 * made the loop load-bound (~300 instead of ~420 GFLOP/s on two Zen 5 cores). Columns beyond the
 * last whole vector are done one by one (slow; the zoo's head and layer widths are multiples of 16).
 *
 * Written with GCC vector extensions, so the same code compiles to AVX-512, AVX2 or SSE under
 * -march=native (all three checked against float64; the ARM register pin is untested). No fast-math: sums are plain fused multiply-adds, NaN and infinity propagate.
 */
#ifndef DOS_BENCH_MICROGEMM_H
#define DOS_BENCH_MICROGEMM_H

#include <stdint.h>

#if defined(__AVX512F__)
#define DOS_VW 16
#define DOS_NV 4
#elif defined(__AVX__)
#define DOS_VW 8
#define DOS_NV 2
#else
#define DOS_VW 4
#define DOS_NV 2
#endif
#define DOS_MR 6

typedef float dos_vf __attribute__((vector_size(DOS_VW * 4), aligned(4)));
#if defined(__x86_64__) || defined(__i386__)
#define DOS_PIN(x) __asm__("" : "+v"(x))
#elif defined(__aarch64__)
#define DOS_PIN(x) __asm__("" : "+w"(x))
#else
#define DOS_PIN(x) ((void)0)
#endif
#define DOS_INLINE static inline __attribute__((always_inline))

/* One tile: C[MR x NVV*VW]; MR and NVV are compile-time constants at every call. */
DOS_INLINE void dos_tile(const int MR, const int NVV, int64_t k, float alpha, const float *A,
                         int64_t ars, int64_t acs, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
    dos_vf acc[DOS_MR][DOS_NV];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NVV; ++v) acc[i][v] = (dos_vf){0};
    for (int64_t t = 0; t < k; ++t) {
        const float *b = B + t * ldb, *a = A + t * acs;
        dos_vf bv[DOS_NV];
#pragma GCC unroll 4
        for (int v = 0; v < NVV; ++v) {
            bv[v] = *(const dos_vf *)(b + v * DOS_VW);
            DOS_PIN(bv[v]); /* keep in a register: one load per step, not per FMA */
        }
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
            const float ai = a[i * ars];
#pragma GCC unroll 4
            for (int v = 0; v < NVV; ++v) acc[i][v] += ai * bv[v];
        }
    }
    /* alpha and beta read here, not kept in registers from before the loop: 24 accumulators,
     * NVV row vectors and a broadcast leave no room for them (GCC then spilled a row vector) */
    const float al = *(volatile const float *)&alpha, be = *(volatile const float *)&beta;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NVV; ++v) {
            dos_vf *c = (dos_vf *)(C + i * ldc + v * DOS_VW);
            *c = be == 0.0f ? al * acc[i][v] : be * *c + al * acc[i][v];
        }
}

#define DOS_TILE_ROWS(R, NVV) \
    dos_tile(R, NVV, k, alpha, A + i * ars, ars, acs, B, ldb, beta, C + i * ldc, ldc)

/* All m rows of one column strip NVV vectors wide. */
DOS_INLINE void dos_strip(const int NVV, int64_t m, int64_t k, float alpha, const float *A,
                          int64_t ars, int64_t acs, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    int64_t i = 0;
    for (; i + DOS_MR <= m; i += DOS_MR) DOS_TILE_ROWS(DOS_MR, NVV);
    switch (m - i) {
        case 5: DOS_TILE_ROWS(5, NVV); break;
        case 4: DOS_TILE_ROWS(4, NVV); break;
        case 3: DOS_TILE_ROWS(3, NVV); break;
        case 2: DOS_TILE_ROWS(2, NVV); break;
        case 1: DOS_TILE_ROWS(1, NVV); break;
        default: break;
    }
}

static void dos_strip_wide(int64_t m, int64_t k, float alpha, const float *A, int64_t ars,
                           int64_t acs, const float *B, int64_t ldb, float beta, float *C,
                           int64_t ldc) {
    dos_strip(DOS_NV, m, k, alpha, A, ars, acs, B, ldb, beta, C, ldc);
}

static void dos_strip_narrow(int64_t m, int64_t k, float alpha, const float *A, int64_t ars,
                             int64_t acs, const float *B, int64_t ldb, float beta, float *C,
                             int64_t ldc) {
    dos_strip(1, m, k, alpha, A, ars, acs, B, ldb, beta, C, ldc);
}

/* Columns [j0, j1) of C, on the calling thread. */
static void dos_mm_cols(int64_t m, int64_t j0, int64_t j1, int64_t k, float alpha, const float *A,
                        int64_t ars, int64_t acs, const float *B, int64_t ldb, float beta, float *C,
                        int64_t ldc) {
    int64_t j = j0;
    for (; j + DOS_NV * DOS_VW <= j1; j += DOS_NV * DOS_VW)
        dos_strip_wide(m, k, alpha, A, ars, acs, B + j, ldb, beta, C + j, ldc);
    for (; j + DOS_VW <= j1; j += DOS_VW)
        dos_strip_narrow(m, k, alpha, A, ars, acs, B + j, ldb, beta, C + j, ldc);
    for (; j < j1; ++j) /* the last columns, one at a time */
        for (int64_t i = 0; i < m; ++i) {
            float s = 0.0f;
            for (int64_t t = 0; t < k; ++t) s += A[i * ars + t * acs] * B[t * ldb + j];
            float *c = C + i * ldc + j;
            *c = beta == 0.0f ? alpha * s : beta * *c + alpha * s;
        }
}

/* C (m x n) = beta C + alpha A' B on the calling thread (beta == 0: C is not read). */
static inline void dos_mm(int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                          int64_t ars, int64_t acs, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    if (k == 0) { /* an empty sum */
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    dos_mm_cols(m, 0, n, k, alpha, A, ars, acs, B, ldb, beta, C, ldc);
}

#endif
