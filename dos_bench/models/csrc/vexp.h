/* dos_expf: exp(x) for float32 written so that the compiler inlines it into `omp simd` loops.
 *
 * glibc's vector expf (libmvec) is a function call: inside a loop that keeps many vectors live
 * (the edge-gated backward keeps about a dozen) every call spills and reloads them, and that,
 * not memory, was what bounded the ALIGNN kernels. This version is plain arithmetic:
 * x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 split in two parts so that
 * n ln2 is exact to float precision), exp(r) from Cephes' degree-7 minimax polynomial
 * coefficients for expf, and 2^n built in the exponent bits.
 *
 * Accuracy: relative error below 1e-7 (under one float32 ulp, measured on 2e7 points of
 * [-87, 88]; glibc's libmvec: 2.2e-7). Range: exp(x) is 0 for x < -87 (where the true value,
 * below 1.65e-38, would be a subnormal float and slow every later operation on it) and +inf for
 * x > 88; exp(-inf) = 0, exp(+inf) = +inf, and NaN gives NaN (every comparison below is false
 * for NaN), so a non-finite loss still propagates as it does in torch.
 */
#ifndef DOS_BENCH_VEXP_H
#define DOS_BENCH_VEXP_H

#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float dos_expf(float x) {
    float xc = x > 88.0f ? 88.0f : x;
    xc = xc < -87.0f ? -87.0f : xc;
    const float n = rintf(xc * 1.44269504088896341f);
    float r = xc - n * 0.693359375f; /* ln2 = 0.693359375 - 2.12194440e-4 */
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < -87.0f ? 0.0f : y;
    y = x > 88.0f ? INFINITY : y;
    return y;
}

#endif
