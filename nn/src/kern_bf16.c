/*
 * NAME
 *	kern_bf16.c - BF16 weights x FP32 activations, FP32 accumulation
 *
 * DESCRIPTION
 *	For fully connected layers at small batch the time goes into streaming
 *	the weight matrix from memory; storing it as bfloat16 halves that
 *	traffic. Weights are packed once (round to nearest even), each row
 *	padded with zeros to a multiple of 32 values. At run time the inputs
 *	are rounded to bfloat16 into the workspace and every output is the dot
 *	product of two bfloat16 rows accumulated in FP32 with vdpbf16ps
 *	(pairs of products summed into 16 FP32 lanes). Four weight rows are
 *	processed together against up to four images, so a weight row is read
 *	once from memory per group of four images and then from cache.
 *
 *	The AVX-512 functions carry their own target attribute; the file is
 *	built without ISA flags and the path is chosen at run time.
 */
#include "kern_fast.h"

#include <errno.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BF16_HAVE_AVX512 1
#endif

#define BF16_MAX_DIM (1 << 26)

static size_t bf16_row(int kd)
{
	return ((size_t)kd + 31) / 32 * 32;
}

uint16_t usv__bf16_from_f32(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

float usv__bf16_to_f32(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

size_t usv__bf16_weight_elems(int m, int kd)
{
	if (m <= 0 || kd <= 0 || m > BF16_MAX_DIM || kd > BF16_MAX_DIM)
		return 0;
	return (size_t)m * bf16_row(kd);
}

int usv__bf16_pack(const float *w, int m, int kd, uint16_t *wb)
{
	if (!w || !wb || m <= 0 || kd <= 0 || m > BF16_MAX_DIM || kd > BF16_MAX_DIM)
		return -EINVAL;
	size_t ld = bf16_row(kd);
	for (int i = 0; i < m; i++) {
		const float *src = w + (size_t)i * kd;
		uint16_t *dst = wb + (size_t)i * ld;
		for (int q = 0; q < kd; q++)
			dst[q] = usv__bf16_from_f32(src[q]);
		for (size_t q = (size_t)kd; q < ld; q++)
			dst[q] = 0;
	}
	return 0;
}

size_t usv__bf16_workspace_bytes(int n, int kd)
{
	if (n <= 0 || kd <= 0 || n > BF16_MAX_DIM || kd > BF16_MAX_DIM)
		return 0;
	return (size_t)n * bf16_row(kd) * sizeof(uint16_t);
}

static int bf16_check(const usv_bf16_args *a, int m0, int m1, void *ws, size_t ws_bytes)
{
	if (!a || !a->wb || !a->x || !a->y || !ws || a->n <= 0 || a->m <= 0 || a->kd <= 0 ||
	    a->ldy < a->m || m0 < 0 || m1 > a->m || m0 > m1)
		return -EINVAL;
	if (ws_bytes < usv__bf16_workspace_bytes(a->n, a->kd))
		return -EINVAL;
	return 0;
}

static float bf16_act(float v, usv_act act)
{
	if (act == USV_ACT_RELU)
		return v > 0.0f ? v : 0.0f;
	if (act == USV_ACT_RELU6)
		return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
	return v;
}

/* Inputs rounded to bf16, rows padded with zeros (scalar). */
static void bf16_convert_x(const usv_bf16_args *a, uint16_t *xb)
{
	size_t ld = bf16_row(a->kd);
	for (int j = 0; j < a->n; j++) {
		const float *src = a->x + (size_t)j * a->kd;
		uint16_t *dst = xb + (size_t)j * ld;
		for (int q = 0; q < a->kd; q++)
			dst[q] = usv__bf16_from_f32(src[q]);
		for (size_t q = (size_t)a->kd; q < ld; q++)
			dst[q] = 0;
	}
}

static void bf16_rows_ref(const usv_bf16_args *a, int m0, int m1, const uint16_t *xb)
{
	size_t ld = bf16_row(a->kd);
	for (int j = 0; j < a->n; j++)
		for (int i = m0; i < m1; i++) {
			const uint16_t *wr = a->wb + (size_t)i * ld;
			const uint16_t *xr = xb + (size_t)j * ld;
			float acc = 0.0f;
			for (size_t q = 0; q < ld; q++)
				acc += usv__bf16_to_f32(wr[q]) * usv__bf16_to_f32(xr[q]);
			float b = a->bias ? a->bias[i] : 0.0f;
			a->y[(size_t)j * a->ldy + i] = bf16_act(acc + b, a->act);
		}
}

int usv__bf16_gemm_ref(const usv_bf16_args *a, int m0, int m1, void *ws, size_t ws_bytes)
{
	int rc = bf16_check(a, m0, m1, ws, ws_bytes);
	if (rc)
		return rc;
	bf16_convert_x(a, ws);
	bf16_rows_ref(a, m0, m1, ws);
	return 0;
}

#ifdef BF16_HAVE_AVX512
#define BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))

BF16_TARGET static void bf16_convert_x_avx512(const usv_bf16_args *a, uint16_t *xb)
{
	size_t ld = bf16_row(a->kd);
	for (int j = 0; j < a->n; j++) {
		const float *src = a->x + (size_t)j * a->kd;
		uint16_t *dst = xb + (size_t)j * ld;
		size_t q = 0;
		for (; q + 32 <= (size_t)a->kd; q += 32) {
			__m512 lo = _mm512_loadu_ps(src + q);
			__m512 hi = _mm512_loadu_ps(src + q + 16);
			__m512bh v = _mm512_cvtne2ps_pbh(hi, lo);
			_mm512_storeu_si512((void *)(dst + q), (__m512i)v);
		}
		for (; q < (size_t)a->kd; q++)
			dst[q] = usv__bf16_from_f32(src[q]);
		for (; q < ld; q++)
			dst[q] = 0;
	}
}

/* R weight rows (R <= 4) against N images (N <= 4); ld multiple of 32. */
BF16_TARGET static inline __attribute__((always_inline)) void
bf16_block(const uint16_t *w, const uint16_t *x, size_t ld, int R, int N, float *out /* [N][R] */)
{
	__m512 acc[4][4];
#pragma GCC unroll 4
	for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
		for (int n = 0; n < 4; n++)
			acc[r][n] = _mm512_setzero_ps();
	for (size_t q = 0; q < ld; q += 32) {
		__m512bh xv[4], wv[4];
#pragma GCC unroll 4
		for (int n = 0; n < N; n++)
			xv[n] = (__m512bh)_mm512_loadu_si512((const void *)(x + n * ld + q));
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			wv[r] = (__m512bh)_mm512_loadu_si512((const void *)(w + r * ld + q));
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
#pragma GCC unroll 4
			for (int n = 0; n < N; n++)
				acc[r][n] = _mm512_dpbf16_ps(acc[r][n], wv[r], xv[n]);
	}
#pragma GCC unroll 4
	for (int n = 0; n < N; n++)
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			out[n * 4 + r] = _mm512_reduce_add_ps(acc[r][n]);
}

#define BF16_CASE(RR, NN)                                                                          \
	case (RR)*8 + (NN):                                                                        \
		bf16_block(w, x, ld, RR, NN, out);                                                 \
		break

BF16_TARGET static void bf16_dispatch(const uint16_t *w, const uint16_t *x, size_t ld, int R, int N,
                                      float *out)
{
	switch (R * 8 + N) {
		BF16_CASE(4, 4);
		BF16_CASE(4, 3);
		BF16_CASE(4, 2);
		BF16_CASE(4, 1);
		BF16_CASE(1, 4);
		BF16_CASE(1, 3);
		BF16_CASE(1, 2);
		BF16_CASE(1, 1);
	default:
		break;
	}
}

BF16_TARGET static void bf16_rows_avx512(const usv_bf16_args *a, int m0, int m1, const uint16_t *xb)
{
	size_t ld = bf16_row(a->kd);
	float out[16];

	for (int i = m0; i < m1;) {
		int R = m1 - i >= 4 ? 4 : 1;
		const uint16_t *w = a->wb + (size_t)i * ld;
		for (int j = 0; j < a->n; j += 4) {
			int N = a->n - j < 4 ? a->n - j : 4;
			bf16_dispatch(w, xb + (size_t)j * ld, ld, R, N, out);
			for (int n = 0; n < N; n++)
				for (int r = 0; r < R; r++) {
					float b = a->bias ? a->bias[i + r] : 0.0f;
					a->y[(size_t)(j + n) * a->ldy + i + r] =
					    bf16_act(out[n * 4 + r] + b, a->act);
				}
		}
		i += R;
	}
}
#endif

void usv__bf16_convert(const usv_bf16_args *a, uint16_t *xb)
{
#ifdef BF16_HAVE_AVX512
	if (usv__cpu_has_bf16()) {
		bf16_convert_x_avx512(a, xb);
		return;
	}
#endif
	bf16_convert_x(a, xb);
}

void usv__bf16_gemm_converted(const usv_bf16_args *a, int m0, int m1, const uint16_t *xb)
{
#ifdef BF16_HAVE_AVX512
	if (usv__cpu_has_bf16()) {
		bf16_rows_avx512(a, m0, m1, xb);
		return;
	}
#endif
	bf16_rows_ref(a, m0, m1, xb);
}

int usv__bf16_gemm(const usv_bf16_args *a, int m0, int m1, void *ws, size_t ws_bytes)
{
	int rc = bf16_check(a, m0, m1, ws, ws_bytes);
	if (rc)
		return rc;
	usv__bf16_convert(a, ws);
	usv__bf16_gemm_converted(a, m0, m1, ws);
	return 0;
}
