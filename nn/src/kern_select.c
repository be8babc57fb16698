/*
 * NAME
 *	kern_select.c - selection of the fast kernels for compiled layers
 *
 * DESCRIPTION
 *	usv__fast_select() is called for every layer when a model is built,
 *	after usv__choose_impl() picked the portable implementation. It may
 *	replace that implementation with a fast one and then prepares the
 *	weights the fast kernel needs into L->packed (owned by the layer,
 *	released with free() by usv_model_free()):
 *
 *	- 3x3 stride-1 convolutions with at least 16 output channels per
 *	  group (grouped ones group by group, like CaffeNet's conv4 and
 *	  conv5) use Winograd (kern_winograd.c) when the CPU has AVX-512
 *	  and the setting allows it (default: on): F(6x6, 3x3) for outputs
 *	  of at least 48x48 with at most 256 inputs per group (see
 *	  wino_tile()), F(4x4, 3x3) otherwise. The transformed weights take
 *	  36 / 9 = 4 (F(6x6, 3x3): 64 / 9) times the memory of the FP32
 *	  weights, plus the rounding of the output channels to 12. A 2x2
 *	  stride-2 max pooling after such a layer can be computed in its
 *	  output pass (fuse_maxpool2; the session decides).
 *	- With the BF16 setting on a CPU with AVX512_BF16: at USV_BF16_FC the
 *	  inner products (and 1x1 convolutions of a 1x1 input), at
 *	  USV_BF16_ALL also the other convolutions (not depthwise) run on the
 *	  packed BF16 GEMM of kern_bgemm.c. Convolutions are im2col + GEMM
 *	  (weights packed per group at load, the im2col of each image
 *	  packed in pairs of rows), and inner products the same
 *	  GEMM with W^T packed in panels of 32 outputs, so every weight is read
 *	  once per run at any batch. Winograd layers stay FP32: in BF16 the
 *	  F(4x4, 3x3) transforms amplify the rounding of U and V to 3-7 % of
 *	  max |output| (measured against a direct convolution, c = 1..64),
 *	  too much for a network of 13 such layers. Measured top-1
 *	  agreement with FP32 on the 841 gallbladder test images: FC level
 *	  100 % (MobileNet v1 ImageNet head), ALL level 96.2 % (same) and
 *	  98.9 % (a trained 2-class head on MobileNet features): each BF16
 *	  convolution perturbs its outputs by about 0.3 %, which moves
 *	  near-tied decisions; so USV_BF16_ALL is for benchmarks and
 *	  for users to evaluate on their own data, not a daemon setting.
 *	- Weights of a layer that was packed are not read again; when they
 *	  live in the model file's mapping their pages are released
 *	  (usv__drop_pages), so a BF16 model is resident at about the size of
 *	  its packed weights.
 *
 *	The choice belongs to the model: the usv_model_opts given to the
 *	loader (usv_model_load_ex() and the _from_netdef_ex() builders). If
 *	preparing fails (no memory) the layer keeps its portable
 *	implementation.
 *
 *	Threads: all these kernels are "pooled": they split their work into
 *	tasks on the session's pool (usv__exec()) and do not call OpenBLAS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kern_fast.h"
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

/* usv__pool_run() with the signature kern_fast.h expects. */
static void fast_par_run(void *par, int ntasks, void (*fn)(void *ctx, int task, int thread),
                         void *ctx)
{
	usv__pool_run(par, ntasks, fn, ctx);
}

/* ---------------- Winograd convolution ---------------- */

static int wino_fits(const usv_mlayer *L)
{
	const usv_layer_def *d = &L->def;
	const usv_geom *g = &L->g;

	if (d->type != USV_LAYER_CONV || !L->weight)
		return 0;
	if (!usv__wino_applicable(d->kernel_h, d->kernel_w, d->stride_h, d->stride_w, d->group))
		return 0;
	int grp = d->group > 0 ? d->group : 1;
	/* few output channels leave the GEMM too little to do; few input
	 * channels are fine (VGG16 conv1_1, 3 -> 64: measured 2.4x faster than
	 * im2col + sgemm) */
	if (g->ic % grp || g->c % grp || g->c / grp < 16)
		return 0;
	if (g->pt < 0 || g->pb < 0 || g->pl < 0 || g->pr < 0 || g->pt > 8 || g->pb > 8 ||
	    g->pl > 8 || g->pr > 8)
		return 0;
	return g->h == g->ih + g->pt + g->pb - 2 && g->w == g->iw + g->pl + g->pr - 2;
}

static int wino_groups(const usv_mlayer *L)
{
	return L->def.group > 0 ? L->def.group : 1;
}

/* Output tile side: F(6x6, 3x3) where outputs are at least WINO_F6_MIN on
 * both sides and a group has at most WINO_F6_MAX_C inputs, else F(4x4,
 * 3x3). Small outputs waste much of a 6x6 tile at their edges, and the
 * transformed weights of wide layers grow by 64 / 36 (VGG16's conv4 and
 * conv5 would add 180 MB). */
#define WINO_F6_MIN 48
#define WINO_F6_MAX_C 256
static int wino_tile(const usv_mlayer *L)
{
	int grp = wino_groups(L);
	return L->g.h >= WINO_F6_MIN && L->g.w >= WINO_F6_MIN && L->g.ic / grp <= WINO_F6_MAX_C ? 6
	                                                                                        : 4;
}

static size_t wino_scratch(const usv_mlayer *L, int max_batch)
{
	int grp = wino_groups(L);
	return usv__wino_workspace_floats(wino_tile(L), max_batch, L->g.ic / grp, L->g.c / grp,
	                                  L->g.h, L->g.w);
}

static size_t wino_tscratch(const usv_mlayer *L)
{
	int grp = wino_groups(L);
	return usv__wino_thread_workspace_floats(wino_tile(L), L->g.ic / grp, L->g.c / grp);
}

static void wino_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                     float *scratch)
{
	const usv_exec *ex = usv__exec();
	const int grp = wino_groups(L), cg = L->g.ic / grp, kg = L->g.c / grp;
	/* with the pooling flag the output planes are (h / 2) x (w / 2) */
	const int pool = ((int)act & USV__ACT_MAXPOOL2) != 0;
	act = (usv_act)((int)act & USV__ACT_MASK);
	const size_t ipl = (size_t)L->g.ih * L->g.iw,
	             opl = pool ? (size_t)(L->g.h / 2) * (L->g.w / 2) : (size_t)L->g.h * L->g.w;
	usv_wino_args a = {
	    .n = n,
	    .c = cg,
	    .h = L->g.ih,
	    .w = L->g.iw,
	    .k = kg,
	    .pt = L->g.pt,
	    .pb = L->g.pb,
	    .pl = L->g.pl,
	    .pr = L->g.pr,
	    .tile = wino_tile(L),
	    .act = act,
	    .threads = ex->nthreads,
	    .par_run = ex->pool ? fast_par_run : NULL,
	    .par = ex->pool,
	    .in_stride = (long)(L->g.ic * ipl),
	    .out_stride = (long)(L->g.c * opl),
	    .tws = ex->tscratch,
	    .tws_stride = ex->tscratch_stride,
	    .pool2 = pool,
	};
	/* the session sized scratch with wino_scratch(L, max_batch) >= this */
	size_t ws = wino_scratch(L, n), uf = usv__wino_weight_floats(a.tile, kg, cg);
	for (int gi = 0; gi < grp; gi++) {
		a.u = (const float *)L->packed + gi * uf;
		a.bias = L->bias ? L->bias + gi * kg : NULL;
		usv__wino_conv(&a, in[0] + gi * cg * ipl, out + gi * kg * opl, scratch, ws);
	}
}

/* the same functions; the names say which tile size the layer got */
#define WINO_IMPL(nm)                                                                              \
	{                                                                                          \
		.name = nm, .run = wino_run, .scratch_floats = wino_scratch, .pooled = 1,          \
		.thread_scratch_floats = wino_tscratch, .fuse_maxpool2 = 1,                        \
	}
static const usv_impl impl_wino4 = WINO_IMPL("conv_winograd_f4x4");
static const usv_impl impl_wino6 = WINO_IMPL("conv_winograd_f6x6");

/* ---------------- BF16 inner product ---------------- */

static int fc_kd(const usv_mlayer *L)
{
	return L->g.ic * L->g.ih * L->g.iw;
}

/* ---------------- BF16 convolution (im2col + packed BF16 GEMM) ---------------- */

/* Per group: M output channels, K = ic / group * kh * kw, N = h * w. */
typedef struct bconv_dims {
	int grp, M, K, N;
	size_t a_elems, b_elems; /* uint16 per group */
} bconv_dims;

static int bconv_dims_of(const usv_mlayer *L, bconv_dims *d)
{
	d->grp = L->def.group > 0 ? L->def.group : 1;
	if (L->g.c % d->grp || L->g.ic % d->grp)
		return -1;
	d->M = L->g.c / d->grp;
	d->K = L->g.ic / d->grp * L->def.kernel_h * L->def.kernel_w;
	d->N = L->g.h * L->g.w;
	d->a_elems = usv__bgemm_a_elems(d->M, d->K);
	d->b_elems = usv__bgemm_b_elems(d->K, d->N);
	return d->a_elems && d->b_elems ? 0 : -1;
}

/* scratch: the packed im2col of one image, all groups (uint16, as floats) */
static size_t bconv_scratch(const usv_mlayer *L, int max_batch)
{
	bconv_dims d;
	(void)max_batch;
	if (bconv_dims_of(L, &d))
		return 0;
	return ((size_t)d.grp * d.b_elems + 1) / 2;
}

/* per thread: two rows of im2col in FP32 */
static size_t bconv_tscratch(const usv_mlayer *L)
{
	return usv__conv_is_1x1(L) ? 0 : (size_t)2 * L->g.h * L->g.w;
}

typedef struct bconv_job {
	const usv_mlayer *L;
	const usv_exec *ex;
	bconv_dims d;
	const float *x; /* this image's input */
	float *y;       /* this image's output */
	uint16_t *bp;   /* packed im2col, d.grp * d.b_elems */
	usv_act act;
	int one;                      /* 1x1: rows are the input planes */
	int pairs, pchunk;            /* pairs of rows over all groups, per pack task */
	int mbt, nbt, msplit, nsplit; /* GEMM: blocks and the split of each group */
} bconv_job;

static void bconv_pack_task(void *ctx, int task, int thread)
{
	const bconv_job *j = ctx;
	const int k2 = (j->d.K + 1) / 2;
	const int p0 = task * j->pchunk;
	const int p1 = p0 + j->pchunk < j->pairs ? p0 + j->pchunk : j->pairs;
	float *rows = j->one ? NULL : j->ex->tscratch + (size_t)thread * j->ex->tscratch_stride;

	for (int p = p0; p < p1; p++) {
		int gi = p / k2, q = p % k2;
		int r0 = gi * j->d.K + 2 * q; /* row of the whole im2col */
		int has1 = 2 * q + 1 < j->d.K;
		const float *a, *b = NULL;
		if (j->one) {
			a = j->x + (size_t)r0 * j->d.N;
			if (has1)
				b = a + j->d.N;
		} else {
			usv__im2col_rows(j->x, j->L, r0, r0 + 1 + has1, rows);
			a = rows;
			if (has1)
				b = rows + j->d.N;
		}
		usv__bgemm_pack_b_pair(a, b, j->d.N, j->d.K, q, j->bp + (size_t)gi * j->d.b_elems);
	}
}

static void bconv_gemm_task(void *ctx, int task, int thread)
{
	const bconv_job *j = ctx;
	const int per = j->msplit * j->nsplit;
	const int gi = task / per, r = task % per, ms = r / j->nsplit, ns = r % j->nsplit;
	const usv_mlayer *L = j->L;
	(void)thread;
	usv_bgemm_args g = {
	    .m = j->d.M,
	    .n = j->d.N,
	    .k = j->d.K,
	    .ap = (const uint16_t *)L->packed + (size_t)gi * j->d.a_elems,
	    .bp = j->bp + (size_t)gi * j->d.b_elems,
	    .c = j->y + (size_t)gi * j->d.M * j->d.N,
	    .ldc = j->d.N,
	    .bias = L->bias ? L->bias + (size_t)gi * j->d.M : NULL,
	    .act = j->act,
	};
	usv__bgemm(&g, j->mbt * ms / j->msplit, j->mbt * (ms + 1) / j->msplit,
	           j->nbt * ns / j->nsplit, j->nbt * (ns + 1) / j->nsplit);
}

static void bconv_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                      float *scratch)
{
	const usv_exec *ex = usv__exec();
	const int T = ex->nthreads > 0 ? ex->nthreads : 1;
	bconv_job j = {.L = L, .ex = ex, .act = act, .one = usv__conv_is_1x1(L)};

	bconv_dims_of(L, &j.d); /* checked when the layer was selected */
	j.bp = (uint16_t *)scratch;
	j.pairs = j.d.grp * ((j.d.K + 1) / 2);
	j.pchunk = (j.pairs + 4 * T - 1) / (4 * T);
	j.mbt = (j.d.M + USV_BGEMM_MR - 1) / USV_BGEMM_MR;
	j.nbt = (j.d.N + USV_BGEMM_NR - 1) / USV_BGEMM_NR;
	/* at least T tasks: split each group's larger dimension */
	int want = (T + j.d.grp - 1) / j.d.grp;
	j.msplit = j.nsplit = 1;
	if (want > 1) {
		if (j.nbt >= want)
			j.nsplit = want;
		else
			j.msplit = want < j.mbt ? want : j.mbt;
	}
	const size_t ipl = (size_t)L->g.ic * L->g.ih * L->g.iw, opl = (size_t)L->g.c * j.d.N;
	for (int b = 0; b < n; b++) {
		j.x = in[0] + (size_t)b * ipl;
		j.y = out + (size_t)b * opl;
		usv__pool_run(ex->pool, (j.pairs + j.pchunk - 1) / j.pchunk, bconv_pack_task, &j);
		usv__pool_run(ex->pool, j.d.grp * j.msplit * j.nsplit, bconv_gemm_task, &j);
	}
}

static const usv_impl impl_conv_bf16 = {
    .name = "conv_im2col_bf16",
    .run = bconv_run,
    .scratch_floats = bconv_scratch,
    .pooled = 1,
    .thread_scratch_floats = bconv_tscratch,
};

/* Packs the weights of every group; 0 and L->packed set, or -1. */
static int bconv_prepare(usv_mlayer *L)
{
	bconv_dims d;
	if (L->def.type != USV_LAYER_CONV || !L->weight || bconv_dims_of(L, &d))
		return -1;
	/* depthwise layers keep their direct kernel */
	if (d.grp > 1 && d.grp == L->g.ic && L->g.c == L->g.ic)
		return -1;
	uint16_t *ap = usv__aligned_alloc((size_t)d.grp * d.a_elems * sizeof(uint16_t));
	if (!ap)
		return -1;
	for (int gi = 0; gi < d.grp; gi++)
		if (usv__bgemm_pack_a(L->weight + (size_t)gi * d.M * d.K, d.K, 0, d.M, d.K,
		                      ap + (size_t)gi * d.a_elems)) {
			free(ap);
			return -1;
		}
	L->packed = ap;
	L->impl = &impl_conv_bf16;
	if (L->weight_mapped)
		usv__drop_pages(L->weight, (size_t)d.grp * d.M * d.K * sizeof(float));
	return 0;
}

/* ---------------- BF16 inner product on the packed GEMM ---------------- */

/* y[n, m] = x[n, K] . W^T: A = the batch (packed per run into scratch), B =
 * W^T packed once in panels of 32 outputs, so every weight is read once
 * per run whatever the batch (1-row tiles at batch 1). */
static size_t bfc_scratch(const usv_mlayer *L, int max_batch)
{
	return (usv__bgemm_a_elems(max_batch, fc_kd(L)) + 1) / 2;
}

typedef struct bfc_job {
	usv_bgemm_args g;
	int mbt, nbt, ntasks;
} bfc_job;

static void bfc_task(void *ctx, int task, int thread)
{
	const bfc_job *j = ctx;
	(void)thread;
	usv__bgemm(&j->g, 0, j->mbt, j->nbt * task / j->ntasks, j->nbt * (task + 1) / j->ntasks);
}

static void bfc_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                    float *scratch)
{
	const usv_exec *ex = usv__exec();
	const int kd = fc_kd(L);
	bfc_job j = {.g = {.m = n,
	                   .n = L->g.c,
	                   .k = kd,
	                   .ap = (const uint16_t *)scratch,
	                   .bp = L->packed,
	                   .c = out,
	                   .ldc = L->g.c,
	                   .bias = L->bias,
	                   .bias_per_col = 1,
	                   .act = act}};
	usv__bgemm_pack_a(in[0], kd, 0, n, kd, (uint16_t *)scratch);
	j.mbt = (n + USV_BGEMM_MR - 1) / USV_BGEMM_MR;
	j.nbt = (L->g.c + USV_BGEMM_NR - 1) / USV_BGEMM_NR;
	/* at least 4 panels (128 outputs) per task */
	j.ntasks = ex->nthreads < j.nbt / 4 ? ex->nthreads : j.nbt / 4;
	if (j.ntasks > 1 && ex->pool) {
		usv__pool_run(ex->pool, j.ntasks, bfc_task, &j);
	} else {
		j.ntasks = 1;
		bfc_task(&j, 0, 0);
	}
}

static const usv_impl impl_bfc = {
    .name = "fc_bf16_gemm",
    .run = bfc_run,
    .scratch_floats = bfc_scratch,
    .pooled = 1,
};

/* ---------------- selection ---------------- */

int usv__fast_select(usv_mlayer *L, const usv_model_opts *o)
{
	if (o->winograd && usv__cpu_has_avx512() && wino_fits(L)) {
		const int grp = wino_groups(L), cg = L->g.ic / grp, kg = L->g.c / grp;
		const int tile = wino_tile(L);
		size_t uf = usv__wino_weight_floats(tile, kg, cg);
		float *u = usv__aligned_alloc(uf * grp * sizeof(float));
		if (!u)
			return 0;
		for (int gi = 0; gi < grp; gi++)
			if (usv__wino_transform_weights(tile, L->weight + (size_t)gi * kg * cg * 9,
			                                kg, cg, u + gi * uf)) {
				free(u);
				return 0;
			}
		L->packed = u;
		L->impl = tile == 6 ? &impl_wino6 : &impl_wino4;
		if (L->weight_mapped)
			usv__drop_pages(L->weight,
			                (size_t)L->g.c * (L->g.ic / grp) * 9 * sizeof(float));
		return 0;
	}
	/* level 1: inner products, and convolutions that are inner products
	 * (1x1 output from a 1x1 input, like MobileNet's logits) */
	const int bf = o->bf16 < 0 ? 0 : o->bf16 > USV_BF16_ALL ? USV_BF16_ALL : o->bf16;
	const int fc_like = L->def.type == USV_LAYER_CONV && L->def.group <= 1 && L->g.h == 1 &&
	                    L->g.w == 1 && L->g.ih == 1 && L->g.iw == 1 && L->def.kernel_h == 1 &&
	                    L->def.kernel_w == 1;
	if (bf && usv__cpu_has_bf16() && L->def.type == USV_LAYER_CONV && !fc_like &&
	    bf >= USV_BF16_ALL) {
		bconv_prepare(L); /* on failure the layer keeps its FP32 kernel */
		return 0;
	}
	/* weights [c, ic] (an FC, or a 1x1 convolution of a 1x1 input) */
	if (bf && usv__cpu_has_bf16() && (L->def.type == USV_LAYER_FC || fc_like) && L->weight &&
	    L->g.h == 1 && L->g.w == 1) {
		const int kd = fc_kd(L), m = L->g.c;
		size_t ne = usv__bgemm_b_elems(kd, m);
		if (!ne)
			return 0;
		uint16_t *wb = usv__aligned_alloc(ne * sizeof(uint16_t));
		if (!wb)
			return 0;
		/* slices of 1024 outputs (whole panels), each slice's FP32 pages
		 * released once packed: packing VGG16's fc6 never holds its 411 MB
		 * of FP32 and its 205 MB of BF16 at the same time */
		const int step = 1024;
		for (int j0 = 0; j0 < m; j0 += step) {
			int nj = m - j0 < step ? m - j0 : step;
			const float *w = L->weight + (size_t)j0 * kd;
			size_t off =
			    (size_t)(j0 / USV_BGEMM_NR) * usv__bgemm_b_elems(kd, USV_BGEMM_NR);
			if (usv__bgemm_pack_b(w, kd, 1, kd, nj, wb + off)) {
				free(wb);
				return 0;
			}
			if (L->weight_mapped)
				usv__drop_pages(w, (size_t)nj * kd * sizeof(float));
		}
		L->packed = wb;
		L->impl = &impl_bfc;
	}
	return 0;
}
