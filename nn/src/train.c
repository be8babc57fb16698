/*
 * NAME
 *	train.c - SGD training of a fully connected head on fixed features
 *
 * DESCRIPTION
 *	See usv/train.h. Layer l computes Z = A W^T + b over a batch of rows
 *	(one cblas_sgemm), hidden layers apply ReLU and a dropout mask. The
 *	backward pass is the textbook one for softmax cross-entropy:
 *	dZ_L = (softmax(Z_L) - onehot(y)) / n, dW = dZ^T A, db = sum dZ,
 *	dA = dZ W, dZ_{l-1} = dA * mask * [Z_{l-1} > 0].
 *
 *	A workspace sized for the largest batch is allocated once per
 *	training run; an iteration allocates nothing. Threads, task cut and
 *	the fused SGD step: see usv/train.h.
 */
#include "usv/train.h"
#include "bf16.h"
#include "kern_fast.h"
#include "pool.h"
#include "usv/err.h"
#include "usv/nn.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------- PRNG ---------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void usv_rng_seed(usv_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t usv_rng_next(usv_rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

double usv_rng_uniform(usv_rng *r)
{
	return (double)(usv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint32_t usv_rng_below(usv_rng *r, uint32_t n)
{
	/* 64x32 multiply-shift; the bias is below 2^-32 and irrelevant here */
	return (uint32_t)(((usv_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double usv_rng_normal(usv_rng *r)
{
	double u1 = usv_rng_uniform(r), u2 = usv_rng_uniform(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---------------- head ---------------- */

int usv_head_new(int n_layers, const int *dims, usv_head **out)
{
	if (n_layers < 1 || n_layers > USV_HEAD_MAX_LAYERS || !dims || !out)
		return -EINVAL;
	for (int l = 0; l <= n_layers; l++)
		if (dims[l] < 1 || dims[l] > USV_HEAD_MAX_DIM)
			return -USV_ERR_LIMIT;
	usv_head *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->n_layers = n_layers;
	memcpy(h->dims, dims, (size_t)(n_layers + 1) * sizeof *dims);
	for (int l = 0; l < n_layers; l++) {
		h->w[l] = calloc((size_t)dims[l + 1] * (size_t)dims[l], sizeof(float));
		h->b[l] = calloc((size_t)dims[l + 1], sizeof(float));
		h->lr[l] = 0.001f;
		if (!h->w[l] || !h->b[l]) {
			usv_head_free(h);
			return -ENOMEM;
		}
	}
	*out = h;
	return 0;
}

void usv_head_free(usv_head *h)
{
	if (!h)
		return;
	for (int l = 0; l < h->n_layers; l++) {
		free(h->w[l]);
		free(h->b[l]);
	}
	free(h);
}

void usv_head_init_layer(usv_head *h, int l, float std, usv_rng *rng)
{
	size_t nw = (size_t)h->dims[l + 1] * (size_t)h->dims[l];
	double s = std > 0 ? std : sqrt(2.0 / h->dims[l]);
	for (size_t i = 0; i < nw; i++)
		h->w[l][i] = (float)(s * usv_rng_normal(rng));
	memset(h->b[l], 0, (size_t)h->dims[l + 1] * sizeof(float));
}

/* ---------------- threads ---------------- */

/* Work is cut into tasks of fixed size, whatever the thread count, so that
 * every output element is computed by the same single-threaded call on
 * every run: results do not depend on the number of threads. COL_CHUNK is
 * a multiple of USV_BGEMM_NR and ROW_CHUNK of USV_BGEMM_MR and NR, so a
 * task's share of a packed BF16 operand is a whole number of blocks. */
#define COL_CHUNK 512 /* output columns of a forward / input-gradient task */
#define ROW_CHUNK 192 /* weight rows of a weight-gradient task */
#define ROWS_TASK 32  /* batch rows of a gather / dropout-mask task */
#define DW_COLS 1024  /* weight columns per block of a weight-gradient task */
#define PACK_GROUPS 4 /* row blocks of a packing task */

static int ntasks_of(int n, int chunk)
{
	return (n + chunk - 1) / chunk;
}

/* Runs fn over ntasks tasks on the pool (the caller only when NULL). */
static void par(usv_pool *pool, int ntasks, usv_task_fn fn, void *ctx)
{
	if (ntasks == 1 || !pool) {
		for (int t = 0; t < ntasks; t++)
			fn(ctx, t, 0);
		return;
	}
	usv__pool_run(pool, ntasks, fn, ctx);
}

/* ---------------- BF16 operands ---------------- */

/* One block of a packed BF16 operand (kern_fast.h: usv__bgemm_pack_a()
 * rows come in blocks of USV_BGEMM_MR, usv__bgemm_pack_b() columns in
 * panels of USV_BGEMM_NR): R lines of k values, line r at src + r * ld
 * (lines >= rows are zeros), become k2 = ceil(k / 2) groups of R 32-bit
 * slots, slot (q, r) holding elements 2q (low half) and 2q + 1 of line r.
 * That is a row block of A given as [m][k] (R = MR) and a column panel of
 * B given as [n][k] (R = NR). test_train checks BF16 training steps
 * against the FP32 formula: a wrong layout moves a step by its own size. */
/* Slots [q0, q1) of lines [r0, r1) of a block, scalar. */
static void pack_lines_scalar(const float *src, long ld, int rows, int k, int R, size_t q0,
                              size_t q1, int r0, int r1, uint32_t *dst)
{
	const size_t kf = (size_t)k / 2, qf = q1 < kf ? q1 : kf;
	for (int r = r0; r < r1; r++) {
		if (r >= rows) {
			for (size_t q = q0; q < q1; q++)
				dst[q * R + r] = 0;
			continue;
		}
		const float *sr = src + (size_t)r * ld;
		for (size_t q = q0; q < qf; q++)
			dst[q * R + r] = usv__bf16_pair(sr[2 * q], sr[2 * q + 1]);
		if (qf < q1) /* odd k: the last slot's high half is zero */
			dst[qf * R + r] = usv__bf16_pair(sr[k - 1], 0.0f);
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TRAIN_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* 16 lines x 16 slots (32 values each line) -> dst[q * R + 0..15]: the
 * conversion rounds to nearest even (vcvtne2ps2bf16), then a 16 x 16
 * transpose of 32-bit slots in registers. */
TRAIN_AVX512 static void pack16x16(const float *src, long ld, int R, uint32_t *dst)
{
	__m512i r[16], t[16], u[16];
	for (int i = 0; i < 16; i++) {
		const float *s = src + (size_t)i * ld;
		r[i] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + 16), _mm512_loadu_ps(s));
	}
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4) {
		u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	/* u[4i + j], 128-bit lane L: lines 4i..4i+3 of slot 4L + j */
	for (int j = 0; j < 4; j++) {
		__m512i ablo = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
		__m512i abhi = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xee);
		__m512i cdlo = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
		__m512i cdhi = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xee);
		_mm512_storeu_si512((void *)(dst + (size_t)j * R),
		                    _mm512_shuffle_i32x4(ablo, cdlo, 0x88));
		_mm512_storeu_si512((void *)(dst + (size_t)(4 + j) * R),
		                    _mm512_shuffle_i32x4(ablo, cdlo, 0xdd));
		_mm512_storeu_si512((void *)(dst + (size_t)(8 + j) * R),
		                    _mm512_shuffle_i32x4(abhi, cdhi, 0x88));
		_mm512_storeu_si512((void *)(dst + (size_t)(12 + j) * R),
		                    _mm512_shuffle_i32x4(abhi, cdhi, 0xdd));
	}
}
#endif

/* Slots [qa, qb) of a block (qa a multiple of 16). */
static void pack_lines_range(const float *src, long ld, int rows, int k, int R, size_t qa,
                             size_t qb, uint32_t *dst)
{
	size_t qv = qa; /* slots [qa, qv) of lines [0, rv) go through pack16x16 */
	int rv = 0;
#if defined(__x86_64__) && defined(__GNUC__)
	if (R % 16 == 0 && qa % 16 == 0 && usv__cpu_has_bf16()) {
		size_t qmax = (size_t)k / 32 * 16; /* 16-slot groups with 32 values */
		qv = qb < qmax ? qa + (qb - qa) / 16 * 16 : (qmax > qa ? qmax : qa);
		rv = rows / 16 * 16;
		for (int r0 = 0; r0 < rv; r0 += 16)
			for (size_t q0 = qa; q0 < qv; q0 += 16)
				pack16x16(src + (size_t)r0 * ld + 2 * q0, ld, R, dst + q0 * R + r0);
	}
#endif
	for (size_t q0 = qa; q0 < qb; q0 += 64) {
		size_t q1 = q0 + 64 < qb ? q0 + 64 : qb;
		/* lines done by the vector path only need the slots past qv */
		if (rv > 0 && q1 > qv)
			pack_lines_scalar(src, ld, rows, k, R, q0 > qv ? q0 : qv, q1, 0, rv, dst);
		pack_lines_scalar(src, ld, rows, k, R, q0, q1, rv, R, dst);
	}
}

static void pack_lines(const float *src, long ld, int rows, int k, int R, uint32_t *dst)
{
	pack_lines_range(src, ld, rows, k, R, 0, ((size_t)k + 1) / 2, dst);
}

/* The transposed case: line r is column c0 + r of a row-major [k][ld]
 * matrix (a row block of A given as [k][m], i.e. usv__bgemm_pack_a() with
 * trans = 1); cols lines exist. */
static void pack_columns(const float *src, long ld, int cols, int k, int R, uint32_t *dst)
{
	const size_t k2 = ((size_t)k + 1) / 2;
	for (size_t q = 0; q < k2; q++) {
		const float *a = src + 2 * q * (size_t)ld;
		const float *b = 2 * q + 1 < (size_t)k ? a + ld : NULL;
		uint32_t *d = dst + q * R;
		for (int r = 0; r < cols; r++)
			d[r] = usv__bf16_pair(a[r], b ? b[r] : 0.0f);
		for (int r = cols; r < R; r++)
			d[r] = 0;
	}
}

/* For the unit tests (declared there): one block as pack_lines()
 * (columns = 0) or pack_columns() (columns = 1). */
int usv__train_pack_block(const float *src, long ld, int lines, int k, int R, int columns,
                          uint16_t *dst);
int usv__train_pack_block(const float *src, long ld, int lines, int k, int R, int columns,
                          uint16_t *dst)
{
	if (!src || !dst || lines < 0 || lines > R || k < 1 || R < 1)
		return -EINVAL;
	if (columns)
		pack_columns(src, ld, lines, k, R, (uint32_t *)(void *)dst);
	else
		pack_lines(src, ld, lines, k, R, (uint32_t *)(void *)dst);
	return 0;
}

/* BF16 copies of the weights and activations of a BF16 training run. The
 * FP32 weights in the head stay the master copy; wf / wd are repacked from
 * them right after every SGD step of a block of rows. */
typedef struct bf16_ws {
	uint16_t *wf[USV_HEAD_MAX_LAYERS]; /* W^T as packed B (k = din, n = dout): forward */
	uint16_t *wd[USV_HEAD_MAX_LAYERS]; /* W as packed B (k = dout, n = din): dX, l > 0 */
	uint16_t *xa;                      /* layer input as packed A (m = rows, k = din) */
	uint16_t *xb;                      /* layer input as packed B (k = rows, n = din), for dW */
	uint16_t *da;                      /* dZ as packed A (m = rows, k = dout), for dX */
	uint16_t *dt;                      /* dZ^T as packed A (m = dout, k = rows), for dW */
} bf16_ws;

static void bf16_ws_free(bf16_ws *b)
{
	if (!b)
		return;
	for (int l = 0; l < USV_HEAD_MAX_LAYERS; l++) {
		free(b->wf[l]);
		free(b->wd[l]);
	}
	free(b->xa);
	free(b->xb);
	free(b->da);
	free(b->dt);
	free(b);
}

static size_t a_block(int k)
{
	return usv__bgemm_a_elems(USV_BGEMM_MR, k);
}

static size_t b_panel(int k)
{
	return usv__bgemm_b_elems(k, USV_BGEMM_NR);
}

/* 4-byte aligned uint16 buffer (the slots are read as uint32). */
static uint16_t *alloc_u16(size_t n)
{
	return n ? aligned_alloc(64, (n * sizeof(uint16_t) + 63) / 64 * 64) : NULL;
}

static int bf16_ws_new(const usv_head *h, int n, bf16_ws **out)
{
	bf16_ws *b = calloc(1, sizeof *b);
	if (!b)
		return -ENOMEM;
	int L = h->n_layers;
	size_t xa = 0, xb = 0, da = 0, dt = 0;
	for (int l = 0; l < L; l++) {
		int din = h->dims[l], dout = h->dims[l + 1];
		b->wf[l] = alloc_u16(usv__bgemm_b_elems(din, dout));
		if (!b->wf[l])
			goto fail;
		if (l > 0 && !(b->wd[l] = alloc_u16(usv__bgemm_b_elems(dout, din))))
			goto fail;
		size_t e = usv__bgemm_a_elems(n, din);
		xa = e > xa ? e : xa;
		e = usv__bgemm_b_elems(n, din);
		xb = e > xb ? e : xb;
		e = usv__bgemm_a_elems(n, dout);
		da = e > da ? e : da;
		e = usv__bgemm_a_elems(dout, n);
		dt = e > dt ? e : dt;
	}
	b->xa = alloc_u16(xa);
	b->xb = alloc_u16(xb);
	b->da = alloc_u16(da);
	b->dt = alloc_u16(dt);
	if (!b->xa || !b->xb || !b->da || !b->dt)
		goto fail;
	*out = b;
	return 0;
fail:
	bf16_ws_free(b);
	return -ENOMEM;
}

/* Repacks weight rows [r0, r1) x columns [c0, c1) of layer l (r0 a
 * multiple of ROW_CHUNK, c0 of DW_COLS, c1 = din or a multiple of 32) into
 * the forward and input-gradient operands. */
static void bf16_pack_weights(const usv_head *h, bf16_ws *b, int l, int r0, int r1, int c0, int c1)
{
	int din = h->dims[l], dout = h->dims[l + 1];
	const float *W = h->w[l];
	size_t qa = (size_t)c0 / 2, qb = c1 == din ? ((size_t)din + 1) / 2 : (size_t)c1 / 2;
	for (int p = r0 / USV_BGEMM_NR; p * USV_BGEMM_NR < r1; p++) {
		int j0 = p * USV_BGEMM_NR,
		    rows = dout - j0 < USV_BGEMM_NR ? dout - j0 : USV_BGEMM_NR;
		pack_lines_range(W + (size_t)j0 * din, din, rows, din, USV_BGEMM_NR, qa, qb,
		                 (uint32_t *)(void *)(b->wf[l] + (size_t)p * b_panel(din)));
	}
	if (l == 0)
		return;
	uint16_t *wd = b->wd[l] + (size_t)(c0 / USV_BGEMM_NR) * b_panel(dout);
	for (int r = r0; r < r1; r += 2)
		usv__bgemm_pack_b_pair(W + (size_t)r * din + c0,
		                       r + 1 < dout ? W + (size_t)(r + 1) * din + c0 : NULL,
		                       c1 - c0, dout, r / 2, wd);
}

typedef struct pack_job {
	const float *src;
	long ld;
	int n, k; /* lines, values per line */
	uint16_t *dst;
	int mode; /* 0: A from rows, 1: A from columns, 2: B from rows (pairs of rows) */
} pack_job;

static void pack_task(void *ctx, int t, int thread)
{
	(void)thread;
	const pack_job *j = ctx;
	if (j->mode == 2) {
		/* B with k = j->n rows of j->k values: pairs of rows */
		int q0 = t * PACK_GROUPS * USV_BGEMM_MR, k2 = (j->n + 1) / 2;
		for (int q = q0; q < q0 + PACK_GROUPS * USV_BGEMM_MR && q < k2; q++) {
			const float *r0 = j->src + (size_t)2 * q * j->ld;
			usv__bgemm_pack_b_pair(r0, 2 * q + 1 < j->n ? r0 + j->ld : NULL, j->k, j->n,
			                       q, j->dst);
		}
		return;
	}
	for (int g = t * PACK_GROUPS; g < (t + 1) * PACK_GROUPS && g * USV_BGEMM_MR < j->n; g++) {
		int i0 = g * USV_BGEMM_MR,
		    cnt = j->n - i0 < USV_BGEMM_MR ? j->n - i0 : USV_BGEMM_MR;
		uint32_t *d = (uint32_t *)(void *)(j->dst + (size_t)g * a_block(j->k));
		if (j->mode == 0)
			pack_lines(j->src + (size_t)i0 * j->ld, j->ld, cnt, j->k, USV_BGEMM_MR, d);
		else
			pack_columns(j->src + i0, j->ld, cnt, j->k, USV_BGEMM_MR, d);
	}
}

static void pack(usv_pool *pool, int mode, const float *src, long ld, int n, int k, uint16_t *dst)
{
	pack_job j = {src, ld, n, k, dst, mode};
	int units = mode == 2 ? (n + 1) / 2 : n; /* slots pairs or lines */
	par(pool, ntasks_of(units, PACK_GROUPS * USV_BGEMM_MR), pack_task, &j);
}

/* ---------------- workspace ---------------- */

/* Workspace for n rows: per layer output Z (pre-activation for the last,
 * post-ReLU for hidden ones), A (after dropout), and two delta buffers. */
typedef struct ws {
	int cap;
	float *z[USV_HEAD_MAX_LAYERS];
	float *a[USV_HEAD_MAX_LAYERS];
	float *d0, *d1;
} ws;

static void ws_free(ws *w)
{
	for (int l = 0; l < USV_HEAD_MAX_LAYERS; l++) {
		free(w->z[l]);
		free(w->a[l]);
	}
	free(w->d0);
	free(w->d1);
	memset(w, 0, sizeof *w);
}

static int ws_init(ws *w, const usv_head *h, int n)
{
	memset(w, 0, sizeof *w);
	int maxd = 0;
	for (int l = 0; l <= h->n_layers; l++)
		if (h->dims[l] > maxd)
			maxd = h->dims[l];
	for (int l = 0; l < h->n_layers; l++) {
		w->z[l] = malloc((size_t)n * (size_t)h->dims[l + 1] * sizeof(float));
		w->a[l] = malloc((size_t)n * (size_t)h->dims[l + 1] * sizeof(float));
		if (!w->z[l] || !w->a[l])
			goto fail;
	}
	w->d0 = malloc((size_t)n * (size_t)maxd * sizeof(float));
	w->d1 = malloc((size_t)n * (size_t)maxd * sizeof(float));
	if (!w->d0 || !w->d1)
		goto fail;
	w->cap = n;
	return 0;
fail:
	ws_free(w);
	return -ENOMEM;
}

/* The solver state of a training run. */
typedef struct sgd {
	float *vw[USV_HEAD_MAX_LAYERS], *vb[USV_HEAD_MAX_LAYERS];
	float momentum, weight_decay;
} sgd;

/* How a pass runs: threads, BF16 or FP32, solver. NULL: FP32 on the
 * caller, gradients to the caller's arrays. */
typedef struct run {
	usv_pool *pool;
	bf16_ws *bf;  /* NULL: FP32 (OpenBLAS) */
	const sgd *s; /* NULL: no SGD step */
	float *gtmp;  /* per-thread ROW_CHUNK x din gradient slices (with s) */
	size_t gtmp_stride;
} run;

/* ---------------- forward ---------------- */

typedef struct fwd_job {
	const usv_head *h;
	ws *w;
	int l, n;
	const float *in;
	const float *mask; /* NULL: no dropout */
	const bf16_ws *bf;
} fwd_job;

/* Columns [c0, c1) of layer l: Z = in W^T + b, then for hidden layers
 * ReLU in place and A = Z * mask, while the slice is in cache. */
static void fwd_task(void *ctx, int t, int thread)
{
	(void)thread;
	const fwd_job *j = ctx;
	const usv_head *h = j->h;
	int l = j->l, n = j->n, din = h->dims[l], dout = h->dims[l + 1];
	int c0 = t * COL_CHUNK, c1 = c0 + COL_CHUNK < dout ? c0 + COL_CHUNK : dout;
	int cs = c1 - c0, hidden = l < h->n_layers - 1;
	float *z = j->w->z[l];
	if (j->bf) {
		usv_bgemm_args g = {.m = n,
		                    .n = cs,
		                    .k = din,
		                    .ap = j->bf->xa,
		                    .bp = j->bf->wf[l] + (size_t)(c0 / USV_BGEMM_NR) * b_panel(din),
		                    .c = z + c0,
		                    .ldc = dout,
		                    .bias = h->b[l] + c0,
		                    .bias_per_col = 1,
		                    .act = hidden ? USV_ACT_RELU : USV_ACT_NONE};
		usv__bgemm(&g, 0, ntasks_of(n, USV_BGEMM_MR), 0, ntasks_of(cs, USV_BGEMM_NR));
	} else {
		for (int i = 0; i < n; i++)
			memcpy(z + (size_t)i * dout + c0, h->b[l] + c0, (size_t)cs * sizeof(float));
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, cs, din, 1.0f, j->in, din,
		            h->w[l] + (size_t)c0 * din, din, 1.0f, z + c0, dout);
	}
	if (!hidden)
		return;
	float *a = j->w->a[l];
	for (int i = 0; i < n; i++) {
		float *zr = z + (size_t)i * dout, *ar = a + (size_t)i * dout;
		const float *mr = j->mask ? j->mask + (size_t)i * dout : NULL;
		for (int c = c0; c < c1; c++) {
			float v = zr[c] > 0 ? zr[c] : 0.0f;
			zr[c] = v;
			ar[c] = mr ? v * mr[c] : v;
		}
	}
}

/* Forward of n rows; the last layer's logits end in w->z[L-1]. */
static void forward(const usv_head *h, ws *w, const float *x, int n, float *const *masks,
                    const run *r)
{
	const float *in = x;
	int L = h->n_layers;
	usv_pool *pool = r ? r->pool : NULL;
	bf16_ws *bf = r ? r->bf : NULL;
	for (int l = 0; l < L; l++) {
		if (bf)
			pack(pool, 0, in, h->dims[l], n, h->dims[l], bf->xa);
		fwd_job j = {h, w, l, n, in, masks && l < L - 1 ? masks[l] : NULL, bf};
		par(pool, ntasks_of(h->dims[l + 1], COL_CHUNK), fwd_task, &j);
		in = w->a[l];
	}
}

int usv_head_forward(const usv_head *h, const float *x, int n, int softmax, float *out)
{
	if (!h || !x || !out || n < 0)
		return -EINVAL;
	int L = h->n_layers, nc = h->dims[L];
	const int chunk = 256;
	ws w;
	int rc = ws_init(&w, h, n < chunk ? (n > 0 ? n : 1) : chunk);
	if (rc)
		return rc;
	for (int i0 = 0; i0 < n; i0 += chunk) {
		int m = n - i0 < chunk ? n - i0 : chunk;
		forward(h, &w, x + (size_t)i0 * h->dims[0], m, NULL, NULL);
		memcpy(out + (size_t)i0 * nc, w.z[L - 1], (size_t)m * nc * sizeof(float));
		if (softmax)
			for (int i = 0; i < m; i++)
				usv_softmax(out + (size_t)(i0 + i) * nc, nc);
	}
	ws_free(&w);
	return 0;
}

/* Mean cross-entropy of the logits in w->z[L-1] (with the class weights
 * and label smoothing of lo, NULL = none: see usv/train.h); turns them
 * into dZ. Without options the arithmetic is that of the plain loss. */
static double ce_and_delta(const usv_head *h, ws *w, const int *y, int n, int want_delta,
                           const usv_loss_opts *lo)
{
	int L = h->n_layers, nc = h->dims[L];
	const float *cw = lo ? lo->class_weight : NULL;
	double e = lo ? lo->label_smoothing : 0, off = e / nc, on = 1 - e + off;
	double loss = 0;
	for (int i = 0; i < n; i++) {
		float *z = w->z[L - 1] + (size_t)i * nc;
		float mx = z[0];
		for (int c = 1; c < nc; c++)
			if (z[c] > mx)
				mx = z[c];
		double s = 0;
		for (int c = 0; c < nc; c++)
			s += exp((double)z[c] - mx);
		double lse = mx + log(s);
		if (!cw && e == 0) {
			loss += lse - z[y[i]];
			if (want_delta) {
				for (int c = 0; c < nc; c++)
					z[c] = (float)((exp((double)z[c] - lse) - (c == y[i])) / n);
			}
			continue;
		}
		/* target q_c = off + (1 - e) [c = y]; sum q_c = 1 */
		double wi = cw ? cw[y[i]] : 1.0, qz = 0;
		for (int c = 0; c < nc; c++)
			qz += (c == y[i] ? on : off) * z[c];
		loss += wi * (lse - qz);
		if (want_delta) {
			for (int c = 0; c < nc; c++)
				z[c] =
				    (float)(wi *
				            (exp((double)z[c] - lse) - (c == y[i] ? on : off)) / n);
		}
	}
	return loss / n;
}

static int check_loss_opts(const usv_loss_opts *lo, int nc)
{
	if (!lo)
		return 0;
	if (!(lo->label_smoothing >= 0 && lo->label_smoothing <= 0.5f))
		return -EINVAL;
	for (int c = 0; lo->class_weight && c < nc; c++)
		if (!isfinite(lo->class_weight[c]) || lo->class_weight[c] < 0)
			return -EINVAL;
	return 0;
}

int usv_class_weights_balanced(const int *y, int n, int k, float *w)
{
	if (!y || !w || n < 1 || k < 1)
		return -EINVAL;
	for (int c = 0; c < k; c++)
		w[c] = 0;
	for (int i = 0; i < n; i++) {
		if (y[i] < 0 || y[i] >= k)
			return -EINVAL;
		w[y[i]] += 1;
	}
	for (int c = 0; c < k; c++)
		w[c] = w[c] > 0 ? (float)((double)n / ((double)k * w[c])) : 0.0f;
	return 0;
}

/* ---------------- backward and update ---------------- */

typedef struct bwd_job {
	const usv_head *h;
	int l, n;
	const float *dz;  /* [n, dout] delta of layer l's pre-activation */
	const float *ain; /* [n, din] input of layer l */
	float *da;        /* [n, din] delta of layer l-1's pre-activation */
	const float *zp;  /* post-ReLU output of layer l-1 */
	const float *mask;
	float *gw, *gb; /* full gradients (no solver) */
	const run *r;
} bwd_job;

/* Columns [c0, c1) of dA = dZ W, then through layer l-1's ReLU and mask. */
static void dx_task(void *ctx, int t, int thread)
{
	(void)thread;
	const bwd_job *j = ctx;
	const usv_head *h = j->h;
	int l = j->l, n = j->n, din = h->dims[l], dout = h->dims[l + 1];
	int c0 = t * COL_CHUNK, c1 = c0 + COL_CHUNK < din ? c0 + COL_CHUNK : din;
	const bf16_ws *bf = j->r ? j->r->bf : NULL;
	if (bf) {
		usv_bgemm_args g = {.m = n,
		                    .n = c1 - c0,
		                    .k = dout,
		                    .ap = bf->da,
		                    .bp = bf->wd[l] + (size_t)(c0 / USV_BGEMM_NR) * b_panel(dout),
		                    .c = j->da + c0,
		                    .ldc = din,
		                    .act = USV_ACT_NONE};
		usv__bgemm(&g, 0, ntasks_of(n, USV_BGEMM_MR), 0, ntasks_of(c1 - c0, USV_BGEMM_NR));
	} else {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c1 - c0, dout, 1.0f,
		            j->dz, dout, h->w[l] + c0, din, 0.0f, j->da + c0, din);
	}
	for (int i = 0; i < n; i++) {
		float *dr = j->da + (size_t)i * din;
		const float *zr = j->zp + (size_t)i * din;
		const float *mr = j->mask ? j->mask + (size_t)i * din : NULL;
		for (int c = c0; c < c1; c++) {
			float g = zr[c] > 0 ? dr[c] : 0.0f;
			dr[c] = mr ? g * mr[c] : g;
		}
	}
}

/* Rows [r0, r1) of dW = dZ^T A_in and db = sum dZ. With a solver the
 * gradient is made in blocks of DW_COLS columns in a per-thread buffer
 * that stays in L2, and each block's SGD step (and, in BF16 runs, the
 * repacking of its weights) follows at once: no full-size gradient is
 * stored and the weights and momenta are streamed once per iteration. */
static void dw_task(void *ctx, int t, int thread)
{
	const bwd_job *j = ctx;
	usv_head *h = (usv_head *)j->h;
	const run *ru = j->r;
	const sgd *s = ru ? ru->s : NULL;
	bf16_ws *bf = ru ? ru->bf : NULL;
	int l = j->l, n = j->n, din = h->dims[l], dout = h->dims[l + 1];
	int r0 = t * ROW_CHUNK, r1 = r0 + ROW_CHUNK < dout ? r0 + ROW_CHUNK : dout;
	int rs = r1 - r0;
	float gb[ROW_CHUNK];
	for (int o = 0; o < rs; o++)
		gb[o] = 0;
	for (int i = 0; i < n; i++) {
		const float *r = j->dz + (size_t)i * dout + r0;
		for (int o = 0; o < rs; o++)
			gb[o] += r[o];
	}
	float lr = h->lr[l], mom = s ? s->momentum : 0, wd = s ? s->weight_decay : 0;
	for (int c0 = 0; c0 < din; c0 += DW_COLS) {
		int c1 = c0 + DW_COLS < din ? c0 + DW_COLS : din, cs = c1 - c0;
		long ldg = s ? cs : din;
		float *g =
		    s ? ru->gtmp + (size_t)thread * ru->gtmp_stride : j->gw + (size_t)r0 * din + c0;
		if (bf) {
			usv_bgemm_args a = {.m = rs,
			                    .n = cs,
			                    .k = n,
			                    .ap = bf->dt + (size_t)(r0 / USV_BGEMM_MR) * a_block(n),
			                    .bp = bf->xb + (size_t)(c0 / USV_BGEMM_NR) * b_panel(n),
			                    .c = g,
			                    .ldc = ldg,
			                    .act = USV_ACT_NONE};
			usv__bgemm(&a, 0, ntasks_of(rs, USV_BGEMM_MR), 0,
			           ntasks_of(cs, USV_BGEMM_NR));
		} else {
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rs, cs, n, 1.0f,
			            j->dz + r0, dout, j->ain + c0, din, 0.0f, g, (int)ldg);
		}
		if (!s)
			continue;
		/* Caffe's SGD: v = momentum v + lr (g + decay w); w -= v */
		for (int o = 0; o < rs; o++) {
			float *W = h->w[l] + (size_t)(r0 + o) * din + c0;
			float *V = s->vw[l] + (size_t)(r0 + o) * din + c0;
			const float *G = g + (size_t)o * cs;
			for (int k = 0; k < cs; k++) {
				float v = mom * V[k] + lr * (G[k] + wd * W[k]);
				V[k] = v;
				W[k] -= v;
			}
		}
		if (bf)
			bf16_pack_weights(h, bf, l, r0, r1, c0, c1);
	}
	if (!s) {
		memcpy(j->gb + r0, gb, (size_t)rs * sizeof(float));
		return;
	}
	/* biases: 2 lr, no decay */
	float *b = h->b[l] + r0, *vb = s->vb[l] + r0;
	for (int o = 0; o < rs; o++) {
		vb[o] = mom * vb[o] + 2.0f * lr * gb[o];
		b[o] -= vb[o];
	}
}

/* Backward through all layers. Without a solver the gradients go to gw/gb;
 * with one (training) every layer is updated as soon as the delta of the
 * layer below has been computed from its old weights. */
static void backward(const usv_head *h, ws *w, const float *x, int n, float *const *masks,
                     float **gw, float **gb, const run *r)
{
	int L = h->n_layers;
	usv_pool *pool = r ? r->pool : NULL;
	bf16_ws *bf = r ? r->bf : NULL;
	/* delta of the current layer's pre-activation */
	float *dz = w->z[L - 1];
	float *spare[2] = {w->d0, w->d1};
	int which = 0;
	for (int l = L - 1; l >= 0; l--) {
		int din = h->dims[l], dout = h->dims[l + 1];
		bwd_job j = {.h = h,
		             .l = l,
		             .n = n,
		             .dz = dz,
		             .ain = l == 0 ? x : w->a[l - 1],
		             .gw = gw ? gw[l] : NULL,
		             .gb = gb ? gb[l] : NULL,
		             .r = r};
		if (l > 0) {
			j.da = spare[which];
			which ^= 1;
			j.zp = w->z[l - 1];
			j.mask = masks ? masks[l - 1] : NULL;
			if (bf)
				pack(pool, 0, dz, dout, n, dout, bf->da);
			par(pool, ntasks_of(din, COL_CHUNK), dx_task, &j);
		}
		if (bf) {
			pack(pool, 1, dz, dout, dout, n, bf->dt);
			pack(pool, 2, j.ain, din, n, din, bf->xb);
		}
		par(pool, ntasks_of(dout, ROW_CHUNK), dw_task, &j);
		dz = j.da;
	}
}

int usv_head_loss_grad_ex(const usv_head *h, const float *x, const int *y, int n,
                          float *const *masks, const usv_loss_opts *lo, float **grad_w,
                          float **grad_b, double *loss)
{
	if (!h || !x || !y || n < 1 || !loss || check_loss_opts(lo, h->dims[h->n_layers]))
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (y[i] < 0 || y[i] >= h->dims[h->n_layers])
			return -EINVAL;
	ws w;
	int rc = ws_init(&w, h, n);
	if (rc)
		return rc;
	forward(h, &w, x, n, masks, NULL);
	int want = grad_w && grad_b;
	*loss = ce_and_delta(h, &w, y, n, want, lo);
	if (want)
		backward(h, &w, x, n, masks, grad_w, grad_b, NULL);
	ws_free(&w);
	return 0;
}

int usv_head_loss_grad(const usv_head *h, const float *x, const int *y, int n, float *const *masks,
                       float **grad_w, float **grad_b, double *loss)
{
	return usv_head_loss_grad_ex(h, x, y, n, masks, NULL, grad_w, grad_b, loss);
}

void usv_train_opts_default(usv_train_opts *o)
{
	memset(o, 0, sizeof *o);
	o->iterations = 1000;
	o->batch = 32;
	o->momentum = 0.9f;
	o->weight_decay = 5e-4f;
	o->seed = 1;
	o->threads = 1;
}

/* Loss and correct count of view 0 of images [i0, i0 + m) of d. */
static void eval_chunk(const usv_head *h, ws *w, float *xb, const usv_train_data *d, int i0, int m,
                       usv_pool *pool, double *tl, long *correct)
{
	int L = h->n_layers, nc = h->dims[L];
	for (int i = 0; i < m; i++)
		memcpy(xb + (size_t)i * d->dim, d->x + ((size_t)(i0 + i) * d->n_views) * d->dim,
		       (size_t)d->dim * sizeof(float));
	run r = {.pool = pool}; /* FP32, the reference, also in BF16 runs */
	forward(h, w, xb, m, NULL, &r);
	for (int i = 0; i < m; i++) {
		const float *z = w->z[L - 1] + (size_t)i * nc;
		int best = 0;
		for (int c = 1; c < nc; c++)
			if (z[c] > z[best])
				best = c;
		*correct += best == d->y[i0 + i];
	}
	*tl += ce_and_delta(h, w, d->y + i0, m, 0, NULL) * m;
}

static int evaluate(const usv_head *h, const usv_train_data *d, usv_pool *pool, double *loss,
                    double *acc)
{
	const int chunk = 256;
	ws w;
	int rc = ws_init(&w, h, d->n < chunk ? d->n : chunk);
	if (rc)
		return rc;
	float *xb = malloc((size_t)w.cap * d->dim * sizeof(float));
	if (!xb) {
		ws_free(&w);
		return -ENOMEM;
	}
	double tl = 0;
	long correct = 0;
	for (int i0 = 0; i0 < d->n; i0 += chunk)
		eval_chunk(h, &w, xb, d, i0, d->n - i0 < chunk ? d->n - i0 : chunk, pool, &tl,
		           &correct);
	free(xb);
	ws_free(&w);
	*loss = tl / d->n;
	*acc = (double)correct / d->n;
	return 0;
}

int usv_head_evaluate(const usv_head *h, const usv_train_data *d, double *loss, double *acc)
{
	if (!h || !d || d->n < 1 || d->dim != h->dims[0])
		return -EINVAL;
	return evaluate(h, d, NULL, loss, acc);
}

static int check_data(const usv_head *h, const usv_train_data *d)
{
	if (!d->x || !d->y || d->n < 1 || d->n_views < 1 || d->dim != h->dims[0])
		return -EINVAL;
	for (int i = 0; i < d->n; i++)
		if (d->y[i] < 0 || d->y[i] >= h->dims[h->n_layers])
			return -EINVAL;
	return 0;
}

/* ---------------- one training step's data ---------------- */

typedef struct batch_job {
	const usv_train_data *d;
	const int *rows; /* [B] image * n_views + view */
	float *xb;
	const usv_head *h;
	float *const *masks;
	uint64_t key; /* seed and iteration */
} batch_job;

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Rows [i0, i1) of the batch: copies the feature rows and draws the
 * dropout masks, each row from its own stream keyed by (seed, iteration,
 * layer, row), so the masks do not depend on the thread that drew them. */
static void batch_task(void *ctx, int t, int thread)
{
	(void)thread;
	const batch_job *j = ctx;
	const usv_train_data *d = j->d;
	const usv_head *h = j->h;
	int i0 = t * ROWS_TASK;
	for (int i = i0; i < i0 + ROWS_TASK && j->rows[i] >= 0; i++) {
		memcpy(j->xb + (size_t)i * d->dim, d->x + (size_t)j->rows[i] * d->dim,
		       (size_t)d->dim * sizeof(float));
		for (int l = 0; l < h->n_layers - 1; l++) {
			if (!j->masks[l])
				continue;
			int dout = h->dims[l + 1];
			float p = h->dropout[l], keep = 1.0f / (1.0f - p);
			double tp = (double)p * 4294967296.0;
			uint32_t thr = tp >= 4294967295.0 ? 0xffffffffu : (uint32_t)tp;
			usv_rng r;
			usv_rng_seed(&r, mix64(j->key ^ mix64(((uint64_t)l << 32) | (uint32_t)i)));
			float *m = j->masks[l] + (size_t)i * dout;
			for (int c = 0; c < dout; c += 2) {
				uint64_t u = usv_rng_next(&r);
				m[c] = (uint32_t)u < thr ? 0.0f : keep;
				if (c + 1 < dout)
					m[c + 1] = (uint32_t)(u >> 32) < thr ? 0.0f : keep;
			}
		}
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int usv_head_train(usv_head *h, const usv_train_data *train, const usv_train_data *val,
                   const usv_train_opts *o, usv_curve_point **curve, int *n_curve)
{
	if (!h || !train || !o || !curve || !n_curve || o->iterations < 1 || o->batch < 1 ||
	    o->batch > 65536 || o->threads < 0 || o->threads > 256 ||
	    (o->precision != USV_TRAIN_FP32 && o->precision != USV_TRAIN_BF16))
		return -EINVAL;
	int rc = check_data(h, train);
	if (!rc && val)
		rc = check_data(h, val);
	if (!rc && (check_loss_opts(&o->loss, h->dims[h->n_layers]) || o->early_stopping < 0 ||
	            (o->early_stopping > 0 && !val)))
		rc = -EINVAL;
	if (rc)
		return rc;
	int L = h->n_layers, B = o->batch, dim = h->dims[0];
	int threads = o->threads > 0 ? o->threads : 1;
	int every = o->eval_every > 0 ? o->eval_every : (o->iterations + 9) / 10;
	int max_pts = o->iterations / every + 2;
	int nbt = ntasks_of(B, ROWS_TASK);
	int maxin = 0;
	for (int l = 0; l < L; l++)
		if (h->dims[l] > maxin)
			maxin = h->dims[l];
	size_t gstride = (size_t)ROW_CHUNK * (maxin < DW_COLS ? maxin : DW_COLS);
	usv_curve_point *pts = calloc((size_t)max_pts, sizeof *pts);
	float *xb = malloc((size_t)B * dim * sizeof(float));
	int *yb = malloc((size_t)B * sizeof(int));
	int *rows = malloc((size_t)nbt * ROWS_TASK * sizeof(int));
	int *perm = malloc((size_t)train->n * sizeof(int));
	float *gtmp = malloc(gstride * threads * sizeof(float));
	float *masks[USV_HEAD_MAX_LAYERS] = {0};
	/* early stopping: the weights of the best curve point */
	float *best_w[USV_HEAD_MAX_LAYERS] = {0}, *best_b[USV_HEAD_MAX_LAYERS] = {0};
	sgd s = {.momentum = o->momentum, .weight_decay = o->weight_decay};
	usv_pool *pool = NULL;
	bf16_ws *bf = NULL;
	ws w = {0};
	rc = -ENOMEM;
	if (!pts || !xb || !yb || !rows || !perm || !gtmp)
		goto out;
	for (int l = 0; l < L; l++) {
		size_t nw = (size_t)h->dims[l + 1] * h->dims[l], nb = (size_t)h->dims[l + 1];
		s.vw[l] = calloc(nw, sizeof(float));
		s.vb[l] = calloc(nb, sizeof(float));
		if (!s.vw[l] || !s.vb[l])
			goto out;
		if (l < L - 1 && h->dropout[l] > 0) {
			masks[l] = malloc((size_t)B * h->dims[l + 1] * sizeof(float));
			if (!masks[l])
				goto out;
		}
		if (o->early_stopping > 0) {
			best_w[l] = malloc(nw * sizeof(float));
			best_b[l] = malloc(nb * sizeof(float));
			if (!best_w[l] || !best_b[l])
				goto out;
		}
	}
	if (ws_init(&w, h, B))
		goto out;
	if (threads > 1 && (rc = usv__pool_new(threads, &pool)))
		goto out;
	if (o->precision == USV_TRAIN_BF16) {
		if ((rc = bf16_ws_new(h, B, &bf)))
			goto out;
		for (int l = 0; l < L; l++)
			bf16_pack_weights(h, bf, l, 0, h->dims[l + 1], 0, h->dims[l]);
	}
	run ru = {.pool = pool, .bf = bf, .s = &s, .gtmp = gtmp, .gtmp_stride = gstride};
	/* the tasks call OpenBLAS from every pool thread; OpenBLAS's own
	 * thread count is main()'s (usv_nn_set_threads(), 1 expected) */

	usv_rng rng;
	usv_rng_seed(&rng, o->seed ^ 0x7472616e5f686561ULL);
	uint64_t mkey = mix64(o->seed ^ 0x64726f706f757421ULL);
	for (int i = 0; i < train->n; i++)
		perm[i] = i;
	for (int i = 0; i < nbt * ROWS_TASK; i++)
		rows[i] = -1;
	int pos = train->n; /* forces a shuffle first */
	int npts = 0;
	double acc_loss = 0;
	int acc_n = 0;
	usv_train_times tm = {0};
	usv_train_stop st = {.best_iter = -1, .best_val_loss = -1};
	int since_best = 0;
	const usv_loss_opts *lo = &o->loss;
	rc = 0;
	for (int it = 1; it <= o->iterations; it++) {
		st.iterations = it;
		double t0 = now_s();
		for (int i = 0; i < B; i++) {
			if (pos >= train->n) {
				for (int k = train->n - 1; k > 0; k--) {
					int j = (int)usv_rng_below(&rng, (uint32_t)k + 1);
					int t = perm[k];
					perm[k] = perm[j];
					perm[j] = t;
				}
				pos = 0;
			}
			int img = perm[pos++];
			int view = train->n_views > 1
			               ? (int)usv_rng_below(&rng, (uint32_t)train->n_views)
			               : 0;
			rows[i] = img * train->n_views + view;
			yb[i] = train->y[img];
		}
		batch_job bj = {train, rows, xb, h, masks, mkey ^ mix64((uint64_t)it)};
		par(pool, nbt, batch_task, &bj);
		double t1 = now_s();
		forward(h, &w, xb, B, masks, &ru);
		double t2 = now_s();
		double loss = ce_and_delta(h, &w, yb, B, 1, lo);
		if (!isfinite(loss)) {
			rc = -ERANGE;
			break;
		}
		backward(h, &w, xb, B, masks, NULL, NULL, &ru);
		double t3 = now_s();
		tm.batch += t1 - t0;
		tm.forward += t2 - t1;
		tm.backward += t3 - t2;
		acc_loss += loss;
		acc_n++;
		if (it % every == 0 || it == o->iterations) {
			usv_curve_point *p = &pts[npts++];
			p->iter = it;
			p->train_loss = (float)(acc_loss / acc_n);
			p->val_loss = p->val_acc = -1;
			if (val) {
				double vl, va;
				rc = evaluate(h, val, pool, &vl, &va);
				if (rc)
					break;
				p->val_loss = (float)vl;
				p->val_acc = (float)va;
			}
			acc_loss = 0;
			acc_n = 0;
			if (o->early_stopping > 0) {
				if (st.best_iter < 0 || p->val_loss < st.best_val_loss) {
					st.best_iter = it;
					st.best_val_loss = p->val_loss;
					since_best = 0;
					for (int l = 0; l < L; l++) {
						memcpy(best_w[l], h->w[l],
						       (size_t)h->dims[l + 1] * h->dims[l] *
						           sizeof(float));
						memcpy(best_b[l], h->b[l],
						       (size_t)h->dims[l + 1] * sizeof(float));
					}
				} else {
					since_best++;
				}
			}
			tm.eval += now_s() - t3;
			if (o->early_stopping > 0 && since_best >= o->early_stopping) {
				st.stopped_early = it < o->iterations;
				break;
			}
		}
		if (o->progress && o->progress(o->progress_ctx, it, o->iterations, (float)loss)) {
			rc = -ECANCELED;
			break;
		}
	}
	if (o->times)
		*o->times = tm;
	if (!rc && o->early_stopping > 0 && st.best_iter > 0) {
		/* the head keeps the weights of the best curve point */
		for (int l = 0; l < L; l++) {
			memcpy(h->w[l], best_w[l],
			       (size_t)h->dims[l + 1] * h->dims[l] * sizeof(float));
			memcpy(h->b[l], best_b[l], (size_t)h->dims[l + 1] * sizeof(float));
		}
	}
	if (!rc && o->stop)
		*o->stop = st;
	if (!rc) {
		*curve = pts;
		*n_curve = npts;
		pts = NULL;
	}
out:
	usv__pool_free(pool);
	bf16_ws_free(bf);
	for (int l = 0; l < L; l++) {
		free(s.vw[l]);
		free(s.vb[l]);
		free(masks[l]);
		free(best_w[l]);
		free(best_b[l]);
	}
	ws_free(&w);
	free(pts);
	free(xb);
	free(yb);
	free(rows);
	free(perm);
	free(gtmp);
	return rc;
}

/* ---------------- temperature scaling ---------------- */

double usv_temperature_nll(const float *z, const int *y, int n, int nc, double t)
{
	if (!z || !y || n < 1 || nc < 1 || !(t > 0))
		return NAN;
	const double b = 1.0 / t;
	double sum = 0;
	for (int i = 0; i < n; i++) {
		const float *r = z + (size_t)i * nc;
		double mx = r[0];
		for (int k = 1; k < nc; k++)
			mx = r[k] > mx ? r[k] : mx;
		/* logsumexp(b z) = b max + log sum exp(b (z - max)) */
		double se = 0;
		for (int k = 0; k < nc; k++)
			se += exp(b * ((double)r[k] - mx));
		sum += b * mx + log(se) - b * (double)r[y[i]];
	}
	return sum / n;
}

int usv_temperature_fit(const float *z, const int *y, int n, int nc, double *t)
{
	if (!z || !y || !t || n < 1 || nc < 2)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (y[i] < 0 || y[i] >= nc)
			return -EINVAL;
		for (int k = 0; k < nc; k++)
			if (!isfinite(z[(size_t)i * nc + k]))
				return -EINVAL;
	}
	/* golden-section search on u = log T: the invariant is that the
	 * minimum of the unimodal NLL lies in [a, b] */
	const double g = (sqrt(5.0) - 1) / 2; /* 0.618... */
	double a = log((double)USV_TEMPERATURE_MIN), b = log((double)USV_TEMPERATURE_MAX);
	double c = b - g * (b - a), d = a + g * (b - a);
	double fc = usv_temperature_nll(z, y, n, nc, exp(c));
	double fd = usv_temperature_nll(z, y, n, nc, exp(d));
	while (b - a > 1e-7) {
		if (fc <= fd) {
			b = d;
			d = c;
			fd = fc;
			c = b - g * (b - a);
			fc = usv_temperature_nll(z, y, n, nc, exp(c));
		} else {
			a = c;
			c = d;
			fc = fd;
			d = a + g * (b - a);
			fd = usv_temperature_nll(z, y, n, nc, exp(d));
		}
	}
	double u = (a + b) / 2, tt = exp(u);
	/* clamp the float rounding of exp(log(end)) into the range */
	if (tt < USV_TEMPERATURE_MIN)
		tt = USV_TEMPERATURE_MIN;
	if (tt > USV_TEMPERATURE_MAX)
		tt = USV_TEMPERATURE_MAX;
	*t = tt;
	return 0;
}
