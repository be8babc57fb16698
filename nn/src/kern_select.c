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
 *	  conv5) use Winograd F(4x4, 3x3) (kern_winograd.c) when
 *	  the CPU has AVX-512 and the setting allows it (default: on). The
 *	  transformed weights take 36 / 9 = 4 times (plus rounding of the
 *	  output channels to 12) the memory of the FP32 weights.
 *	- Inner products use BF16 weights with FP32 accumulation
 *	  (kern_bf16.c) when the CPU has AVX512_BF16 and the setting asks for
 *	  it (default: off, since results change by about 1e-3 relative).
 *
 *	The setting is process-wide and read when a model is built:
 *	usv_nn_set_kernels(). If preparing fails (no memory) the layer keeps
 *	its portable implementation.
 *
 *	Threads: both kernels are "pooled": they split their work into tasks
 *	on the session's pool (usv__exec()) and do not call OpenBLAS.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kern_fast.h"
#include "kernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int fast_winograd = 1;
static atomic_int fast_bf16 = 0;

void usv_nn_set_kernels(int winograd, int bf16_fc)
{
	atomic_store(&fast_winograd, winograd != 0);
	atomic_store(&fast_bf16, bf16_fc != 0);
}

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

static size_t wino_scratch(const usv_mlayer *L, int max_batch)
{
	int grp = wino_groups(L);
	return usv__wino_workspace_floats(max_batch, L->g.ic / grp, L->g.c / grp, L->g.h, L->g.w);
}

static size_t wino_tscratch(const usv_mlayer *L)
{
	int grp = wino_groups(L);
	return usv__wino_thread_workspace_floats(L->g.ic / grp, L->g.c / grp);
}

static void wino_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                     float *scratch)
{
	const usv_exec *ex = usv__exec();
	const int grp = wino_groups(L), cg = L->g.ic / grp, kg = L->g.c / grp;
	const size_t ipl = (size_t)L->g.ih * L->g.iw, opl = (size_t)L->g.h * L->g.w;
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
	    .act = act,
	    .threads = ex->nthreads,
	    .par_run = ex->pool ? fast_par_run : NULL,
	    .par = ex->pool,
	    .in_stride = (long)(L->g.ic * ipl),
	    .out_stride = (long)(L->g.c * opl),
	    .tws = ex->tscratch,
	    .tws_stride = ex->tscratch_stride,
	};
	/* the session sized scratch with wino_scratch(L, max_batch) >= this */
	size_t ws = wino_scratch(L, n), uf = usv__wino_weight_floats(kg, cg);
	for (int gi = 0; gi < grp; gi++) {
		a.u = (const float *)L->packed + gi * uf;
		a.bias = L->bias ? L->bias + gi * kg : NULL;
		usv__wino_conv(&a, in[0] + gi * cg * ipl, out + gi * kg * opl, scratch, ws);
	}
}

static const usv_impl impl_wino = {
    .name = "conv_winograd_f4x4",
    .run = wino_run,
    .scratch_floats = wino_scratch,
    .pooled = 1,
    .thread_scratch_floats = wino_tscratch,
};

/* ---------------- BF16 inner product ---------------- */

static int fc_kd(const usv_mlayer *L)
{
	return L->g.ic * L->g.ih * L->g.iw;
}

static size_t bf16_scratch(const usv_mlayer *L, int max_batch)
{
	return (usv__bf16_workspace_bytes(max_batch, fc_kd(L)) + sizeof(float) - 1) / sizeof(float);
}

typedef struct bf16_job {
	const usv_bf16_args *a;
	const uint16_t *xb;
	int ntasks;
} bf16_job;

/* Task t of ntasks: a range of output rows, multiples of 4. */
static void bf16_task(void *ctx, int task, int thread)
{
	const bf16_job *j = ctx;
	int m = j->a->m, per = (m / j->ntasks + 3) / 4 * 4;
	int m0 = task * per < m ? task * per : m;
	int m1 = task == j->ntasks - 1 || (task + 1) * per > m ? m : (task + 1) * per;

	(void)thread;
	if (m0 < m1)
		usv__bf16_gemm_converted(j->a, m0, m1, j->xb);
}

static void bf16_run(const usv_mlayer *L, usv_act act, const float *const *in, float *out, int n,
                     float *scratch)
{
	const usv_exec *ex = usv__exec();
	usv_bf16_args a = {
	    .n = n,
	    .m = L->g.c,
	    .kd = fc_kd(L),
	    .wb = L->packed,
	    .x = in[0],
	    .bias = L->bias,
	    .act = act,
	    .y = out,
	    .ldy = L->g.c,
	};
	bf16_job j = {.a = &a, .xb = (const uint16_t *)scratch, .ntasks = ex->nthreads};

	usv__bf16_convert(&a, (uint16_t *)scratch);
	/* at least 256 rows per task */
	if (j.ntasks > a.m / 256)
		j.ntasks = a.m / 256 > 0 ? a.m / 256 : 1;
	if (j.ntasks > 1 && ex->pool) {
		usv__pool_run(ex->pool, j.ntasks, bf16_task, &j);
	} else {
		j.ntasks = 1;
		bf16_task(&j, 0, 0);
	}
}

static const usv_impl impl_bf16 = {
    .name = "fc_bf16_avx512",
    .run = bf16_run,
    .scratch_floats = bf16_scratch,
    .pooled = 1,
};

/* ---------------- selection ---------------- */

int usv__fast_select(usv_mlayer *L)
{
	if (atomic_load(&fast_winograd) && usv__cpu_has_avx512() && wino_fits(L)) {
		const int grp = wino_groups(L), cg = L->g.ic / grp, kg = L->g.c / grp;
		size_t uf = usv__wino_weight_floats(kg, cg);
		float *u = usv__aligned_alloc(uf * grp * sizeof(float));
		if (!u)
			return 0;
		for (int gi = 0; gi < grp; gi++)
			if (usv__wino_transform_weights(L->weight + (size_t)gi * kg * cg * 9, kg,
			                                cg, u + gi * uf)) {
				free(u);
				return 0;
			}
		L->packed = u;
		L->impl = &impl_wino;
		return 0;
	}
	if (atomic_load(&fast_bf16) && usv__cpu_has_bf16() && L->def.type == USV_LAYER_FC &&
	    L->weight && L->g.h == 1 && L->g.w == 1) {
		size_t ne = usv__bf16_weight_elems(L->g.c, fc_kd(L));
		if (!ne)
			return 0;
		uint16_t *wb = usv__aligned_alloc(ne * sizeof(uint16_t));
		if (!wb)
			return 0;
		if (usv__bf16_pack(L->weight, L->g.c, fc_kd(L), wb)) {
			free(wb);
			return 0;
		}
		L->packed = wb;
		L->impl = &impl_bf16;
	}
	return 0;
}
