/*
 * NAME
 *	kern_winograd.c - Winograd F(4x4, 3x3) and F(6x6, 3x3) convolution
 *
 * DESCRIPTION
 *	Each output tile of m x m pixels needs an (m + 2) x (m + 2) input
 *	tile d. One output tile is Y = A^T [U . V] A, where U = G g G^T
 *	(weights, precomputed) and V = B^T d B. Summed over input channels,
 *	the nx = (m + 2)^2 element-wise products become nx independent GEMMs
 *	M[xi] (k x tiles) = U[xi] (k x c) . V[xi] (c x tiles). m = 4 uses the
 *	F(4x4, 3x3) matrices of Lavin and Gray (points 0, +-1, +-2, infinity):
 *	36 instead of 144 multiplies per tile and channel pair. m = 6 adds
 *	the points +-1/2: 64 instead of 324, 1.27 times fewer per output again,
 *	with larger transform constants (about 3 times the rounding error).
 *	The transforms cost O(c + k) per tile.
 *
 *	Tiles of all images are numbered in one sequence and processed in
 *	chunks so that V and M of a chunk stay near the last-level cache
 *	(USV_WINO_CHUNK_FLOATS). The transforms work on 16 tiles at a time as
 *	GCC vector-extension values; an AVX-512 build of the same code is
 *	chosen at run time when the CPU has it.
 *
 *	The GEMMs are not sgemm calls: their shapes (k x c times c x a few
 *	hundred tiles, nx times per layer) are where BLAS libraries lose most
 *	of their speed, so this file has its own register-blocked kernel
 *	(12 output channels x 32 tiles of accumulators, FMA with broadcast
 *	weights). Weights are stored in the order that kernel reads them.
 *
 *	Layouts (nx = 36 matrices for F(4x4, 3x3), 64 for F(6x6, 3x3)):
 *	u [kb][nx][c][12] with kb = ceil(k / 12) (rows past k are zero; in
 *	the order the GEMM reads it, so one chunk streams it front to back);
 *	workspace V [nx][ldt / 32][c][32] then kb slots of M, each
 *	[nx][12][ldt], ldt = chunk rounded up to 32. A thread computes the
 *	nx products of one block of 12 output channels into its slot and
 *	transforms them to output at once, while they are still in cache.
 *
 *	Threads: with threads > 1 the work of each chunk is split into
 *	`threads` shares: the input transform by input channel, then the GEMMs
 *	and the output transform by blocks of 12 output channels, with a
 *	barrier after each phase. The shares run on the caller's fork-join
 *	runner (par_run, e.g. the session's pool) when given, else on helper
 *	threads started for the call (if one cannot be started the others do
 *	its share).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kern_fast.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* Floats of V + M per chunk: 256 Ki floats (1 MiB, the size of L2 here) was
 * fastest on VGG16 shapes (measured 128 Ki .. 4 Mi); at least 64 tiles so the
 * transformed weights are streamed rarely. */
#define USV_WINO_CHUNK_FLOATS (256L << 10)
#define WINO_MIN_CHUNK 64L
#define WINO_MIN_CHUNK_TEST 16L
#define WINO_MAX_DIM (1 << 20)
#define WINO_KR 12 /* output channels per GEMM block */
#define WINO_TP 32 /* tiles per V panel */
#define WINO_MAX_THREADS 64
/* Floats added to the distance between the nx matrices of V and of M, so the
 * nx streams a transform touches do not fall into the same L1 set (their
 * natural distance is often a multiple of 4 KiB). */
#define WINO_SKEW 16
/* Input channels ahead whose rows the input transform prefetches: the rows
 * of a channel plane are far apart, and hardware prefetchers do not follow
 * that pattern (measured: 40 % of the input transform waited for them). */
#ifndef WINO_PF
#define WINO_PF 4
#endif

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t v16i __attribute__((vector_size(64), aligned(4)));

/* Two-vector shuffle with a run-time mask (elements 0-15 from a, 16-31 from
 * b): gcc's __builtin_shuffle; clang (the libFuzzer build, bench/fuzz.sh)
 * has no such builtin and gets the element loop. */
#if defined(__clang__)
#define wino_shuffle(a, b, m)                                                                      \
	__extension__({                                                                            \
		v16 wa_ = (a), wb_ = (b), wr_;                                                     \
		v16i wm_ = (m);                                                                    \
		for (int wi_ = 0; wi_ < 16; wi_++) {                                               \
			int wk_ = wm_[wi_] & 31;                                                   \
			wr_[wi_] = wk_ < 16 ? wa_[wk_] : wb_[wk_ - 16];                            \
		}                                                                                  \
		wr_;                                                                               \
	})
#else
#define wino_shuffle(a, b, m) __builtin_shuffle(a, b, m)
#endif

int usv__wino_applicable(int kernel_h, int kernel_w, int stride_h, int stride_w, int group)
{
	return kernel_h == 3 && kernel_w == 3 && stride_h == 1 && stride_w == 1 && group >= 1;
}

/* Matrices per tile: (m + 2)^2, 0 for a tile size that is not offered. */
static int wino_nx(int m)
{
	return m == 4 ? 36 : m == 6 ? 64 : 0;
}

size_t usv__wino_weight_floats(int m, int k, int c)
{
	if (k <= 0 || c <= 0 || !wino_nx(m))
		return 0;
	return (size_t)wino_nx(m) * (((size_t)k + WINO_KR - 1) / WINO_KR * WINO_KR) * (size_t)c;
}

/* G (6x3 for m = 4, 8x3 for m = 6) times a 3-vector, in double. F(6x6,
 * 3x3) uses the points 0, +-1, +-2, +-1/2 and infinity. */
static inline void wino_g(int m, const double *x, int stride, double *y)
{
	double g0 = x[0], g1 = x[stride], g2 = x[2 * stride];

	if (m == 4) {
		y[0] = g0 / 4.0;
		y[1] = -(g0 + g1 + g2) / 6.0;
		y[2] = -(g0 - g1 + g2) / 6.0;
		y[3] = g0 / 24.0 + g1 / 12.0 + g2 / 6.0;
		y[4] = g0 / 24.0 - g1 / 12.0 + g2 / 6.0;
		y[5] = g2;
		return;
	}
	y[0] = g0;
	y[1] = -2.0 * (g0 + g1 + g2) / 9.0;
	y[2] = -2.0 * (g0 - g1 + g2) / 9.0;
	y[3] = g0 / 90.0 + g1 / 45.0 + 2.0 * g2 / 45.0;
	y[4] = g0 / 90.0 - g1 / 45.0 + 2.0 * g2 / 45.0;
	y[5] = 32.0 * g0 / 45.0 + 16.0 * g1 / 45.0 + 8.0 * g2 / 45.0;
	y[6] = 32.0 * g0 / 45.0 - 16.0 * g1 / 45.0 + 8.0 * g2 / 45.0;
	y[7] = g2;
}

int usv__wino_transform_weights(int m, const float *w, int k, int c, float *u)
{
	if (!w || !u || k <= 0 || c <= 0 || k > WINO_MAX_DIM || c > WINO_MAX_DIM || !wino_nx(m))
		return -EINVAL;
	const int al = m + 2, nx = wino_nx(m); /* input tile side, matrices */
	size_t kb = ((size_t)k + WINO_KR - 1) / WINO_KR;
	memset(u, 0, usv__wino_weight_floats(m, k, c) * sizeof(float));
	/* block of 12 outputs, input, output: the nx destinations of
	 * consecutive outputs are adjacent */
	for (int ob = 0; ob < (int)kb; ob++)
		for (int i = 0; i < c; i++)
			for (int o = ob * WINO_KR; o < k && o < (ob + 1) * WINO_KR; o++) {
				const float *g = w + ((size_t)o * c + i) * 9;
				double gd[9], t[8 * 3], col[3], r[8];
				for (int q = 0; q < 9; q++)
					gd[q] = g[q];
				/* t = G g: al x 3, column by column */
				for (int s = 0; s < 3; s++) {
					wino_g(m, gd + s, 3, r);
					for (int q = 0; q < al; q++)
						t[q * 3 + s] = r[q];
				}
				/* (G g) G^T: each row of t through G */
				for (int q = 0; q < al; q++) {
					col[0] = t[q * 3];
					col[1] = t[q * 3 + 1];
					col[2] = t[q * 3 + 2];
					wino_g(m, col, 1, r);
					for (int s = 0; s < al; s++)
						u[(((size_t)o / WINO_KR * nx +
						    (size_t)(q * al + s)) *
						       c +
						   i) *
						      WINO_KR +
						  (size_t)o % WINO_KR] = (float)r[s];
				}
			}
	return 0;
}

static long wino_tiles(int m, int n, int oh, int ow)
{
	return (long)n * ((oh + m - 1) / m) * ((ow + m - 1) / m);
}

static atomic_long wino_budget = USV_WINO_CHUNK_FLOATS;
static atomic_long wino_min_chunk = WINO_MIN_CHUNK;

void usv__wino_set_chunk_floats(long floats)
{
	atomic_store(&wino_budget, floats > 0 ? floats : USV_WINO_CHUNK_FLOATS);
	atomic_store(&wino_min_chunk, floats > 0 ? WINO_MIN_CHUNK_TEST : WINO_MIN_CHUNK);
}

/* Tiles per chunk from the cache budget alone. */
static long wino_chunk_budget(int m, int c, int k)
{
	long per = (long)wino_nx(m) * ((long)c + k);
	long tc = atomic_load(&wino_budget) / per / WINO_TP * WINO_TP;

	if (tc < atomic_load(&wino_min_chunk))
		tc = atomic_load(&wino_min_chunk);
	return tc;
}

static long wino_chunk(int m, int n, int c, int k, int oh, int ow)
{
	long total = wino_tiles(m, n, oh, ow);
	long tc = wino_chunk_budget(m, c, k);

	return tc > total ? total : tc;
}

/* Floats of one M slot: the nx matrices of one block of 12 output channels. */
static size_t wino_slot_floats(int nx, size_t ldt)
{
	return (size_t)nx * (WINO_KR * ldt + WINO_SKEW);
}

/* V and the M slots of one chunk of up to `chunk` tiles. */
static size_t wino_chunk_floats(int nx, int c, int k, long chunk)
{
	size_t ldt = ((size_t)chunk + WINO_TP - 1) / WINO_TP * WINO_TP;
	size_t kb = ((size_t)k + WINO_KR - 1) / WINO_KR;
	return (size_t)nx * ((size_t)c * ldt + WINO_SKEW) + kb * wino_slot_floats(nx, ldt);
}

size_t usv__wino_thread_workspace_floats(int m, int c, int k)
{
	if (c <= 0 || k <= 0 || c > WINO_MAX_DIM || k > WINO_MAX_DIM || !wino_nx(m))
		return 0;
	return wino_chunk_floats(wino_nx(m), c, k, wino_chunk_budget(m, c, k));
}

size_t usv__wino_workspace_floats(int m, int n, int c, int k, int oh, int ow)
{
	if (n <= 0 || c <= 0 || k <= 0 || oh <= 0 || ow <= 0 || c > WINO_MAX_DIM ||
	    k > WINO_MAX_DIM || oh > WINO_MAX_DIM || ow > WINO_MAX_DIM || !wino_nx(m))
		return 0;
	return wino_chunk_floats(wino_nx(m), c, k, wino_chunk(m, n, c, k, oh, ow));
}

/* Per-chunk description shared by the transforms. */
typedef struct wino_job {
	const usv_wino_args *a;
	int tm, nx; /* output tile side (4 or 6), matrices per tile */
	int oh, ow, th, tw;
	long t_begin, t_end; /* global tile range of this chunk */
	long ldt;            /* M row stride; V holds ldt / 32 panels */
	int kb;              /* blocks of 12 output channels */
	int c0, c1;          /* input channels of this thread (input transform) */
	int kb0, kb1;        /* output channel blocks of this thread (GEMM, output) */
	const float *in;
	float *out;
	float *v, *m;
} wino_job;

/* Position of a tile: image, tile row and tile column. Consecutive tiles
 * are stepped to without divisions. */
typedef struct wino_pos {
	long img;
	int ti, tj;
} wino_pos;

static inline void wino_pos_at(const wino_job *j, long t, wino_pos *p)
{
	const long per_img = (long)j->th * j->tw, rem = t % per_img;

	p->img = t / per_img;
	p->ti = (int)(rem / j->tw);
	p->tj = (int)(rem % j->tw);
}

static inline void wino_pos_next(const wino_job *j, wino_pos *p)
{
	if (++p->tj == j->tw) {
		p->tj = 0;
		if (++p->ti == j->th) {
			p->ti = 0;
			p->img++;
		}
	}
}

/* B^T x for 6 values x[0..5 * xs] -> y[0..5 * ys]. */
#define WINO_BT(x, xs, y, ys)                                                                      \
	do {                                                                                       \
		v16 x0_ = (x)[0], x1_ = (x)[(xs)], x2_ = (x)[2 * (xs)];                            \
		v16 x3_ = (x)[3 * (xs)], x4_ = (x)[4 * (xs)], x5_ = (x)[5 * (xs)];                 \
		(y)[0] = 4.0f * x0_ - 5.0f * x2_ + x4_;                                            \
		(y)[(ys)] = x3_ + x4_ - 4.0f * (x1_ + x2_);                                        \
		(y)[2 * (ys)] = 4.0f * (x1_ - x2_) + x4_ - x3_;                                    \
		(y)[3 * (ys)] = 2.0f * (x3_ - x1_) + x4_ - x2_;                                    \
		(y)[4 * (ys)] = 2.0f * (x1_ - x3_) + x4_ - x2_;                                    \
		(y)[5 * (ys)] = 4.0f * x1_ - 5.0f * x3_ + x5_;                                     \
	} while (0)

/* A^T x for 6 values -> 4 values. */
#define WINO_AT(x, xs, y, ys)                                                                      \
	do {                                                                                       \
		v16 x0_ = (x)[0], x1_ = (x)[(xs)], x2_ = (x)[2 * (xs)];                            \
		v16 x3_ = (x)[3 * (xs)], x4_ = (x)[4 * (xs)], x5_ = (x)[5 * (xs)];                 \
		v16 a_ = x1_ + x2_, b_ = x1_ - x2_, c_ = x3_ + x4_, d_ = x3_ - x4_;                \
		(y)[0] = x0_ + a_ + c_;                                                            \
		(y)[(ys)] = b_ + 2.0f * d_;                                                        \
		(y)[2 * (ys)] = a_ + 4.0f * c_;                                                    \
		(y)[3 * (ys)] = b_ + 8.0f * d_ + x5_;                                              \
	} while (0)

/* F(6x6, 3x3): B^T x for 8 values, and A^T x for 8 values -> 6 values. */
#define WINO_BT8(x, xs, y, ys)                                                                     \
	do {                                                                                       \
		v16 x0_ = (x)[0], x1_ = (x)[(xs)], x2_ = (x)[2 * (xs)], x3_ = (x)[3 * (xs)];       \
		v16 x4_ = (x)[4 * (xs)], x5_ = (x)[5 * (xs)], x6_ = (x)[6 * (xs)];                 \
		v16 x7_ = (x)[7 * (xs)];                                                           \
		v16 p_ = x2_ + x6_ - 4.25f * x4_, q_ = x1_ + x5_ - 4.25f * x3_;                    \
		v16 r_ = 0.25f * x2_ - 1.25f * x4_ + x6_,                                          \
		    s_ = 0.5f * x1_ - 2.5f * x3_ + 2.0f * x5_;                                     \
		v16 u_ = 4.0f * x2_ - 5.0f * x4_ + x6_, v_ = 2.0f * x1_ - 2.5f * x3_ + 0.5f * x5_; \
		(y)[0] = x0_ - x6_ + 5.25f * (x4_ - x2_);                                          \
		(y)[(ys)] = p_ + q_;                                                               \
		(y)[2 * (ys)] = p_ - q_;                                                           \
		(y)[3 * (ys)] = r_ + s_;                                                           \
		(y)[4 * (ys)] = r_ - s_;                                                           \
		(y)[5 * (ys)] = u_ + v_;                                                           \
		(y)[6 * (ys)] = u_ - v_;                                                           \
		(y)[7 * (ys)] = x7_ - x1_ + 5.25f * (x3_ - x5_);                                   \
	} while (0)

#define WINO_AT8(x, xs, y, ys)                                                                     \
	do {                                                                                       \
		v16 x0_ = (x)[0], x1_ = (x)[(xs)], x2_ = (x)[2 * (xs)], x3_ = (x)[3 * (xs)];       \
		v16 x4_ = (x)[4 * (xs)], x5_ = (x)[5 * (xs)], x6_ = (x)[6 * (xs)];                 \
		v16 x7_ = (x)[7 * (xs)];                                                           \
		v16 a_ = x1_ + x2_, b_ = x1_ - x2_, c_ = x3_ + x4_, d_ = x3_ - x4_;                \
		v16 e_ = x5_ + x6_, f_ = x5_ - x6_;                                                \
		(y)[0] = x0_ + a_ + c_ + e_;                                                       \
		(y)[(ys)] = b_ + 2.0f * d_ + 0.5f * f_;                                            \
		(y)[2 * (ys)] = a_ + 4.0f * c_ + 0.25f * e_;                                       \
		(y)[3 * (ys)] = b_ + 8.0f * d_ + 0.125f * f_;                                      \
		(y)[4 * (ys)] = a_ + 16.0f * c_ + 0.0625f * e_;                                    \
		(y)[5 * (ys)] = b_ + 32.0f * d_ + 0.03125f * f_ + x7_;                             \
	} while (0)

/* Input transform of one chunk, channels [c0, c1): V[xi][tl / 32][ch][tl % 32]
 * for tl = t - t_begin. */
/* Element s of 4 tiles side by side: column M i + s (i = 0..3) of the
 * row segment of 3 M + M + 2 floats under them, split over two vectors. */
static const v16i wino_tap_mask4[6] = {
    {0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}, {4, 8, 12, 16}, {5, 9, 13, 17},
};
static const v16i wino_tap_mask6[8] = {
    {0, 6, 12, 18},  {1, 7, 13, 19},  {2, 8, 14, 20},  {3, 9, 15, 21},
    {4, 10, 16, 22}, {5, 11, 17, 23}, {6, 12, 18, 24}, {7, 13, 19, 25},
};

/* M: output tile side, 4 or 6 (input tiles of M + 2). wide != 0: groups of
 * 4 whole interior tiles side by side in one row are read as row vectors
 * and spread with shuffles. */
static inline __attribute__((always_inline)) void wino_input_impl(const wino_job *j, int wide,
                                                                  const int M)
{
	const int AL = M + 2, NX = AL * AL, SPAN = 3 * M + AL;
	const usv_wino_args *a = j->a;
	const int c = a->c, h = a->h, w = a->w;
	const long plane = (long)h * w;
	const size_t xi_stride = (size_t)c * (size_t)j->ldt + WINO_SKEW;
	union {
		float f[64 * 16]; /* element (r, s) of lane l at f[(r * AL + s) * 16 + l] */
		v16 v[64];
	} ub __attribute__((aligned(64)));
	float *buf = ub.f;
	long off[16];
	int row0[16], col0[16], inner[16], r_lo[16], r_hi[16], s_lo[16], s_hi[16], quad[4];
	wino_pos pos;

	if (j->c0 >= j->c1)
		return;

	wino_pos_at(j, j->t_begin, &pos);
	for (long t0 = j->t_begin; t0 < j->t_end; t0 += 16) {
		int lanes = (int)(j->t_end - t0 < 16 ? j->t_end - t0 : 16);
		if (lanes < 16)
			memset(&ub, 0, sizeof(ub));
		for (int l = 0; l < lanes; l++) {
			row0[l] = M * pos.ti - a->pt;
			col0[l] = M * pos.tj - a->pl;
			off[l] = pos.img * (a->in_stride ? a->in_stride : c * plane);
			wino_pos_next(j, &pos);
			inner[l] =
			    row0[l] >= 0 && row0[l] + AL <= h && col0[l] >= 0 && col0[l] + AL <= w;
			/* rows and columns of the tile inside the image */
			r_lo[l] = row0[l] < 0 ? -row0[l] : 0;
			r_hi[l] = h - row0[l] < AL ? h - row0[l] : AL;
			s_lo[l] = col0[l] < 0 ? -col0[l] : 0;
			s_hi[l] = w - col0[l] < AL ? w - col0[l] : AL;
		}
		for (int g = 0; g < 4; g++) {
			int l = 4 * g;
			quad[g] = wide && l + 3 < lanes && off[l] == off[l + 3] &&
			          row0[l] == row0[l + 3] && col0[l + 3] == col0[l] + 3 * M &&
			          inner[l] && inner[l + 3];
		}
		long tl = t0 - j->t_begin;
		float *vdst = j->v + (size_t)(tl / WINO_TP) * c * WINO_TP + tl % WINO_TP;
		for (int ch = j->c0; ch < j->c1; ch++) {
			for (int g = 0; g < 4; g++) {
				if (!quad[g])
					continue;
				const float *q = j->in + off[4 * g] + ch * plane +
				                 (long)row0[4 * g] * w + col0[4 * g];
				/* the same rows of a channel WINO_PF ahead: the first
				 * and the last line of each segment */
				const long pf = ch + WINO_PF < j->c1 ? WINO_PF * plane : 0;
				for (int r = 0; r < AL; r++, q += w) {
					if (pf) {
						__builtin_prefetch(q + pf);
						__builtin_prefetch(q + pf + SPAN - 1);
					}
					v16 lo, hi = {0};
					memcpy(&lo, q, sizeof(lo));
					memcpy(&hi, q + 16, (size_t)(SPAN - 16) * sizeof(float));
					for (int s = 0; s < AL; s++) {
						v16 e = wino_shuffle(lo, hi,
						                     M == 4 ? wino_tap_mask4[s]
						                            : wino_tap_mask6[s]);
						memcpy(&buf[(r * AL + s) * 16 + 4 * g], &e,
						       4 * sizeof(float));
					}
				}
			}
			for (int l = 0; l < lanes; l++) {
				const float *p = j->in + off[l] + ch * plane;
				if (quad[l / 4])
					continue;
				if (inner[l]) {
					const float *q = p + (long)row0[l] * w + col0[l];
#pragma GCC unroll 8
					for (int r = 0; r < AL; r++, q += w)
#pragma GCC unroll 8
						for (int s = 0; s < AL; s++)
							buf[(r * AL + s) * 16 + l] = q[s];
				} else {
					for (int q = 0; q < NX; q++)
						buf[q * 16 + l] = 0.0f;
					for (int r = r_lo[l]; r < r_hi[l]; r++) {
						const float *q =
						    p + (long)(row0[l] + r) * w + col0[l];
						for (int s = s_lo[l]; s < s_hi[l]; s++)
							buf[(r * AL + s) * 16 + l] = q[s];
					}
				}
			}
			v16 d[64], t[64];
			if (M == 4) {
				for (int s = 0; s < 6; s++)
					WINO_BT(ub.v + s, 6, t + s, 6);
				for (int r = 0; r < 6; r++)
					WINO_BT(t + r * 6, 1, d + r * 6, 1);
			} else {
				for (int s = 0; s < 8; s++)
					WINO_BT8(ub.v + s, 8, t + s, 8);
				for (int r = 0; r < 8; r++)
					WINO_BT8(t + r * 8, 1, d + r * 8, 1);
			}
			float *dst = vdst + (size_t)ch * WINO_TP;
			for (int xi = 0; xi < NX; xi++)
				memcpy(dst + xi * xi_stride, &d[xi], sizeof(v16));
		}
	}
}

/* Output transform of one chunk with bias and activation. */
/* Shuffle masks for the output rows of 4 neighbouring tiles of F(4x4, 3x3)
 * (lanes 4g .. 4g + 3): first pairs (y0, y1) and (y2, y3) lane by lane,
 * then the pairs into [y0 y1 y2 y3] per tile, which is 16 consecutive
 * output pixels. */
static const v16i wino_pair_mask[4] = {
    {0, 16, 1, 17, 2, 18, 3, 19, 0, 0, 0, 0, 0, 0, 0, 0},
    {4, 20, 5, 21, 6, 22, 7, 23, 0, 0, 0, 0, 0, 0, 0, 0},
    {8, 24, 9, 25, 10, 26, 11, 27, 0, 0, 0, 0, 0, 0, 0, 0},
    {12, 28, 13, 29, 14, 30, 15, 31, 0, 0, 0, 0, 0, 0, 0, 0},
};
static const v16i wino_quad_mask = {0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23};
/* F(6x6, 3x3): the same two steps give y0..y3 of the 4 tiles (Q); with
 * the pairs (y4, y5) they make the row's 24 pixels, 16 + 8. */
static const v16i wino_row6_lo = {0, 1, 2, 3, 16, 17, 4, 5, 6, 7, 18, 19, 8, 9, 10, 11};
static const v16i wino_row6_hi = {20, 21, 12, 13, 14, 15, 22, 23, 0, 0, 0, 0, 0, 0, 0, 0};

/* Output transform of the output channels of block kb, whose matrices of
 * 12 x ldt are in the slot ms (just written by the GEMM, so still in
 * cache); M = 4 or 6 as for the input. wide != 0: groups of 4 whole tiles
 * side by side in one row are stored as vectors (worth it where shuffles
 * are single instructions). */
static inline __attribute__((always_inline)) void
wino_output_impl(const wino_job *j, int wide, const int M, int kb, const float *ms)
{
	const int AL = M + 2;
	const usv_wino_args *a = j->a;
	const int k = a->k, oh = j->oh, ow = j->ow;
	const int pool = a->pool2, poh = oh / 2, pow_ = ow / 2, PM = M / 2;
	const long oplane = pool ? (long)poh * pow_ : (long)oh * ow;
	const size_t xi_stride = (size_t)WINO_KR * (size_t)j->ldt + WINO_SKEW;
	const int o0 = kb * WINO_KR, o1 = o0 + WINO_KR < k ? o0 + WINO_KR : k;
	float buf[36 * 16] __attribute__((aligned(64)));
	long off[16];
	int row0[16], col0[16], quad[4];
	wino_pos pos;

	wino_pos_at(j, j->t_begin, &pos);
	for (long t0 = j->t_begin; t0 < j->t_end; t0 += 16) {
		int lanes = (int)(j->t_end - t0 < 16 ? j->t_end - t0 : 16);
		for (int l = 0; l < lanes; l++) {
			row0[l] = M * pos.ti;
			col0[l] = M * pos.tj;
			off[l] = pos.img * (a->out_stride ? a->out_stride : k * oplane);
			wino_pos_next(j, &pos);
		}
		/* quad[g]: lanes 4g .. 4g+3 are whole tiles side by side in one row */
		for (int g = 0; g < 4; g++) {
			int l = 4 * g;
			quad[g] = wide && !pool && l + 3 < lanes && off[l] == off[l + 3] &&
			          row0[l] == row0[l + 3] && col0[l + 3] == col0[l] + 3 * M &&
			          row0[l] + M <= oh && col0[l] + 4 * M <= ow;
		}
		const float *msrc = ms + (t0 - j->t_begin);
		for (int o = o0; o < o1; o++) {
			v16 t[48], y[36];
			const float *src = msrc + (size_t)(o - o0) * j->ldt;
			/* column by column straight from M: no copy of all of it */
#pragma GCC unroll 8
			for (int s = 0; s < AL; s++) {
				v16 col[8];
#pragma GCC unroll 8
				for (int r = 0; r < AL; r++)
					memcpy(&col[r], src + (size_t)(r * AL + s) * xi_stride,
					       sizeof(v16));
				if (M == 4)
					WINO_AT(col, 1, t + s, AL);
				else
					WINO_AT8(col, 1, t + s, AL);
			}
			for (int r = 0; r < M; r++) {
				if (M == 4)
					WINO_AT(t + r * AL, 1, y + r * M, 1);
				else
					WINO_AT8(t + r * AL, 1, y + r * M, 1);
			}
			float b = a->bias ? a->bias[o] : 0.0f;
			for (int q = 0; q < M * M; q++) {
				y[q] += b;
				if (a->act == USV_ACT_RELU || a->act == USV_ACT_RELU6) {
					v16i gt0 = y[q] > 0.0f;
					y[q] = (v16)((v16i)y[q] & gt0);
				}
				if (a->act == USV_ACT_RELU6) {
					v16i lo = y[q] < 6.0f;
					v16 six = y[q] * 0.0f + 6.0f;
					y[q] = (v16)(((v16i)y[q] & lo) | ((v16i)six & ~lo));
				}
			}
			if (pool) {
				/* 2x2 maxima inside the tile (its origin is even) */
				for (int r = 0; r < PM; r++)
					for (int q = 0; q < PM; q++) {
						v16 m0 = y[2 * r * M + 2 * q],
						    m1 = y[2 * r * M + 2 * q + 1];
						v16 m2 = y[(2 * r + 1) * M + 2 * q];
						v16 m3 = y[(2 * r + 1) * M + 2 * q + 1];
						v16i g01 = m0 > m1, g23 = m2 > m3;
						m0 = (v16)(((v16i)m0 & g01) | ((v16i)m1 & ~g01));
						m2 = (v16)(((v16i)m2 & g23) | ((v16i)m3 & ~g23));
						v16i g = m0 > m2;
						y[r * PM + q] =
						    (v16)(((v16i)m0 & g) | ((v16i)m2 & ~g));
					}
				memcpy(buf, y, (size_t)PM * PM * sizeof(v16));
				for (int l = 0; l < lanes; l++) {
					const int pr = row0[l] / 2, pc = col0[l] / 2;
					const int nr = poh - pr < PM ? poh - pr : PM;
					const int ns = pow_ - pc < PM ? pow_ - pc : PM;
					float *dst =
					    j->out + off[l] + o * oplane + (long)pr * pow_ + pc;
					for (int r = 0; r < nr; r++, dst += pow_)
						for (int q = 0; q < ns; q++)
							dst[q] = buf[(r * PM + q) * 16 + l];
				}
				continue;
			}
			memcpy(buf, y, (size_t)M * M * sizeof(v16));
			for (int g = 0; g < 4; g++) {
				if (!quad[g])
					continue;
				float *dst = j->out + off[4 * g] + o * oplane +
				             (long)row0[4 * g] * ow + col0[4 * g];
				for (int r = 0; r < M; r++, dst += ow) {
					v16 p01 =
					    wino_shuffle(y[r * M], y[r * M + 1], wino_pair_mask[g]);
					v16 p23 = wino_shuffle(y[r * M + 2], y[r * M + 3],
					                       wino_pair_mask[g]);
					v16 row = wino_shuffle(p01, p23, wino_quad_mask);
					if (M == 4) {
						memcpy(dst, &row, sizeof(row));
						continue;
					}
					v16 p45 = wino_shuffle(y[r * M + 4], y[r * M + 5],
					                       wino_pair_mask[g]);
					v16 lo = wino_shuffle(row, p45, wino_row6_lo);
					v16 hi = wino_shuffle(row, p45, wino_row6_hi);
					memcpy(dst, &lo, sizeof(lo));
					memcpy(dst + 16, &hi, 8 * sizeof(float));
				}
			}
			for (int l = 0; l < lanes; l++) {
				if (quad[l / 4])
					continue;
				float *dst = j->out + off[l] + o * oplane;
				int nr = oh - row0[l] < M ? oh - row0[l] : M;
				int ns = ow - col0[l] < M ? ow - col0[l] : M;
				if (nr == M && ns == M) {
					float *drow = dst + (long)row0[l] * ow + col0[l];
#pragma GCC unroll 6
					for (int r = 0; r < M; r++, drow += ow)
#pragma GCC unroll 6
						for (int s = 0; s < M; s++)
							drow[s] = buf[(r * M + s) * 16 + l];
					continue;
				}
				for (int r = 0; r < nr; r++) {
					float *drow = dst + (long)(row0[l] + r) * ow + col0[l];
					for (int s = 0; s < ns; s++)
						drow[s] = buf[(r * M + s) * 16 + l];
				}
			}
		}
	}
}

/*
 * GEMM and output transform of one chunk for the thread's output channel
 * blocks, block by block: the nx products of block kb,
 * M[xi][r][t] = sum_c U[kb][xi][c][r] * V[xi][t / 32][c][t % 32],
 * go to the thread's M slot (the slot of its first block), and the output
 * transform reads them back at once from L2 instead of from wherever a
 * whole chunk's M would have ended up. Columns are done 32 (or, at the
 * end, 16) at a time; columns past the chunk's tiles hold transforms of
 * zeros or are never read.
 */
static float *wino_slot(const wino_job *j)
{
	return j->m + (size_t)j->kb0 * wino_slot_floats(j->nx, (size_t)j->ldt);
}

static void wino_output_generic(const wino_job *j, int kb, const float *ms)
{
	if (j->tm == 6)
		wino_output_impl(j, 0, 6, kb, ms);
	else
		wino_output_impl(j, 0, 4, kb, ms);
}

static void wino_gemm_generic(const wino_job *j)
{
	const int c = j->a->c;
	const long nt = (j->t_end - j->t_begin + 15) / 16 * 16;
	float *ms = wino_slot(j);

	for (int kb = j->kb0; kb < j->kb1; kb++) {
		for (int xi = 0; xi < j->nx; xi++) {
			const float *v = j->v + (size_t)xi * ((size_t)c * j->ldt + WINO_SKEW);
			float *m = ms + (size_t)xi * (WINO_KR * (size_t)j->ldt + WINO_SKEW);
			const float *up = j->a->u + ((size_t)kb * j->nx + xi) * c * WINO_KR;
			for (long t = 0; t < nt; t += 16) {
				const float *vp =
				    v + (size_t)(t / WINO_TP) * c * WINO_TP + t % WINO_TP;
				v16 acc[WINO_KR];
				for (int r = 0; r < WINO_KR; r++)
					acc[r] = (v16){0};
				for (int ch = 0; ch < c; ch++) {
					v16 x;
					memcpy(&x, vp + (size_t)ch * WINO_TP, sizeof(x));
					for (int r = 0; r < WINO_KR; r++)
						acc[r] += up[ch * WINO_KR + r] * x;
				}
				for (int r = 0; r < WINO_KR; r++)
					memcpy(m + (size_t)r * j->ldt + t, &acc[r], sizeof(v16));
			}
		}
		wino_output_generic(j, kb, ms);
	}
}

static void wino_input_generic(const wino_job *j)
{
	if (j->tm == 6)
		wino_input_impl(j, 0, 6);
	else
		wino_input_impl(j, 0, 4);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx512f,fma"))) static void wino_input_avx512(const wino_job *j)
{
	if (j->tm == 6)
		wino_input_impl(j, 1, 6);
	else
		wino_input_impl(j, 1, 4);
}

__attribute__((target("avx512f,fma"))) static void wino_output_avx512(const wino_job *j, int kb,
                                                                      const float *ms)
{
	if (j->tm == 6)
		wino_output_impl(j, 1, 6, kb, ms);
	else
		wino_output_impl(j, 1, 4, kb, ms);
}

/* R (4, 8 or 12) rows x (16 * NV) columns of accumulators; weights are
 * read in rows of 12 whatever R. */
__attribute__((target("avx512f,fma"))) static inline __attribute__((always_inline)) void
wino_micro(const float *up, const float *vp, int c, float *mp, long ldt, int NV, const int R)
{
	__m512 acc[WINO_KR][2];
#pragma GCC unroll 12
	for (int r = 0; r < R; r++) {
		acc[r][0] = _mm512_setzero_ps();
		acc[r][1] = _mm512_setzero_ps();
	}
	for (int ch = 0; ch < c; ch++) {
		__m512 x0 = _mm512_loadu_ps(vp);
		__m512 x1 = NV == 2 ? _mm512_loadu_ps(vp + 16) : x0;
#pragma GCC unroll 12
		for (int r = 0; r < R; r++) {
			__m512 b = _mm512_set1_ps(up[r]);
			acc[r][0] = _mm512_fmadd_ps(b, x0, acc[r][0]);
			if (NV == 2)
				acc[r][1] = _mm512_fmadd_ps(b, x1, acc[r][1]);
		}
		up += WINO_KR;
		vp += WINO_TP;
	}
#pragma GCC unroll 12
	for (int r = 0; r < R; r++) {
		_mm512_storeu_ps(mp + r * ldt, acc[r][0]);
		if (NV == 2)
			_mm512_storeu_ps(mp + r * ldt + 16, acc[r][1]);
	}
}

/* The last nc < 16 tiles of a chunk, NC at a time (NC <= 8): 12 output
 * channels as one masked vector per tile, so no work goes to absent tiles. */
__attribute__((target("avx512f,fma"))) static inline __attribute__((always_inline)) void
wino_micro_cols(const float *up, const float *vp, int c, float *mp, long ldt, int NC)
{
	const __mmask16 mk = (1u << WINO_KR) - 1;
	__m512 acc[8];
	float tmp[16] __attribute__((aligned(64)));
#pragma GCC unroll 8
	for (int q = 0; q < 8; q++)
		acc[q] = _mm512_setzero_ps();
	for (int ch = 0; ch < c; ch++) {
		__m512 w = _mm512_maskz_loadu_ps(mk, up);
#pragma GCC unroll 8
		for (int q = 0; q < NC; q++)
			acc[q] = _mm512_fmadd_ps(w, _mm512_set1_ps(vp[q]), acc[q]);
		up += WINO_KR;
		vp += WINO_TP;
	}
	for (int q = 0; q < NC; q++) {
		_mm512_store_ps(tmp, acc[q]);
		for (int r = 0; r < WINO_KR; r++)
			mp[r * ldt + q] = tmp[r];
	}
}

__attribute__((target("avx512f,fma"))) static void wino_cols(const float *up, const float *vp,
                                                             int c, float *mp, long ldt, int nc)
{
	while (nc > 0) {
		int q = nc > 8 ? 8 : nc;
		switch (q) {
		case 8:
			wino_micro_cols(up, vp, c, mp, ldt, 8);
			break;
		case 7:
			wino_micro_cols(up, vp, c, mp, ldt, 7);
			break;
		case 6:
			wino_micro_cols(up, vp, c, mp, ldt, 6);
			break;
		case 5:
			wino_micro_cols(up, vp, c, mp, ldt, 5);
			break;
		case 4:
			wino_micro_cols(up, vp, c, mp, ldt, 4);
			break;
		case 3:
			wino_micro_cols(up, vp, c, mp, ldt, 3);
			break;
		case 2:
			wino_micro_cols(up, vp, c, mp, ldt, 2);
			break;
		default:
			wino_micro_cols(up, vp, c, mp, ldt, 1);
			break;
		}
		vp += q;
		mp += q;
		nc -= q;
	}
}

/* One matrix of one block: R rows of M for the chunk's nt tiles. */
__attribute__((target("avx512f,fma"))) static inline __attribute__((always_inline)) void
wino_block(const float *up, const float *v, int c, float *mrow, long ldt, long nt, const int R)
{
	long t = 0;
	for (; t + WINO_TP <= nt; t += WINO_TP)
		wino_micro(up, v + (size_t)t * c, c, mrow + t, ldt, 2, R);
	/* t is a multiple of 32 here: the last panel, part full. A vector of
	 * 16 tiles costs as much as 16 / 12 single ones. */
	long rest = nt - t;
	const float *vp = v + (size_t)t * c;
	if (rest >= 28) {
		wino_micro(up, vp, c, mrow + t, ldt, 2, R);
		rest = 0;
	} else if (rest >= 12) {
		wino_micro(up, vp, c, mrow + t, ldt, 1, R);
		vp += 16;
		t += 16;
		rest -= 16;
	}
	if (rest > 0)
		wino_cols(up, vp, c, mrow + t, ldt, (int)rest);
}

__attribute__((target("avx512f,fma"))) static void wino_gemm_avx512(const wino_job *j)
{
	const int c = j->a->c;
	const long nt = j->t_end - j->t_begin;
	float *ms = wino_slot(j);

	for (int kb = j->kb0; kb < j->kb1; kb++) {
		/* the last block of a k that is not a multiple of 12 (VGG16's 64:
		 * 4 rows) runs with 4 or 8 rows of accumulators */
		const int rows = j->a->k - kb * WINO_KR;
		for (int xi = 0; xi < j->nx; xi++) {
			const float *v = j->v + (size_t)xi * ((size_t)c * j->ldt + WINO_SKEW);
			float *mrow = ms + (size_t)xi * (WINO_KR * (size_t)j->ldt + WINO_SKEW);
			const float *up = j->a->u + ((size_t)kb * j->nx + xi) * c * WINO_KR;
			if (rows <= 4)
				wino_block(up, v, c, mrow, j->ldt, nt, 4);
			else if (rows <= 8)
				wino_block(up, v, c, mrow, j->ldt, nt, 8);
			else
				wino_block(up, v, c, mrow, j->ldt, nt, 12);
		}
		wino_output_avx512(j, kb, ms);
	}
}
#define WINO_HAVE_AVX512 1
#endif

typedef struct wino_barrier {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int count, waiting;
	unsigned gen;
} wino_barrier;

static void wino_barrier_wait(wino_barrier *b)
{
	pthread_mutex_lock(&b->mu);
	unsigned gen = b->gen;
	if (++b->waiting == b->count) {
		b->waiting = 0;
		b->gen++;
		pthread_cond_broadcast(&b->cv);
	} else {
		while (gen == b->gen)
			pthread_cond_wait(&b->cv, &b->mu);
	}
	pthread_mutex_unlock(&b->mu);
}

typedef struct wino_ctx {
	wino_job base;
	long total, chunk;
	void (*input)(const wino_job *);
	void (*gemm)(const wino_job *); /* GEMM and output transform */
	wino_barrier bar;
	int started; /* 0 until the thread count is final */
	int nthr;
} wino_ctx;

typedef struct wino_thread {
	wino_ctx *ctx;
	int tid;
} wino_thread;

/* The share of thread (or task) tid of nthr: channels and channel blocks. */
static void wino_share(const wino_ctx *x, int tid, wino_job *j)
{
	const int n = x->nthr;

	*j = x->base;
	j->c0 = (int)((long)j->a->c * tid / n);
	j->c1 = (int)((long)j->a->c * (tid + 1) / n);
	j->kb0 = (int)((long)j->kb * tid / n);
	j->kb1 = (int)((long)j->kb * (tid + 1) / n);
}

static void wino_work(wino_ctx *x, int tid)
{
	const int n = x->nthr;
	wino_job j;

	wino_share(x, tid, &j);
	for (long t = 0; t < x->total; t += x->chunk) {
		j.t_begin = t;
		j.t_end = t + x->chunk < x->total ? t + x->chunk : x->total;
		x->input(&j);
		if (n > 1)
			wino_barrier_wait(&x->bar);
		x->gemm(&j);
		if (n > 1 && j.t_end < x->total)
			wino_barrier_wait(&x->bar);
	}
}

/* Tile split: task `task` of x->nthr takes a share of all tiles and runs
 * every phase on it alone, in the workspace of the thread running it. */
static void wino_task_tiles(void *ctx, int task, int thread)
{
	wino_ctx *x = ctx;
	wino_job j = x->base;
	const usv_wino_args *a = j.a;
	long t0 = x->total * task / x->nthr, t1 = x->total * (task + 1) / x->nthr;

	j.c0 = 0;
	j.c1 = a->c;
	j.kb0 = 0;
	j.kb1 = j.kb;
	j.v = a->tws + (size_t)thread * a->tws_stride;
	j.m = j.v + (size_t)j.nx * ((size_t)a->c * j.ldt + WINO_SKEW);
	for (long t = t0; t < t1; t += x->chunk) {
		j.t_begin = t;
		j.t_end = t + x->chunk < t1 ? t + x->chunk : t1;
		x->input(&j);
		x->gemm(&j);
	}
}

/* Tasks for an external fork-join runner; x->base holds the chunk. */
static void wino_task_input(void *ctx, int task, int thread)
{
	wino_ctx *x = ctx;
	wino_job j;

	(void)thread;
	wino_share(x, task, &j);
	x->input(&j);
}

static void wino_task_gemm(void *ctx, int task, int thread)
{
	wino_ctx *x = ctx;
	wino_job j;

	(void)thread;
	wino_share(x, task, &j);
	x->gemm(&j);
}

static void *wino_thread_main(void *p)
{
	wino_thread *th = p;
	wino_ctx *x = th->ctx;

	pthread_mutex_lock(&x->bar.mu);
	while (!x->started)
		pthread_cond_wait(&x->bar.cv, &x->bar.mu);
	int run = th->tid < x->nthr;
	pthread_mutex_unlock(&x->bar.mu);
	if (run)
		wino_work(x, th->tid);
	return NULL;
}

int usv__wino_conv(const usv_wino_args *a, const float *in, float *out, float *ws, size_t ws_floats)
{
	if (!a || !in || !out || !ws || !a->u || a->n <= 0 || a->c <= 0 || a->k <= 0 || a->h <= 0 ||
	    a->w <= 0 || a->pt < 0 || a->pb < 0 || a->pl < 0 || a->pr < 0 || a->h > WINO_MAX_DIM ||
	    a->w > WINO_MAX_DIM || a->pt > 8 || a->pb > 8 || a->pl > 8 || a->pr > 8 ||
	    a->c > WINO_MAX_DIM || a->k > WINO_MAX_DIM)
		return -EINVAL;
	const int tm = a->tile ? a->tile : 4, nx = wino_nx(tm);
	int oh = a->h + a->pt + a->pb - 2, ow = a->w + a->pl + a->pr - 2;
	if (oh <= 0 || ow <= 0 || !nx || (a->pool2 && (oh % 2 || ow % 2)))
		return -EINVAL;
	if (ws_floats < usv__wino_workspace_floats(tm, a->n, a->c, a->k, oh, ow))
		return -EINVAL;

	wino_ctx x = {
	    .input = wino_input_generic,
	    .gemm = wino_gemm_generic,
	};
#ifdef WINO_HAVE_AVX512
	if (usv__cpu_has_avx512()) {
		x.input = wino_input_avx512;
		x.gemm = wino_gemm_avx512;
	}
#endif
	x.total = wino_tiles(tm, a->n, oh, ow);
	x.chunk = wino_chunk(tm, a->n, a->c, a->k, oh, ow);
	long ldt = (x.chunk + WINO_TP - 1) / WINO_TP * WINO_TP;
	int kb = (a->k + WINO_KR - 1) / WINO_KR;
	x.base = (wino_job){
	    .a = a,
	    .tm = tm,
	    .nx = nx,
	    .oh = oh,
	    .ow = ow,
	    .th = (oh + tm - 1) / tm,
	    .tw = (ow + tm - 1) / tm,
	    .ldt = ldt,
	    .kb = kb,
	    .in = in,
	    .out = out,
	    .v = ws,
	    .m = ws + (size_t)nx * ((size_t)a->c * ldt + WINO_SKEW),
	};

	int want = a->threads < 1                  ? 1
	           : a->threads > WINO_MAX_THREADS ? WINO_MAX_THREADS
	                                           : a->threads;
	/* Enough tiles for every thread to run two whole chunks on its own: no
	 * barrier at all (large images); else all threads share each chunk. */
	long bchunk = wino_chunk_budget(tm, a->c, a->k);
	if (want > 1 && a->par_run && a->tws &&
	    a->tws_stride >= usv__wino_thread_workspace_floats(tm, a->c, a->k) &&
	    x.total >= 2 * want * bchunk) {
		x.nthr = want;
		x.chunk = bchunk;
		x.base.ldt = (bchunk + WINO_TP - 1) / WINO_TP * WINO_TP;
		a->par_run(a->par, want, wino_task_tiles, &x);
		return 0;
	}
	if (want > kb)
		want = kb;
	if (want > 1 && a->par_run) {
		x.nthr = want;
		for (long t = 0; t < x.total; t += x.chunk) {
			x.base.t_begin = t;
			x.base.t_end = t + x.chunk < x.total ? t + x.chunk : x.total;
			a->par_run(a->par, want, wino_task_input, &x);
			a->par_run(a->par, want, wino_task_gemm, &x);
		}
		return 0;
	}
	if (want <= 1) {
		x.nthr = 1;
		wino_work(&x, 0);
		return 0;
	}
	wino_thread th[WINO_MAX_THREADS];
	pthread_t tid[WINO_MAX_THREADS];
	pthread_mutex_init(&x.bar.mu, NULL);
	pthread_cond_init(&x.bar.cv, NULL);
	int created = 0;
	for (int i = 1; i < want; i++) {
		th[i] = (wino_thread){.ctx = &x, .tid = i};
		if (pthread_create(&tid[i], NULL, wino_thread_main, &th[i]) != 0)
			break;
		created++;
	}
	pthread_mutex_lock(&x.bar.mu);
	x.nthr = 1 + created;
	x.bar.count = x.nthr;
	x.started = 1;
	pthread_cond_broadcast(&x.bar.cv);
	pthread_mutex_unlock(&x.bar.mu);
	wino_work(&x, 0);
	for (int i = 1; i <= created; i++)
		pthread_join(tid[i], NULL);
	pthread_cond_destroy(&x.bar.cv);
	pthread_mutex_destroy(&x.bar.mu);
	return 0;
}
