/*
 * NAME
 *	kern_bgemm.c - packed BF16 GEMM with FP32 accumulation
 *
 * DESCRIPTION
 *	C[m, n] = act(A[m, k] . B[k, n] + bias) with A and B rounded to
 *	bfloat16 (round to nearest even) and every product summed in FP32.
 *	On CPUs with AVX512_BF16 one vdpbf16ps multiplies 16 pairs of values
 *	and adds both products of each pair to one FP32 lane, so the operands
 *	are stored in pairs along k: a 32-bit slot holds elements k = 2q (low
 *	half) and 2q + 1 (high half).
 *
 *	Packed layouts (uint32 slots, k2 = ceil(k / 2), zeros past m, n, k):
 *	    A: [ceil(m / 12)][k2][12]  - 12 rows per block, read as broadcasts
 *	    B: [ceil(n / 32)][k2][32]  - 32 columns per panel, read as vectors
 *	The micro-kernel keeps a 12 x 32 tile of C in 24 registers. Loops:
 *	chunks of 16 row blocks (192 rows of A stay in L2/L3 while all of B
 *	passes), column panels, slices of 256 pairs of k (a slice of a B panel
 *	is 32 KiB, L1-sized, reused by every row block of the chunk), row
 *	blocks.
 *	Slices after the first add to C; bias and activation are applied after
 *	the last. A caller splits the work by row blocks and column panels
 *	(usv__bgemm() computes one rectangle of them), so threads need no
 *	synchronisation.
 *
 *	Without AVX512_BF16 the same packed operands go through a scalar loop
 *	(same rounding of the operands, FP32 sums in another order).
 */
#include "bf16.h"
#include "kern_fast.h"

#include <errno.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BGEMM_HAVE_AVX512 1
#endif

#define MR USV_BGEMM_MR
#define NR USV_BGEMM_NR
#define BGEMM_KC2 256 /* pairs of k per slice */
#define BGEMM_MC 16   /* row blocks that share a pass over B */
#define BGEMM_MAX_DIM (1 << 24)

static size_t k2_of(int k)
{
	return ((size_t)k + 1) / 2;
}

size_t usv__bgemm_a_elems(int m, int k)
{
	if (m <= 0 || k <= 0 || m > BGEMM_MAX_DIM || k > BGEMM_MAX_DIM)
		return 0;
	return ((size_t)m + MR - 1) / MR * MR * k2_of(k) * 2;
}

size_t usv__bgemm_b_elems(int k, int n)
{
	if (n <= 0 || k <= 0 || n > BGEMM_MAX_DIM || k > BGEMM_MAX_DIM)
		return 0;
	return ((size_t)n + NR - 1) / NR * NR * k2_of(k) * 2;
}

int usv__bgemm_pack_a(const float *a, long lda, int trans, int m, int k, uint16_t *ap)
{
	if (!a || !ap || !usv__bgemm_a_elems(m, k) || lda < (trans ? m : k))
		return -EINVAL;
	const size_t k2 = k2_of(k), mb = ((size_t)m + MR - 1) / MR;
	for (size_t b = 0; b < mb; b++)
		for (size_t q = 0; q < k2; q++)
			for (int r = 0; r < MR; r++) {
				size_t i = b * MR + (size_t)r;
				uint16_t *dst = ap + ((b * k2 + q) * MR + (size_t)r) * 2;
				for (int h = 0; h < 2; h++) {
					size_t kk = 2 * q + (size_t)h;
					float v = 0.0f;
					if (i < (size_t)m && kk < (size_t)k)
						v = trans ? a[kk * (size_t)lda + i]
						          : a[i * (size_t)lda + kk];
					dst[h] = usv__bf16_round(v);
				}
			}
	return 0;
}

/* Pair q of rows r0 (k = 2q) and r1 (k = 2q + 1; NULL = zeros), n values
 * each, into the B panels: scalar. */
static void pack_pair_ref(const float *r0, const float *r1, int n, size_t k2, size_t q,
                          uint16_t *bp)
{
	const size_t np = ((size_t)n + NR - 1) / NR;
	for (size_t p = 0; p < np; p++) {
		uint16_t *dst = bp + ((p * k2 + q) * NR) * 2;
		for (int c = 0; c < NR; c++) {
			size_t j = p * NR + (size_t)c;
			dst[2 * c] = j < (size_t)n ? usv__bf16_round(r0[j]) : 0;
			dst[2 * c + 1] = j < (size_t)n && r1 ? usv__bf16_round(r1[j]) : 0;
		}
	}
}

#ifdef BGEMM_HAVE_AVX512
#define BGEMM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

/* 16 values of each row -> 16 slots (low half from r0). */
BGEMM_TARGET static inline __attribute__((always_inline)) __m512i pair16(__m512 lo, __m512 hi)
{
	/* cvtne2ps_pbh(hi, lo): bf16 of lo in elements 0..15, of hi in 16..31 */
	__m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
	const __m512i idx =
	    _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
	                     22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
	return _mm512_permutexvar_epi16(idx, both);
}

BGEMM_TARGET static void pack_pair_avx512(const float *r0, const float *r1, int n, size_t k2,
                                          size_t q, uint16_t *bp)
{
	const size_t np = ((size_t)n + NR - 1) / NR;
	for (size_t p = 0; p < np; p++) {
		uint16_t *dst = bp + ((p * k2 + q) * NR) * 2;
		for (int h = 0; h < NR; h += 16) {
			size_t j = p * NR + (size_t)h;
			int left = (size_t)n > j ? n - (int)j : 0;
			__mmask16 mk = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
			__m512 lo = _mm512_maskz_loadu_ps(mk, r0 + j);
			__m512 hi = r1 ? _mm512_maskz_loadu_ps(mk, r1 + j) : _mm512_setzero_ps();
			_mm512_storeu_si512((void *)(dst + 2 * h), pair16(lo, hi));
		}
	}
}
#endif

void usv__bgemm_pack_b_pair(const float *r0, const float *r1, int n, int k, int q, uint16_t *bp)
{
#ifdef BGEMM_HAVE_AVX512
	if (usv__cpu_has_bf16()) {
		pack_pair_avx512(r0, r1, n, k2_of(k), (size_t)q, bp);
		return;
	}
#endif
	pack_pair_ref(r0, r1, n, k2_of(k), (size_t)q, bp);
}

int usv__bgemm_pack_b(const float *b, long ldb, int trans, int k, int n, uint16_t *bp)
{
	if (!b || !bp || !usv__bgemm_b_elems(k, n) || ldb < (trans ? k : n))
		return -EINVAL;
	const size_t k2 = k2_of(k);
	if (!trans) {
		for (size_t q = 0; q < k2; q++) {
			const float *r0 = b + 2 * q * (size_t)ldb;
			const float *r1 = 2 * q + 1 < (size_t)k ? r0 + ldb : NULL;
			usv__bgemm_pack_b_pair(r0, r1, n, k, (int)q, bp);
		}
		return 0;
	}
	/* B given as [n][k]: element (kk, j) at b[j * ldb + kk] */
	const size_t np = ((size_t)n + NR - 1) / NR;
	for (size_t p = 0; p < np; p++)
		for (int c = 0; c < NR; c++) {
			size_t j = p * NR + (size_t)c;
			const float *col = b + j * (size_t)ldb;
			for (size_t q = 0; q < k2; q++) {
				uint16_t *dst = bp + ((p * k2 + q) * NR + (size_t)c) * 2;
				size_t kk = 2 * q;
				int in = j < (size_t)n;
				dst[0] = in ? usv__bf16_round(col[kk]) : 0;
				dst[1] =
				    in && kk + 1 < (size_t)k ? usv__bf16_round(col[kk + 1]) : 0;
			}
		}
	return 0;
}

static float bg_act(float v, usv_act act)
{
	if (act == USV_ACT_RELU)
		return v > 0.0f ? v : 0.0f;
	if (act == USV_ACT_RELU6)
		return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
	return v;
}

static int bgemm_check(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1)
{
	if (!g || !g->ap || !g->bp || !g->c || g->m <= 0 || g->n <= 0 || g->k <= 0 ||
	    g->m > BGEMM_MAX_DIM || g->n > BGEMM_MAX_DIM || g->k > BGEMM_MAX_DIM || g->ldc < g->n)
		return -EINVAL;
	int mbt = (g->m + MR - 1) / MR, nbt = (g->n + NR - 1) / NR;
	if (mb0 < 0 || nb0 < 0 || mb1 > mbt || nb1 > nbt || mb0 > mb1 || nb0 > nb1)
		return -EINVAL;
	return 0;
}

static void bgemm_ref(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1)
{
	const size_t k2 = k2_of(g->k);
	const uint32_t *A = (const uint32_t *)(const void *)g->ap;
	const uint32_t *B = (const uint32_t *)(const void *)g->bp;
	for (int mb = mb0; mb < mb1; mb++)
		for (int r = 0; r < MR; r++) {
			int i = mb * MR + r;
			if (i >= g->m)
				break;
			for (int nb = nb0; nb < nb1; nb++)
				for (int cc = 0; cc < NR; cc++) {
					int j = nb * NR + cc;
					if (j >= g->n)
						break;
					float acc = 0.0f;
					for (size_t q = 0; q < k2; q++) {
						uint32_t a = A[((size_t)mb * k2 + q) * MR + r];
						uint32_t b = B[((size_t)nb * k2 + q) * NR + cc];
						acc += usv__bf16_to_f32((uint16_t)a) *
						           usv__bf16_to_f32((uint16_t)b) +
						       usv__bf16_to_f32((uint16_t)(a >> 16)) *
						           usv__bf16_to_f32((uint16_t)(b >> 16));
					}
					float *cp = g->c + (size_t)i * g->ldc + j;
					if (g->accumulate)
						acc += *cp;
					if (g->bias)
						acc += g->bias_per_col ? g->bias[j] : g->bias[i];
					*cp = bg_act(acc, g->act);
				}
		}
}

#ifdef BGEMM_HAVE_AVX512
/* One 12 x 32 tile over pairs [0, kq) of the packed slices ap, bp. first:
 * C is not read (unless g->accumulate); last: bias and activation. */
BGEMM_TARGET static inline __attribute__((always_inline)) void
bgemm_micro(const usv_bgemm_args *g, const uint32_t *ap, const uint32_t *bp, size_t kq, int i0,
            int rows, int j0, int cols, int first, int last, const int R)
{
	__m512 acc[MR][2];
#pragma GCC unroll 12
	for (int r = 0; r < R; r++) {
		acc[r][0] = _mm512_setzero_ps();
		acc[r][1] = _mm512_setzero_ps();
	}
	size_t q = 0;
	if (R <= 2) {
		/* few rows: four more chains of accumulation so the loop runs at
		 * load speed instead of waiting on the latency of vdpbf16ps */
		__m512 e[2][4];
		for (int r = 0; r < R; r++)
			for (int h = 0; h < 4; h++)
				e[r][h] = _mm512_setzero_ps();
		for (; q + 2 <= kq; q += 2) {
			__m512bh y0 = (__m512bh)_mm512_loadu_si512((const void *)bp);
			__m512bh y1 = (__m512bh)_mm512_loadu_si512((const void *)(bp + 16));
			__m512bh y2 = (__m512bh)_mm512_loadu_si512((const void *)(bp + 32));
			__m512bh y3 = (__m512bh)_mm512_loadu_si512((const void *)(bp + 48));
			for (int r = 0; r < R; r++) {
				__m512bh w0 = (__m512bh)_mm512_set1_epi32((int)ap[r]);
				__m512bh w1 = (__m512bh)_mm512_set1_epi32((int)ap[MR + r]);
				e[r][0] = _mm512_dpbf16_ps(e[r][0], w0, y0);
				e[r][1] = _mm512_dpbf16_ps(e[r][1], w0, y1);
				e[r][2] = _mm512_dpbf16_ps(e[r][2], w1, y2);
				e[r][3] = _mm512_dpbf16_ps(e[r][3], w1, y3);
			}
			ap += 2 * MR;
			bp += 2 * NR;
		}
		for (int r = 0; r < R; r++) {
			acc[r][0] = _mm512_add_ps(e[r][0], e[r][2]);
			acc[r][1] = _mm512_add_ps(e[r][1], e[r][3]);
		}
	}
	for (; q < kq; q++) {
		__m512bh x0 = (__m512bh)_mm512_loadu_si512((const void *)bp);
		__m512bh x1 = (__m512bh)_mm512_loadu_si512((const void *)(bp + 16));
#pragma GCC unroll 12
		for (int r = 0; r < R; r++) {
			__m512bh w = (__m512bh)_mm512_set1_epi32((int)ap[r]);
			acc[r][0] = _mm512_dpbf16_ps(acc[r][0], w, x0);
			acc[r][1] = _mm512_dpbf16_ps(acc[r][1], w, x1);
		}
		ap += MR;
		bp += NR;
	}
	const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
	const __mmask16 m1 = cols >= 32  ? 0xffff
	                     : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1)
	                                 : 0;
	const int add = !first || g->accumulate;
	__m512 bc0 = _mm512_setzero_ps(), bc1 = _mm512_setzero_ps();
	if (last && g->bias && g->bias_per_col) {
		bc0 = _mm512_maskz_loadu_ps(m0, g->bias + j0);
		bc1 = _mm512_maskz_loadu_ps(m1, g->bias + j0 + 16);
	}
	const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
#pragma GCC unroll 12
	for (int r = 0; r < R; r++) {
		if (r >= rows)
			break;
		float *cp = g->c + (size_t)(i0 + r) * g->ldc + j0;
		__m512 v0 = acc[r][0], v1 = acc[r][1];
		if (add) {
			v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cp));
			v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cp + 16));
		}
		if (last) {
			if (g->bias && g->bias_per_col) {
				v0 = _mm512_add_ps(v0, bc0);
				v1 = _mm512_add_ps(v1, bc1);
			} else if (g->bias) {
				__m512 b = _mm512_set1_ps(g->bias[i0 + r]);
				v0 = _mm512_add_ps(v0, b);
				v1 = _mm512_add_ps(v1, b);
			}
			if (g->act == USV_ACT_RELU || g->act == USV_ACT_RELU6) {
				v0 = _mm512_max_ps(v0, zero);
				v1 = _mm512_max_ps(v1, zero);
			}
			if (g->act == USV_ACT_RELU6) {
				v0 = _mm512_min_ps(v0, six);
				v1 = _mm512_min_ps(v1, six);
			}
		}
		_mm512_mask_storeu_ps(cp, m0, v0);
		_mm512_mask_storeu_ps(cp + 16, m1, v1);
	}
}

/* The tile with R = the rows that exist rounded up to 1, 2, 4, 8 or 12 (a
 * batch of 1 image costs 1/12 of a full tile, so streaming weights at
 * small batch stays memory-bound, not compute-bound). */
BGEMM_TARGET static void bgemm_tile(const usv_bgemm_args *g, const uint32_t *ap, const uint32_t *bp,
                                    size_t kq, int i0, int rows, int j0, int cols, int first,
                                    int last)
{
	if (rows > 8)
		bgemm_micro(g, ap, bp, kq, i0, rows, j0, cols, first, last, 12);
	else if (rows > 4)
		bgemm_micro(g, ap, bp, kq, i0, rows, j0, cols, first, last, 8);
	else if (rows > 2)
		bgemm_micro(g, ap, bp, kq, i0, rows, j0, cols, first, last, 4);
	else if (rows > 1)
		bgemm_micro(g, ap, bp, kq, i0, rows, j0, cols, first, last, 2);
	else
		bgemm_micro(g, ap, bp, kq, i0, rows, j0, cols, first, last, 1);
}

BGEMM_TARGET static void bgemm_avx512(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1)
{
	const size_t k2 = k2_of(g->k);
	const uint32_t *A = (const uint32_t *)(const void *)g->ap;
	const uint32_t *B = (const uint32_t *)(const void *)g->bp;
	for (int mc = mb0; mc < mb1; mc += BGEMM_MC) {
		int mce = mc + BGEMM_MC < mb1 ? mc + BGEMM_MC : mb1;
		for (int nb = nb0; nb < nb1; nb++) {
			int j0 = nb * NR, cols = g->n - j0 < NR ? g->n - j0 : NR;
			for (size_t q0 = 0; q0 < k2; q0 += BGEMM_KC2) {
				size_t kq = k2 - q0 < BGEMM_KC2 ? k2 - q0 : BGEMM_KC2;
				int first = q0 == 0, last = q0 + kq == k2;
				const uint32_t *bp = B + ((size_t)nb * k2 + q0) * NR;
				for (int mb = mc; mb < mce; mb++) {
					int i0 = mb * MR, rows = g->m - i0 < MR ? g->m - i0 : MR;
					const uint32_t *ap = A + ((size_t)mb * k2 + q0) * MR;
					bgemm_tile(g, ap, bp, kq, i0, rows, j0, cols, first, last);
				}
			}
		}
	}
}
#endif

int usv__bgemm(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1)
{
	int rc = bgemm_check(g, mb0, mb1, nb0, nb1);
	if (rc)
		return rc;
#ifdef BGEMM_HAVE_AVX512
	if (usv__cpu_has_bf16()) {
		bgemm_avx512(g, mb0, mb1, nb0, nb1);
		return 0;
	}
#endif
	bgemm_ref(g, mb0, mb1, nb0, nb1);
	return 0;
}

int usv__bgemm_ref(const usv_bgemm_args *g, int mb0, int mb1, int nb0, int nb1)
{
	int rc = bgemm_check(g, mb0, mb1, nb0, nb1);
	if (rc)
		return rc;
	bgemm_ref(g, mb0, mb1, nb0, nb1);
	return 0;
}
