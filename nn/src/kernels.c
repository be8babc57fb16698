/*
 * NAME
 *	kernels.c - reference-quality fast kernels of the CNN engine
 *
 * DESCRIPTION
 *	Convolution: im2col + cblas_sgemm per image and group (a 1x1 stride-1
 *	unpadded convolution multiplies the input directly); depthwise
 *	convolution (group == channels == outputs): a direct kernel on
 *	zero-padded phase planes (see conv_depthwise()). Inner
 *	product: cblas_sgemv at batch 1, one cblas_sgemm (W * X^T) at batch > 1.
 *	Bias and activation are applied in one pass after each product.
 *	Pooling follows Caffe for explicit padding (ceil rounding decided at
 *	shape inference, average over the window clipped to the padded
 *	extent) and TensorFlow for SAME/VALID (average over valid taps only).
 *	LRN across channels keeps a running sum of squares over the window.
 */
#include "kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

/* Hot element loops get AVX-512 and AVX2 clones chosen at load time (the
 * binary stays generic x86-64); elsewhere the plain version. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define USV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define USV_CLONES
#endif

USV_CLONES void usv__act(float *x, size_t n, usv_act act)
{
	if (act == USV_ACT_RELU) {
		for (size_t i = 0; i < n; i++)
			x[i] = x[i] > 0.0f ? x[i] : 0.0f;
	} else if (act == USV_ACT_RELU6) {
		for (size_t i = 0; i < n; i++) {
			float v = x[i] > 0.0f ? x[i] : 0.0f;
			x[i] = v < 6.0f ? v : 6.0f;
		}
	}
}

/* y[c][0..hw) += bias[c], then activation, in one pass. */
static _Thread_local const usv_exec *cur_exec;
static const usv_exec serial_exec = {NULL, 1, NULL, 0};

const usv_exec *usv__exec(void)
{
	return cur_exec ? cur_exec : &serial_exec;
}

void usv__set_exec(const usv_exec *ex)
{
	cur_exec = ex;
}

static int imin(int a, int b)
{
	return a < b ? a : b;
}

/* Splits `total` units into about `parts` chunks of a multiple of `align`. */
static int chunk_of(int total, int parts, int align)
{
	int c = (total + parts - 1) / parts;
	c = (c + align - 1) / align * align;
	return c < 1 ? 1 : c;
}

/* y[r][0..cols) (row stride ld) += bias[r], then activation, in one pass. */
USV_CLONES static void bias_act_ld(float *y, const float *bias, int rows, int cols, size_t ld,
                                   usv_act act)
{
	for (int k = 0; k < rows; k++) {
		float *p = y + (size_t)k * ld;
		float b = bias ? bias[k] : 0.0f;
		if (act == USV_ACT_RELU) {
			for (int i = 0; i < cols; i++) {
				float v = p[i] + b;
				p[i] = v > 0.0f ? v : 0.0f;
			}
		} else if (act == USV_ACT_RELU6) {
			for (int i = 0; i < cols; i++) {
				float v = p[i] + b;
				v = v > 0.0f ? v : 0.0f;
				p[i] = v < 6.0f ? v : 6.0f;
			}
		} else if (bias) {
			for (int i = 0; i < cols; i++)
				p[i] += b;
		}
	}
}

static void bias_act(float *y, const float *bias, int c, size_t hw, usv_act act)
{
	bias_act_ld(y, bias, c, (int)hw, hw, act);
}
/* ---------------- convolution ---------------- */

/* col[(c*kh + i)*kw + j][oh*ow] = x[c][oy*sh - pt + i][ox*sw - pl + j] or 0,
 * rows [r0, r1) written from col on (row r at col + (r - r0) * oh * ow). */
USV_CLONES void usv__im2col_rows(const float *x, const usv_mlayer *L, int r0, int r1, float *col)
{
	const usv_geom *g = &L->g;
	const int kh = L->def.kernel_h, kw = L->def.kernel_w;
	const int sh = L->def.stride_h, sw = L->def.stride_w;
	const int ih = g->ih, iw = g->iw, oh = g->h, ow = g->w;
	for (int r = r0; r < r1; r++) {
		const int c = r / (kh * kw), i = r / kw % kh, j = r % kw;
		const float *xc = x + (size_t)c * ih * iw;
		float *dst = col + (size_t)(r - r0) * oh * ow;
		/* output columns whose input column is inside [0, iw) */
		int lo = 0, hi = ow;
		while (lo < ow && lo * sw - g->pl + j < 0)
			lo++;
		while (hi > lo && (hi - 1) * sw - g->pl + j >= iw)
			hi--;
		for (int y = 0; y < oh; y++, dst += ow) {
			int yy = y * sh - g->pt + i;
			if (yy < 0 || yy >= ih) {
				memset(dst, 0, (size_t)ow * sizeof(float));
				continue;
			}
			const float *src = xc + (size_t)yy * iw - g->pl + j;
			for (int x0 = 0; x0 < lo; x0++)
				dst[x0] = 0.0f;
			if (sw == 1) {
				memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
			} else {
				for (int x0 = lo; x0 < hi; x0++)
					dst[x0] = src[x0 * sw];
			}
			for (int x0 = hi; x0 < ow; x0++)
				dst[x0] = 0.0f;
		}
	}
}
int usv__conv_is_1x1(const usv_mlayer *L)
{
	const usv_layer_def *d = &L->def;
	return d->kernel_h == 1 && d->kernel_w == 1 && d->stride_h == 1 && d->stride_w == 1 &&
	       L->g.pt == 0 && L->g.pb == 0 && L->g.pl == 0 && L->g.pr == 0;
}

static size_t conv_gemm_scratch(const usv_mlayer *L, int max_batch)
{
	if (usv__conv_is_1x1(L))
		return 0;
	return (size_t)L->g.ic * L->def.kernel_h * L->def.kernel_w * L->g.h * L->g.w;
}

struct conv_ctx {
	const usv_mlayer *L;
	usv_act act;
	const float *x;
	float *y;
	const float *col;
	float *colw;
	int M, N, K, rchunk, nmb, nnb, mblk, nblk;
};

static void im2col_task(void *p, int t, int th)
{
	(void)th;
	struct conv_ctx *c = p;
	int rows = c->L->g.ic * c->L->def.kernel_h * c->L->def.kernel_w;
	int r0 = t * c->rchunk;
	usv__im2col_rows(c->x, c->L, r0, imin(rows, r0 + c->rchunk),
	                 c->colw + (size_t)r0 * c->L->g.h * c->L->g.w);
}

static void conv_gemm_task(void *p, int t, int th)
{
	(void)th;
	struct conv_ctx *c = p;
	const usv_mlayer *L = c->L;
	int per_g = c->nmb * c->nnb;
	int g = t / per_g, r = t % per_g, mb = r / c->nnb, nb = r % c->nnb;
	int m0 = mb * c->mblk, m1 = imin(c->M, m0 + c->mblk);
	int n0 = nb * c->nblk, n1 = imin(c->N, n0 + c->nblk);
	if (m0 >= m1 || n0 >= n1)
		return;
	const size_t N = (size_t)c->N, K = (size_t)c->K;
	float *C = c->y + ((size_t)g * c->M + m0) * N + n0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1 - m0, n1 - n0, c->K, 1.0f,
	            L->weight + ((size_t)g * c->M + m0) * K, c->K, c->col + (size_t)g * K * N + n0,
	            c->N, 0.0f, C, c->N);
	bias_act_ld(C, L->bias ? L->bias + (size_t)g * c->M + m0 : NULL, m1 - m0, n1 - n0, N,
	            c->act);
}

/* im2col (unless 1x1) and one GEMM per group; with T threads the
 * groups, and within a group the larger of M and N, are split into tasks. */
static void conv_gemm(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                      float *scratch)
{
	const usv_exec *ex = usv__exec();
	const usv_geom *g = &L->g;
	const int grp = L->def.group, T = ex->nthreads;
	struct conv_ctx c = {.L = L, .act = act};
	c.M = g->c / grp;
	c.N = g->h * g->w;
	c.K = g->ic / grp * L->def.kernel_h * L->def.kernel_w;
	c.nmb = c.nnb = 1;
	c.mblk = c.M, c.nblk = c.N;
	if (grp < T) {
		int want = (T + grp - 1) / grp;
		if (c.N >= c.M) {
			c.nblk = chunk_of(c.N, want, 16);
			c.nnb = (c.N + c.nblk - 1) / c.nblk;
		} else {
			c.mblk = chunk_of(c.M, want, 8);
			c.nmb = (c.M + c.mblk - 1) / c.mblk;
		}
	}
	const int one = usv__conv_is_1x1(L);
	const int rows = g->ic * L->def.kernel_h * L->def.kernel_w;
	c.rchunk = chunk_of(rows, 4 * T, 1);
	for (int b = 0; b < n; b++) {
		c.x = in[0] + (size_t)b * g->ic * g->ih * g->iw;
		c.y = out + (size_t)b * g->c * c.N;
		c.col = c.x;
		if (!one) {
			c.colw = scratch;
			c.col = scratch;
			usv__pool_run(ex->pool, (rows + c.rchunk - 1) / c.rchunk, im2col_task, &c);
		}
		usv__pool_run(ex->pool, grp * c.nmb * c.nnb, conv_gemm_task, &c);
	}
}
/* Depthwise: one kh x kw filter per channel. Each plane is first copied,
 * with its zero padding, into the thread's scratch as sw phase planes
 * P_q[r][k] = x[r - pt][k * sw + q - pl] (Hp x Wq each), so that output
 * (oy, ox) reads tap (i, j) at P_{j % sw}[oy * sh + i][ox + j / sw]: every
 * tap is a contiguous run without bounds checks. With stride 1 in both
 * directions the plane is computed as one flat run of (oh - 1) * Wq + ow
 * outputs (row pitch Wq, the kw - 1 extra columns per row discarded), which
 * keeps the vector lanes full on 7x7 and 14x14 planes; otherwise row by
 * row. 3x3 filters (MobileNet's) have one pass over the output, other
 * sizes one pass per tap. */
struct dw_shape {
	int Hp, Wq, flat;
};

static struct dw_shape dw_shape_of(const usv_mlayer *L)
{
	const int sh = L->def.stride_h, sw = L->def.stride_w;
	struct dw_shape s;
	s.Hp = (L->g.h - 1) * sh + L->def.kernel_h;
	s.Wq = L->g.w + (L->def.kernel_w - 1) / sw;
	s.flat = sh == 1 && sw == 1;
	return s;
}

static size_t dw_tscratch(const usv_mlayer *L)
{
	struct dw_shape s = dw_shape_of(L);
	size_t planes = (size_t)L->def.stride_w * s.Hp * s.Wq;
	return planes + (s.flat ? (size_t)L->g.h * s.Wq : 0) + 16;
}

/* d[p] = b + sum of the 3x3 taps, stride 1: tap (i, j) at x[p + i*ld + j] */
USV_CLONES static void dw3_s1(float *restrict d, int len, const float *restrict x, int ld,
                              const float *w, float b)
{
	const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
	            w7 = w[7], w8 = w[8];
	const float *restrict r0 = x, *restrict r1 = x + ld, *restrict r2 = x + 2 * (size_t)ld;
	for (int p = 0; p < len; p++)
		d[p] = b + w0 * r0[p] + w1 * r0[p + 1] + w2 * r0[p + 2] + w3 * r1[p] +
		       w4 * r1[p + 1] + w5 * r1[p + 2] + w6 * r2[p] + w7 * r2[p + 1] +
		       w8 * r2[p + 2];
}

/* The same with horizontal stride 2: column phases e (even) and o (odd). */
USV_CLONES static void dw3_s2(float *restrict d, int len, const float *restrict e,
                              const float *restrict o, int ld, const float *w, float b)
{
	const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
	            w7 = w[7], w8 = w[8];
	const size_t l1 = (size_t)ld, l2 = 2 * (size_t)ld;
	for (int p = 0; p < len; p++)
		d[p] = b + w0 * e[p] + w1 * o[p] + w2 * e[p + 1] + w3 * e[l1 + p] + w4 * o[l1 + p] +
		       w5 * e[l1 + p + 1] + w6 * e[l2 + p] + w7 * o[l2 + p] + w8 * e[l2 + p + 1];
}

/* Any filter: d[p] = b, then one pass per tap. P: the sw phase planes,
 * each of pitch ld and size psz; row0: the first input row. */
USV_CLONES static void dw_generic(float *restrict d, int len, const float *P, size_t psz, int row0,
                                  int ld, const usv_mlayer *L, const float *w, float b)
{
	const int kh = L->def.kernel_h, kw = L->def.kernel_w, sw = L->def.stride_w;
	for (int p = 0; p < len; p++)
		d[p] = b;
	for (int i = 0; i < kh; i++)
		for (int j = 0; j < kw; j++) {
			const float *restrict s =
			    P + (size_t)(j % sw) * psz + (size_t)(row0 + i) * ld + j / sw;
			const float wv = w[i * kw + j];
			for (int p = 0; p < len; p++)
				d[p] += wv * s[p];
		}
}

/* Copies plane x (ih x iw) into the sw phase planes with zero padding. */
static void dw_fill(float *P, const float *x, const usv_mlayer *L, struct dw_shape s)
{
	const usv_geom *g = &L->g;
	const int sw = L->def.stride_w, ih = g->ih, iw = g->iw;
	for (int q = 0; q < sw; q++) {
		float *Pq = P + (size_t)q * s.Hp * s.Wq;
		/* columns k with 0 <= k*sw + q - pl < iw: [lo, hi) */
		int lo = 0, hi = s.Wq;
		while (lo < s.Wq && lo * sw + q - g->pl < 0)
			lo++;
		while (hi > lo && (hi - 1) * sw + q - g->pl >= iw)
			hi--;
		for (int r = 0; r < s.Hp; r++) {
			float *dst = Pq + (size_t)r * s.Wq;
			const int yy = r - g->pt;
			if (yy < 0 || yy >= ih || lo >= hi) {
				memset(dst, 0, (size_t)s.Wq * sizeof(float));
				continue;
			}
			const float *src = x + (size_t)yy * iw + q - g->pl;
			for (int k = 0; k < lo; k++)
				dst[k] = 0.0f;
			if (sw == 1)
				memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
			else
				for (int k = lo; k < hi; k++)
					dst[k] = src[(size_t)k * sw];
			for (int k = hi; k < s.Wq; k++)
				dst[k] = 0.0f;
		}
	}
}

struct plane_ctx {
	const usv_mlayer *L;
	const usv_exec *ex; /* depthwise: the thread scratch */
	usv_act act;
	const float *const *in;
	float *out;
	float *aux;
	int n, chunk, total;
};

static void depthwise_task(void *p, int t, int th)
{
	struct plane_ctx *pc = p;
	const usv_mlayer *L = pc->L;
	const usv_geom *g = &L->g;
	const int kh = L->def.kernel_h, kw = L->def.kernel_w;
	const int sh = L->def.stride_h, sw = L->def.stride_w;
	const int oh = g->h, ow = g->w, C = g->c;
	const struct dw_shape s = dw_shape_of(L);
	const size_t psz = (size_t)s.Hp * s.Wq;
	float *P = pc->ex->tscratch + (size_t)th * pc->ex->tscratch_stride;
	float *acc = P + (size_t)sw * psz;
	const int is3 = kh == 3 && kw == 3;
	int p0 = t * pc->chunk, p1 = imin(pc->total, p0 + pc->chunk);
	for (int pl = p0; pl < p1; pl++) {
		const int c = pl % C;
		const float *x = pc->in[0] + (size_t)pl * g->ih * g->iw;
		float *y = pc->out + (size_t)pl * oh * ow;
		const float *w = L->weight + (size_t)c * kh * kw;
		const float bv = L->bias ? L->bias[c] : 0.0f;
		dw_fill(P, x, L, s);
		if (s.flat) {
			const int len = (oh - 1) * s.Wq + ow;
			if (is3)
				dw3_s1(acc, len, P, s.Wq, w, bv);
			else
				dw_generic(acc, len, P, psz, 0, s.Wq, L, w, bv);
			for (int oy = 0; oy < oh; oy++)
				memcpy(y + (size_t)oy * ow, acc + (size_t)oy * s.Wq,
				       (size_t)ow * sizeof(float));
		} else {
			for (int oy = 0; oy < oh; oy++) {
				float *d = y + (size_t)oy * ow;
				const size_t r0 = (size_t)oy * sh * s.Wq;
				if (is3 && sw == 2)
					dw3_s2(d, ow, P + r0, P + psz + r0, s.Wq, w, bv);
				else if (is3 && sw == 1)
					dw3_s1(d, ow, P + r0, s.Wq, w, bv);
				else
					dw_generic(d, ow, P, psz, oy * sh, s.Wq, L, w, bv);
			}
		}
		usv__act(y, (size_t)oh * ow, pc->act);
	}
}

/* Depthwise: planes (image, channel) split over threads. */
static void conv_depthwise(const usv_mlayer *L, usv_act act, const float *const *in, float *out,
                           int n, float *scratch)
{
	(void)scratch;
	const usv_exec *ex = usv__exec();
	struct plane_ctx pc = {.L = L, .ex = ex, .act = act, .in = in, .out = out, .n = n};
	pc.total = n * L->g.c;
	pc.chunk = chunk_of(pc.total, 4 * ex->nthreads, 1);
	usv__pool_run(ex->pool, (pc.total + pc.chunk - 1) / pc.chunk, depthwise_task, &pc);
}
/* ---------------- inner product ---------------- */

static size_t fc_scratch(const usv_mlayer *L, int max_batch)
{
	return max_batch > 1 ? (size_t)L->g.c * max_batch : 0;
}

struct fc_ctx {
	const usv_mlayer *L;
	usv_act act;
	const float *x;
	float *y, *tmp;
	int n, O, NI, chunk;
};

static void fc_task(void *p, int t, int th)
{
	(void)th;
	struct fc_ctx *c = p;
	const usv_mlayer *L = c->L;
	int o0 = t * c->chunk, o1 = imin(c->O, o0 + c->chunk);
	if (o0 >= o1)
		return;
	const float *W = L->weight + (size_t)o0 * c->NI;
	const float *bias = L->bias ? L->bias + o0 : NULL;
	if (c->n == 1) {
		cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, c->NI, 1.0f, W, c->NI, c->x, 1,
		            0.0f, c->y + o0, 1);
		bias_act_ld(c->y + o0, bias, o1 - o0, 1, 1, c->act);
		return;
	}
	/* T[o][b] = W[o] . X[b], then out[b][o] = T[o][b] + bias[o] */
	float *T = c->tmp + (size_t)o0 * c->n;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o1 - o0, c->n, c->NI, 1.0f, W, c->NI,
	            c->x, c->NI, 0.0f, T, c->n);
	bias_act_ld(T, bias, o1 - o0, c->n, (size_t)c->n, c->act);
	for (int b = 0; b < c->n; b++) {
		float *yb = c->y + (size_t)b * c->O;
		for (int o = o0; o < o1; o++)
			yb[o] = T[(size_t)(o - o0) * c->n + b];
	}
}

/* Batch 1: GEMV; batch > 1: one GEMM W * X^T (the weights are the large
 * operand); output rows split over threads. */
static void fc_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                   float *scratch)
{
	const usv_exec *ex = usv__exec();
	struct fc_ctx c = {.L = L, .act = act, .x = in[0], .y = out, .tmp = scratch, .n = n};
	c.O = L->g.c;
	c.NI = L->g.ic * L->g.ih * L->g.iw;
	c.chunk = chunk_of(c.O, ex->nthreads, 16);
	usv__pool_run(ex->pool, (c.O + c.chunk - 1) / c.chunk, fc_task, &c);
}
/* Columns [o0, o1) of out = X * W^T: one single-threaded GEMM per task. */
static void fc_xwt_task(void *p, int t, int th)
{
	(void)th;
	struct fc_ctx *c = p;
	const usv_mlayer *L = c->L;
	int o0 = t * c->chunk, o1 = imin(c->O, o0 + c->chunk);
	if (o0 >= o1)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->n, o1 - o0, c->NI, 1.0f, c->x,
	            c->NI, L->weight + (size_t)o0 * c->NI, c->NI, 0.0f, c->y + o0, c->O);
	for (int b = 0; b < c->n; b++)
		bias_act(c->y + (size_t)b * c->O + o0, L->bias ? L->bias + o0 : NULL, o1 - o0, 1,
		         c->act);
}

/* X * W^T straight into the output: an alternative for batch > 1; the
 * output columns are split over the threads. */
static void fc_run_xwt(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                       float *scratch)
{
	if (n == 1) {
		fc_run(L, act, in, out, n, scratch);
		return;
	}
	const usv_exec *ex = usv__exec();
	struct fc_ctx c = {.L = L, .act = act, .x = in[0], .y = out, .n = n};
	c.O = L->g.c;
	c.NI = L->g.ic * L->g.ih * L->g.iw;
	c.chunk = chunk_of(c.O, ex->nthreads, 16);
	usv__pool_run(ex->pool, (c.O + c.chunk - 1) / c.chunk, fc_xwt_task, &c);
}

/* ---------------- pooling ---------------- */

#define USV_POOL_ROW_MAX 2048

USV_CLONES static void maxpool_task(void *p, int t, int th)
{
	(void)th;
	struct plane_ctx *pc = p;
	const usv_mlayer *L = pc->L;
	const usv_geom *g = &L->g;
	const int kh = L->def.kernel_h, kw = L->def.kernel_w;
	const int sh = L->def.stride_h, sw = L->def.stride_w;
	const int ih = g->ih, iw = g->iw, oh = g->h, ow = g->w;
	int p0 = t * pc->chunk, p1 = imin(pc->total, p0 + pc->chunk);
	/* rows of the window reduced first (a vector loop over the row), then
	 * the columns of the one reduced row */
	float rowmax[USV_POOL_ROW_MAX];
	const int by_rows = iw <= USV_POOL_ROW_MAX;
	for (int pl = p0; pl < p1; pl++) {
		const float *x = pc->in[0] + (size_t)pl * ih * iw;
		float *y = pc->out + (size_t)pl * oh * ow;
		for (int oy = 0; oy < oh; oy++) {
			int y0 = oy * sh - g->pt, y1 = y0 + kh;
			if (y0 < 0)
				y0 = 0;
			if (y1 > ih)
				y1 = ih;
			if (by_rows && y1 > y0) {
				const float *r0 = x + (size_t)y0 * iw;
				for (int xx = 0; xx < iw; xx++)
					rowmax[xx] = r0[xx];
				for (int yy = y0 + 1; yy < y1; yy++) {
					const float *r = x + (size_t)yy * iw;
					for (int xx = 0; xx < iw; xx++)
						rowmax[xx] =
						    r[xx] > rowmax[xx] ? r[xx] : rowmax[xx];
				}
				float *yr = y + (size_t)oy * ow;
				int ox = 0;
				/* the common 2x2 / 2 and 3x3 / 2 windows away from the edges */
				if (sw == 2 && g->pl == 0 && kw == 2)
					for (; ox < ow && 2 * ox + 1 < iw; ox++)
						yr[ox] = rowmax[2 * ox] > rowmax[2 * ox + 1]
						             ? rowmax[2 * ox]
						             : rowmax[2 * ox + 1];
				else if (sw == 2 && g->pl == 0 && kw == 3)
					for (; ox < ow && 2 * ox + 2 < iw; ox++) {
						float a = rowmax[2 * ox], b = rowmax[2 * ox + 1],
						      c = rowmax[2 * ox + 2];
						float m = a > b ? a : b;
						yr[ox] = m > c ? m : c;
					}
				for (; ox < ow; ox++) {
					int x0 = ox * sw - g->pl, x1 = x0 + kw;
					if (x0 < 0)
						x0 = 0;
					if (x1 > iw)
						x1 = iw;
					float m = -FLT_MAX;
					for (int xx = x0; xx < x1; xx++)
						m = rowmax[xx] > m ? rowmax[xx] : m;
					yr[ox] = m;
				}
				continue;
			}
			for (int ox = 0; ox < ow; ox++) {
				int x0 = ox * sw - g->pl, x1 = x0 + kw;
				if (x0 < 0)
					x0 = 0;
				if (x1 > iw)
					x1 = iw;
				float m = -FLT_MAX;
				for (int yy = y0; yy < y1; yy++) {
					const float *r = x + (size_t)yy * iw;
					for (int xx = x0; xx < x1; xx++)
						m = r[xx] > m ? r[xx] : m;
				}
				y[(size_t)oy * ow + ox] = m;
			}
		}
	}
}

static void run_planes(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                       usv_task_fn fn)
{
	const usv_exec *ex = usv__exec();
	struct plane_ctx pc = {.L = L, .act = act, .in = in, .out = out, .n = n};
	pc.total = n * L->g.c;
	pc.chunk = chunk_of(pc.total, 4 * ex->nthreads, 1);
	usv__pool_run(ex->pool, (pc.total + pc.chunk - 1) / pc.chunk, fn, &pc);
}

static void maxpool(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                    float *scratch)
{
	(void)scratch;
	run_planes(L, act, in, out, n, maxpool_task);
}
USV_CLONES static void avepool_task(void *p, int t, int th)
{
	(void)th;
	struct plane_ctx *pc = p;
	const usv_mlayer *L = pc->L;
	const usv_geom *g = &L->g;
	const int kh = L->def.kernel_h, kw = L->def.kernel_w;
	const int sh = L->def.stride_h, sw = L->def.stride_w;
	const int ih = g->ih, iw = g->iw, oh = g->h, ow = g->w;
	const int caffe = L->def.pad_mode == USV_PAD_EXPLICIT;
	int p0 = t * pc->chunk, p1 = imin(pc->total, p0 + pc->chunk);
	for (int pl = p0; pl < p1; pl++) {
		const float *x = pc->in[0] + (size_t)pl * ih * iw;
		float *y = pc->out + (size_t)pl * oh * ow;
		for (int oy = 0; oy < oh; oy++) {
			int y0 = oy * sh - g->pt, y1 = y0 + kh;
			int py1 = y1 < ih + g->pb ? y1 : ih + g->pb;
			int ph = py1 - y0;
			if (y0 < 0)
				y0 = 0;
			if (y1 > ih)
				y1 = ih;
			for (int ox = 0; ox < ow; ox++) {
				int x0 = ox * sw - g->pl, x1 = x0 + kw;
				int px1 = x1 < iw + g->pr ? x1 : iw + g->pr;
				int pw = px1 - x0;
				if (x0 < 0)
					x0 = 0;
				if (x1 > iw)
					x1 = iw;
				float s = 0.0f;
				for (int yy = y0; yy < y1; yy++) {
					const float *r = x + (size_t)yy * iw;
					for (int xx = x0; xx < x1; xx++)
						s += r[xx];
				}
				int cnt = caffe ? ph * pw : (y1 - y0) * (x1 - x0);
				y[(size_t)oy * ow + ox] = cnt > 0 ? s / (float)cnt : 0.0f;
			}
		}
	}
}

static void avepool(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                    float *scratch)
{
	(void)scratch;
	run_planes(L, act, in, out, n, avepool_task);
}
static void global_avepool(const usv_mlayer *L, usv_act act, const float *const *in, float *out,
                           int n, float *scratch)
{
	(void)act, (void)scratch;
	const size_t hw = (size_t)L->g.ih * L->g.iw;
	for (size_t p = 0; p < (size_t)n * L->g.c; p++) {
		const float *x = in[0] + p * hw;
		float s = 0.0f;
		for (size_t i = 0; i < hw; i++)
			s += x[i];
		out[p] = s / (float)hw;
	}
}

/* ---------------- element-wise and the rest ---------------- */

static size_t blob_per_image(const usv_mlayer *L)
{
	return (size_t)L->g.c * L->g.h * L->g.w;
}

static void copy_or_act(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                        float *scratch)
{
	(void)scratch;
	size_t cnt = (size_t)n * blob_per_image(L);
	if (out != in[0])
		memcpy(out, in[0], cnt * sizeof(float));
	usv__act(out, cnt, act);
}

static void relu_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                     float *scratch)
{
	(void)act;
	copy_or_act(L, L->def.type == USV_LAYER_RELU6 ? USV_ACT_RELU6 : USV_ACT_RELU, in, out, n,
	            scratch);
}

static void add_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                    float *scratch)
{
	(void)scratch;
	size_t cnt = (size_t)n * blob_per_image(L);
	const float *a = in[0];
	for (int k = 1; k < L->def.n_inputs; k++) {
		const float *b = in[k];
		for (size_t i = 0; i < cnt; i++)
			out[i] = a[i] + b[i];
		a = out;
	}
	if (L->def.n_inputs == 1 && out != in[0])
		memcpy(out, in[0], cnt * sizeof(float));
	usv__act(out, cnt, act);
}

static void concat_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                       float *scratch)
{
	(void)act, (void)scratch;
	const size_t hw = (size_t)L->g.h * L->g.w;
	for (int b = 0; b < n; b++) {
		float *dst = out + (size_t)b * L->g.c * hw;
		for (int k = 0; k < L->def.n_inputs; k++) {
			size_t cnt = (size_t)L->g.in_c[k] * hw;
			memcpy(dst, in[k] + (size_t)b * cnt, cnt * sizeof(float));
			dst += cnt;
		}
	}
}

static void softmax_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                        float *scratch)
{
	(void)act, (void)scratch;
	const int C = L->g.c;
	const size_t hw = (size_t)L->g.h * L->g.w;
	/* softmax(x / T) = exp((x - max) / T) / sum: the same shift keeps
	 * every exponent <= 0; with T = 1 the product is exact */
	const float inv_t = L->temperature > 0 ? 1.0f / L->temperature : 1.0f;
	for (int b = 0; b < n; b++) {
		const float *x = in[0] + (size_t)b * C * hw;
		float *y = out + (size_t)b * C * hw;
		for (size_t p = 0; p < hw; p++) {
			float mx = -FLT_MAX;
			for (int c = 0; c < C; c++)
				mx = x[c * hw + p] > mx ? x[c * hw + p] : mx;
			double s = 0;
			for (int c = 0; c < C; c++) {
				float e = expf((x[c * hw + p] - mx) * inv_t);
				y[c * hw + p] = e;
				s += e;
			}
			float inv = (float)(1.0 / s);
			for (int c = 0; c < C; c++)
				y[c * hw + p] *= inv;
		}
	}
}

static size_t lrn_scratch(const usv_mlayer *L, int max_batch)
{
	(void)L, (void)max_batch;
	return 0;
}
struct lrn_ctx {
	const usv_mlayer *L;
	const usv_exec *ex; /* the caller's: usv__exec() is per thread */
	const float *in;
	float *out;
	int nchunks, chunk;
};

USV_CLONES static void lrn_task(void *p, int t, int th)
{
	struct lrn_ctx *lc = p;
	const usv_mlayer *L = lc->L;
	const usv_exec *ex = lc->ex;
	const int C = L->g.c, half = L->def.local_size / 2;
	const size_t hw = (size_t)L->g.h * L->g.w;
	const float a = L->def.alpha / (float)L->def.local_size, k = L->def.k, beta = L->def.beta;
	const int b75 = beta == 0.75f;
	int b = t / lc->nchunks;
	size_t q0 = (size_t)(t % lc->nchunks) * lc->chunk;
	size_t q1 = q0 + (size_t)lc->chunk < hw ? q0 + (size_t)lc->chunk : hw;
	if (q0 >= q1)
		return;
	const size_t m = q1 - q0;
	float *acc = ex->tscratch + (size_t)th * ex->tscratch_stride;
	const float *x = lc->in + (size_t)b * C * hw + q0;
	float *y = lc->out + (size_t)b * C * hw + q0;
	memset(acc, 0, m * sizeof(float));
	for (int c = 0; c < half && c < C; c++) {
		const float *xc = x + (size_t)c * hw;
		for (size_t i = 0; i < m; i++)
			acc[i] += xc[i] * xc[i];
	}
	for (int c = 0; c < C; c++) {
		if (c + half < C) {
			const float *xa = x + (size_t)(c + half) * hw;
			for (size_t i = 0; i < m; i++)
				acc[i] += xa[i] * xa[i];
		}
		if (c - half - 1 >= 0) {
			const float *xr = x + (size_t)(c - half - 1) * hw;
			for (size_t i = 0; i < m; i++)
				acc[i] -= xr[i] * xr[i];
		}
		const float *xc = x + (size_t)c * hw;
		float *yc = y + (size_t)c * hw;
		if (b75) {
			for (size_t i = 0; i < m; i++) {
				float s = k + a * (acc[i] > 0.0f ? acc[i] : 0.0f);
				float r = 1.0f / sqrtf(s);
				yc[i] = xc[i] * r * sqrtf(r);
			}
		} else {
			for (size_t i = 0; i < m; i++) {
				float s = k + a * (acc[i] > 0.0f ? acc[i] : 0.0f);
				yc[i] = xc[i] * powf(s, -beta);
			}
		}
	}
}

static size_t lrn_thread_scratch(const usv_mlayer *L)
{
	return (size_t)L->g.h * L->g.w;
}

/* Running sum of squares over the channel window, per spatial chunk. */
static void lrn_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                    float *scratch)
{
	(void)act, (void)scratch;
	const usv_exec *ex = usv__exec();
	const int hw = L->g.h * L->g.w;
	struct lrn_ctx lc = {.L = L, .ex = ex, .in = in[0], .out = out};
	lc.chunk = chunk_of(hw, ex->nthreads, 16);
	lc.nchunks = (hw + lc.chunk - 1) / lc.chunk;
	usv__pool_run(ex->pool, n * lc.nchunks, lrn_task, &lc);
}
/* LRN within each channel (Caffe WITHIN_CHANNEL): the n x n box sum of
 * x^2 (zero padded, n = local_size, centred), then
 * y = x * (k + alpha / n^2 * sum)^-beta. Caffe divides by n^2 everywhere
 * because its average pooling counts the padded window. */
static size_t lrn_within_scratch(const usv_mlayer *L, int max_batch)
{
	(void)max_batch;
	return 2 * (size_t)L->g.h * L->g.w;
}

static void lrn_within_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out,
                           int n, float *scratch)
{
	(void)act;
	const int C = L->g.c, H = L->g.h, W = L->g.w, half = L->def.local_size / 2;
	const size_t hw = (size_t)H * W;
	const float a = L->def.alpha / ((float)L->def.local_size * (float)L->def.local_size);
	const float k = L->def.k, beta = L->def.beta;
	float *rowsum = scratch, *box = scratch + hw;
	for (int b = 0; b < n; b++) {
		for (int c = 0; c < C; c++) {
			const float *x = in[0] + ((size_t)b * C + c) * hw;
			float *y = out + ((size_t)b * C + c) * hw;
			for (int i = 0; i < H; i++)
				for (int j = 0; j < W; j++) {
					int j0 = j - half < 0 ? 0 : j - half;
					int j1 = j + half >= W ? W - 1 : j + half;
					float s = 0.0f;
					for (int q = j0; q <= j1; q++)
						s += x[(size_t)i * W + q] * x[(size_t)i * W + q];
					rowsum[(size_t)i * W + j] = s;
				}
			for (int i = 0; i < H; i++) {
				int i0 = i - half < 0 ? 0 : i - half;
				int i1 = i + half >= H ? H - 1 : i + half;
				for (int j = 0; j < W; j++) {
					float s = 0.0f;
					for (int p = i0; p <= i1; p++)
						s += rowsum[(size_t)p * W + j];
					box[(size_t)i * W + j] = s;
				}
			}
			for (size_t p = 0; p < hw; p++)
				y[p] = x[p] * powf(k + a * box[p], -beta);
		}
	}
}

/* ---------------- implementation table ---------------- */

#define IMPL(n, f, s, p, t)                                                                        \
	{                                                                                          \
		.name = n, .run = f, .scratch_floats = s, .pooled = p, .thread_scratch_floats = t  \
	}
static const usv_impl impl_conv_gemm =
    IMPL("conv_im2col_sgemm", conv_gemm, conv_gemm_scratch, 1, NULL);
static const usv_impl impl_conv_1x1 = IMPL("conv_1x1_sgemm", conv_gemm, conv_gemm_scratch, 1, NULL);
static const usv_impl impl_conv_dw =
    IMPL("conv_depthwise_direct", conv_depthwise, NULL, 1, dw_tscratch);
static const usv_impl impl_fc = IMPL("fc_gemv_or_sgemm_wxt", fc_run, fc_scratch, 1, NULL);
static const usv_impl impl_fc_xwt = IMPL("fc_gemv_or_sgemm_xwt", fc_run_xwt, NULL, 1, NULL);
static const usv_impl impl_maxpool = IMPL("maxpool", maxpool, NULL, 1, NULL);
static const usv_impl impl_avepool = IMPL("avepool", avepool, NULL, 1, NULL);
static const usv_impl impl_gap = IMPL("global_avepool", global_avepool, NULL, 0, NULL);
static const usv_impl impl_relu = IMPL("relu", relu_run, NULL, 0, NULL);
static const usv_impl impl_copy = IMPL("identity", copy_or_act, NULL, 0, NULL);
static const usv_impl impl_add = IMPL("add", add_run, NULL, 0, NULL);
static const usv_impl impl_concat = IMPL("concat", concat_run, NULL, 0, NULL);
static const usv_impl impl_softmax = IMPL("softmax", softmax_run, NULL, 0, NULL);
static const usv_impl impl_lrn =
    IMPL("lrn_across_channels", lrn_run, lrn_scratch, 1, lrn_thread_scratch);
static const usv_impl impl_lrn_within =
    IMPL("lrn_within_channel", lrn_within_run, lrn_within_scratch, 0, NULL);
#undef IMPL

const usv_impl *usv__choose_impl(const usv_mlayer *L)
{
	switch (L->def.type) {
	case USV_LAYER_CONV:
		if (L->def.group > 1 && L->def.group == L->g.ic && L->g.c == L->g.ic)
			return &impl_conv_dw;
		return usv__conv_is_1x1(L) ? &impl_conv_1x1 : &impl_conv_gemm;
	case USV_LAYER_FC:
		return &impl_fc;
	case USV_LAYER_MAXPOOL:
		return &impl_maxpool;
	case USV_LAYER_AVEPOOL:
		return &impl_avepool;
	case USV_LAYER_GLOBAL_AVEPOOL:
		return &impl_gap;
	case USV_LAYER_RELU:
	case USV_LAYER_RELU6:
		return &impl_relu;
	case USV_LAYER_ADD:
		return &impl_add;
	case USV_LAYER_CONCAT:
		return &impl_concat;
	case USV_LAYER_SOFTMAX:
		return &impl_softmax;
	case USV_LAYER_LRN:
		return &impl_lrn;
	case USV_LAYER_LRN_WITHIN:
		return &impl_lrn_within;
	case USV_LAYER_DROPOUT:
	case USV_LAYER_FLATTEN:
		return &impl_copy;
	}
	(void)impl_fc_xwt;
	return &impl_copy;
}
