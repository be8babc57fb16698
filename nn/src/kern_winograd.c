/*
 * NAME
 *	kern_winograd.c - Winograd F(4x4, 3x3) convolution on top of sgemm
 *
 * DESCRIPTION
 *	Each output tile of 4x4 pixels needs a 6x6 input tile d. With the
 *	F(4x4, 3x3) matrices of Lavin and Gray (interpolation points 0, +-1,
 *	+-2 and infinity) one output tile is Y = A^T [U . V] A, where
 *	U = G g G^T (weights, precomputed) and V = B^T d B. Summed over input
 *	channels, the 36 element-wise products become 36 independent GEMMs
 *	M[xi] (k x tiles) = U[xi] (k x c) . V[xi] (c x tiles), done here with
 *	cblas_sgemm. That is 36 instead of 144 multiplies per tile and
 *	channel pair (4x fewer); the transforms cost O(c + k) per tile.
 *
 *	Tiles of all images are numbered in one sequence and processed in
 *	chunks so that V and M of a chunk stay near the last-level cache
 *	(USV_WINO_CHUNK_FLOATS). The transforms work on 16 tiles at a time as
 *	GCC vector-extension values; an AVX-512 build of the same code is
 *	chosen at run time when the CPU has it.
 *
 *	Layouts: u [36][k][c]; workspace V [36][c][ldt] then M [36][k][ldt],
 *	ldt = chunk rounded up to 16.
 */
#include "kern_fast.h"

#include <cblas.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* Floats of V + M per chunk: 4 Mi floats (16 MiB) keeps a chunk in L3. */
#define USV_WINO_CHUNK_FLOATS (4L << 20)
#define WINO_MIN_CHUNK 16L
#define WINO_MAX_DIM (1 << 20)

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t v16i __attribute__((vector_size(64), aligned(4)));

int usv__wino_applicable(int kernel_h, int kernel_w, int stride_h, int stride_w, int group)
{
	return kernel_h == 3 && kernel_w == 3 && stride_h == 1 && stride_w == 1 && group == 1;
}

size_t usv__wino_weight_floats(int k, int c)
{
	if (k <= 0 || c <= 0)
		return 0;
	return (size_t)36 * (size_t)k * (size_t)c;
}

/* G (6x3) times a 3-vector, in double. */
static void wino_g(const double *x, int stride, double *y)
{
	double g0 = x[0], g1 = x[stride], g2 = x[2 * stride];

	y[0] = g0 / 4.0;
	y[1] = -(g0 + g1 + g2) / 6.0;
	y[2] = -(g0 - g1 + g2) / 6.0;
	y[3] = g0 / 24.0 + g1 / 12.0 + g2 / 6.0;
	y[4] = g0 / 24.0 - g1 / 12.0 + g2 / 6.0;
	y[5] = g2;
}

int usv__wino_transform_weights(const float *w, int k, int c, float *u)
{
	if (!w || !u || k <= 0 || c <= 0 || k > WINO_MAX_DIM || c > WINO_MAX_DIM)
		return -EINVAL;
	size_t kc = (size_t)k * (size_t)c;
	for (int o = 0; o < k; o++)
		for (int i = 0; i < c; i++) {
			const float *g = w + ((size_t)o * c + i) * 9;
			double gd[9], t[6 * 3], col[3], r[6];
			for (int q = 0; q < 9; q++)
				gd[q] = g[q];
			/* t = G g: 6x3, column by column */
			for (int s = 0; s < 3; s++) {
				wino_g(gd + s, 3, r);
				for (int q = 0; q < 6; q++)
					t[q * 3 + s] = r[q];
			}
			/* (G g) G^T: each row of t through G */
			for (int q = 0; q < 6; q++) {
				col[0] = t[q * 3];
				col[1] = t[q * 3 + 1];
				col[2] = t[q * 3 + 2];
				wino_g(col, 1, r);
				for (int s = 0; s < 6; s++)
					u[(size_t)(q * 6 + s) * kc + (size_t)o * c + i] =
					    (float)r[s];
			}
		}
	return 0;
}

static long wino_tiles(int n, int oh, int ow)
{
	return (long)n * ((oh + 3) / 4) * ((ow + 3) / 4);
}

static atomic_long wino_budget = USV_WINO_CHUNK_FLOATS;

void usv__wino_set_chunk_floats(long floats)
{
	atomic_store(&wino_budget, floats > 0 ? floats : USV_WINO_CHUNK_FLOATS);
}

static long wino_chunk(int n, int c, int k, int oh, int ow)
{
	long total = wino_tiles(n, oh, ow);
	long per = 36L * ((long)c + k);
	long tc = atomic_load(&wino_budget) / per / 16 * 16;

	if (tc < WINO_MIN_CHUNK)
		tc = WINO_MIN_CHUNK;
	if (tc > total)
		tc = total;
	return tc;
}

size_t usv__wino_workspace_floats(int n, int c, int k, int oh, int ow)
{
	if (n <= 0 || c <= 0 || k <= 0 || oh <= 0 || ow <= 0 || c > WINO_MAX_DIM ||
	    k > WINO_MAX_DIM || oh > WINO_MAX_DIM || ow > WINO_MAX_DIM)
		return 0;
	long ldt = (wino_chunk(n, c, k, oh, ow) + 15) / 16 * 16;
	return (size_t)36 * ((size_t)c + (size_t)k) * (size_t)ldt;
}

/* Per-chunk description shared by the transforms. */
typedef struct wino_job {
	const usv_wino_args *a;
	int oh, ow, th, tw;
	long t_begin, t_end; /* global tile range of this chunk */
	long ldt;
	const float *in;
	float *out;
	float *v, *m;
} wino_job;

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

/* Input transform of one chunk: V[xi][ch][t - t_begin]. */
static inline __attribute__((always_inline)) void wino_input_impl(const wino_job *j)
{
	const usv_wino_args *a = j->a;
	const int c = a->c, h = a->h, w = a->w;
	const long plane = (long)h * w;
	const long per_img = (long)j->th * j->tw;
	const size_t xi_stride = (size_t)c * (size_t)j->ldt;
	float buf[36 * 16] __attribute__((aligned(64)));
	long off[16];
	int row0[16], col0[16], inner[16];

	for (long t0 = j->t_begin; t0 < j->t_end; t0 += 16) {
		int lanes = (int)(j->t_end - t0 < 16 ? j->t_end - t0 : 16);
		if (lanes < 16)
			memset(buf, 0, sizeof(buf));
		for (int l = 0; l < lanes; l++) {
			long t = t0 + l;
			long img = t / per_img, rem = t % per_img;
			int ti = (int)(rem / j->tw), tj = (int)(rem % j->tw);
			row0[l] = 4 * ti - a->pt;
			col0[l] = 4 * tj - a->pl;
			off[l] = img * c * plane;
			inner[l] =
			    row0[l] >= 0 && row0[l] + 6 <= h && col0[l] >= 0 && col0[l] + 6 <= w;
		}
		float *vdst = j->v + (t0 - j->t_begin);
		for (int ch = 0; ch < c; ch++) {
			for (int l = 0; l < lanes; l++) {
				const float *p = j->in + off[l] + ch * plane;
				if (inner[l]) {
					const float *q = p + (long)row0[l] * w + col0[l];
					for (int r = 0; r < 6; r++, q += w)
						for (int s = 0; s < 6; s++)
							buf[(r * 6 + s) * 16 + l] = q[s];
				} else {
					for (int r = 0; r < 6; r++) {
						int y = row0[l] + r;
						for (int s = 0; s < 6; s++) {
							int x = col0[l] + s;
							buf[(r * 6 + s) * 16 + l] =
							    (y >= 0 && y < h && x >= 0 && x < w)
							        ? p[(long)y * w + x]
							        : 0.0f;
						}
					}
				}
			}
			v16 d[36], t[36];
			memcpy(d, buf, sizeof(d));
			for (int s = 0; s < 6; s++)
				WINO_BT(d + s, 6, t + s, 6);
			for (int r = 0; r < 6; r++)
				WINO_BT(t + r * 6, 1, d + r * 6, 1);
			float *dst = vdst + (size_t)ch * j->ldt;
			for (int xi = 0; xi < 36; xi++)
				memcpy(dst + xi * xi_stride, &d[xi], sizeof(v16));
		}
	}
}

/* Output transform of one chunk with bias and activation. */
static inline __attribute__((always_inline)) void wino_output_impl(const wino_job *j)
{
	const usv_wino_args *a = j->a;
	const int k = a->k, oh = j->oh, ow = j->ow;
	const long oplane = (long)oh * ow;
	const long per_img = (long)j->th * j->tw;
	const size_t xi_stride = (size_t)k * (size_t)j->ldt;
	float buf[16 * 16] __attribute__((aligned(64)));
	long off[16];
	int row0[16], col0[16];

	for (long t0 = j->t_begin; t0 < j->t_end; t0 += 16) {
		int lanes = (int)(j->t_end - t0 < 16 ? j->t_end - t0 : 16);
		for (int l = 0; l < lanes; l++) {
			long t = t0 + l;
			long img = t / per_img, rem = t % per_img;
			row0[l] = 4 * (int)(rem / j->tw);
			col0[l] = 4 * (int)(rem % j->tw);
			off[l] = img * k * oplane;
		}
		const float *msrc = j->m + (t0 - j->t_begin);
		for (int o = 0; o < k; o++) {
			v16 mm[36], t[24], y[16];
			const float *src = msrc + (size_t)o * j->ldt;
			for (int xi = 0; xi < 36; xi++)
				memcpy(&mm[xi], src + xi * xi_stride, sizeof(v16));
			for (int s = 0; s < 6; s++)
				WINO_AT(mm + s, 6, t + s, 6);
			for (int r = 0; r < 4; r++)
				WINO_AT(t + r * 6, 1, y + r * 4, 1);
			float b = a->bias ? a->bias[o] : 0.0f;
			for (int q = 0; q < 16; q++) {
				y[q] += b;
				if (a->act == USV_ACT_RELU || a->act == USV_ACT_RELU6) {
					v16i pos = y[q] > 0.0f;
					y[q] = (v16)((v16i)y[q] & pos);
				}
				if (a->act == USV_ACT_RELU6) {
					v16i lo = y[q] < 6.0f;
					v16 six = y[q] * 0.0f + 6.0f;
					y[q] = (v16)(((v16i)y[q] & lo) | ((v16i)six & ~lo));
				}
			}
			memcpy(buf, y, sizeof(buf));
			for (int l = 0; l < lanes; l++) {
				float *dst = j->out + off[l] + o * oplane;
				int nr = oh - row0[l] < 4 ? oh - row0[l] : 4;
				int ns = ow - col0[l] < 4 ? ow - col0[l] : 4;
				for (int r = 0; r < nr; r++) {
					float *drow = dst + (long)(row0[l] + r) * ow + col0[l];
					for (int s = 0; s < ns; s++)
						drow[s] = buf[(r * 4 + s) * 16 + l];
				}
			}
		}
	}
}

static void wino_input_generic(const wino_job *j)
{
	wino_input_impl(j);
}

static void wino_output_generic(const wino_job *j)
{
	wino_output_impl(j);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,fma"))) static void wino_input_avx512(const wino_job *j)
{
	wino_input_impl(j);
}

__attribute__((target("avx512f,fma"))) static void wino_output_avx512(const wino_job *j)
{
	wino_output_impl(j);
}
#define WINO_HAVE_AVX512 1
#endif

int usv__wino_conv(const usv_wino_args *a, const float *in, float *out, float *ws, size_t ws_floats)
{
	if (!a || !in || !out || !ws || !a->u || a->n <= 0 || a->c <= 0 || a->k <= 0 || a->h <= 0 ||
	    a->w <= 0 || a->pt < 0 || a->pb < 0 || a->pl < 0 || a->pr < 0 || a->h > WINO_MAX_DIM ||
	    a->w > WINO_MAX_DIM || a->pt > 8 || a->pb > 8 || a->pl > 8 || a->pr > 8)
		return -EINVAL;
	int oh = a->h + a->pt + a->pb - 2, ow = a->w + a->pl + a->pr - 2;
	if (oh <= 0 || ow <= 0)
		return -EINVAL;
	if (ws_floats < usv__wino_workspace_floats(a->n, a->c, a->k, oh, ow))
		return -EINVAL;

	void (*input)(const wino_job *) = wino_input_generic;
	void (*output)(const wino_job *) = wino_output_generic;
#ifdef WINO_HAVE_AVX512
	if (usv__cpu_has_avx512()) {
		input = wino_input_avx512;
		output = wino_output_avx512;
	}
#endif
	long total = wino_tiles(a->n, oh, ow);
	long chunk = wino_chunk(a->n, a->c, a->k, oh, ow);
	long ldt = (chunk + 15) / 16 * 16;
	wino_job j = {
	    .a = a,
	    .oh = oh,
	    .ow = ow,
	    .th = (oh + 3) / 4,
	    .tw = (ow + 3) / 4,
	    .ldt = ldt,
	    .in = in,
	    .out = out,
	    .v = ws,
	    .m = ws + (size_t)36 * a->c * ldt,
	};
	for (long t = 0; t < total; t += chunk) {
		j.t_begin = t;
		j.t_end = t + chunk < total ? t + chunk : total;
		int nt = (int)(j.t_end - j.t_begin);
		input(&j);
		for (int xi = 0; xi < 36; xi++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->k, nt, a->c, 1.0f,
			            a->u + (size_t)xi * a->k * a->c, a->c,
			            j.v + (size_t)xi * a->c * ldt, (int)ldt, 0.0f,
			            j.m + (size_t)xi * a->k * ldt, (int)ldt);
		output(&j);
	}
	return 0;
}
