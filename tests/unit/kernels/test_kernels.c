/*
 * NAME
 *	test_kernels.c - fast-path kernels against naive reference loops
 *
 * DESCRIPTION
 *	Winograd F(4x4, 3x3): random shapes (odd sizes, padding 0/1/2 and
 *	asymmetric, channel counts that are not multiples of 16, batches > 1,
 *	chunks that cross image boundaries, every tail of a chunk: 1..11,
 *	12..27 and 28..31 tiles) against a direct convolution
 *	computed in double; both the AVX-512 and the portable transforms.
 *	The error is measured relative to max |reference| and must stay below
 *	a bound that grows with the reduction length.
 *
 *	BF16: rounding of single values; the packed BF16 GEMM (AVX512_BF16 and
 *	scalar, every tile height, A and B transposed or not, bias per row or
 *	column, accumulation, split rectangles) against a double reference on
 *	the same bf16-rounded operands (tight). The AVX512_BF16 cases are
 *	skipped, with a message, on CPUs without the feature.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <cmocka.h>

#include "kern_fast.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rand_buf(size_t n)
{
	float *p = malloc(n * sizeof(float));
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = frand();
	return p;
}

static double ref_act(double v, usv_act act)
{
	if (act == USV_ACT_RELU)
		return v > 0 ? v : 0;
	if (act == USV_ACT_RELU6)
		return v > 0 ? (v < 6 ? v : 6) : 0;
	return v;
}

/* ---------------- CPU ---------------- */

static void test_cpu_features(void **state)
{
	unsigned f = usv__cpu_features();

	if (f & USV_CPU_AVX512BF16)
		assert_true(f & USV_CPU_AVX512F);
	if (usv__cpu_has_bf16())
		assert_true(usv__cpu_has_avx512() || !(f & USV_CPU_FMA));
	usv__cpu_mask(USV_CPU_AVX512BF16 | USV_CPU_AVX512F);
	assert_false(usv__cpu_has_bf16());
	assert_false(usv__cpu_has_avx512());
	assert_int_equal(usv__cpu_features() & (USV_CPU_AVX512BF16 | USV_CPU_AVX512F), 0);
	usv__cpu_mask(0);
	assert_int_equal(usv__cpu_features(), f);
	printf("# cpu features 0x%x (bf16 kernels %s)\n", f,
	       usv__cpu_has_bf16() ? "available" : "not available");
}

/* ---------------- Winograd ---------------- */

typedef struct wcase {
	int n, c, k, h, w, pt, pb, pl, pr;
	usv_act act;
	int bias;
	long chunk; /* floats of V + M per chunk; 0 = default */
	int threads;
} wcase;

/* out: the convolution with the activation; returns the largest sum of
 * |terms| (bias included) of any output, the scale of its rounding. */
static double ref_conv3x3(const wcase *t, const float *in, const float *wt, const float *bias,
                          double *out, int oh, int ow)
{
	double mabs = 0;
	for (int n = 0; n < t->n; n++)
		for (int o = 0; o < t->k; o++)
			for (int y = 0; y < oh; y++)
				for (int x = 0; x < ow; x++) {
					double s = bias ? bias[o] : 0.0;
					double sa = fabs(s);
					for (int i = 0; i < t->c; i++) {
						const float *p =
						    in + ((size_t)n * t->c + i) * t->h * t->w;
						const float *g = wt + ((size_t)o * t->c + i) * 9;
						for (int r = 0; r < 3; r++) {
							int yy = y + r - t->pt;
							if (yy < 0 || yy >= t->h)
								continue;
							for (int q = 0; q < 3; q++) {
								int xx = x + q - t->pl;
								if (xx < 0 || xx >= t->w)
									continue;
								s += (double)p[yy * t->w + xx] *
								     g[r * 3 + q];
								sa +=
								    fabs((double)p[yy * t->w + xx] *
								         g[r * 3 + q]);
							}
						}
					}
					out[(((size_t)n * t->k + o) * oh + y) * ow + x] =
					    ref_act(s, t->act);
					mabs = sa > mabs ? sa : mabs;
				}
	return mabs;
}

/* A fork-join runner that runs the tasks one after the other, in reverse
 * order (shares must not depend on running in order), telling each task it
 * runs on thread task % 3 (per-thread workspaces). */
static int par_calls;
static void serial_par(void *par, int ntasks, void (*fn)(void *, int, int), void *ctx)
{
	(void)par;
	par_calls++;
	for (int t = ntasks - 1; t >= 0; t--)
		fn(ctx, t, t % 3);
}
static int use_par;
static int cur_tile = 4; /* F(m x m, 3x3) under test */
static int cur_pool;     /* 2x2 stride-2 max pooling fused */

/* Runs one case; returns max |err| / max(max |ref|, max sum |terms| / 4):
 * the second keeps a case whose few outputs happen to nearly cancel from
 * looking inaccurate. */
static double run_wcase(const wcase *t)
{
	int oh = t->h + t->pt + t->pb - 2, ow = t->w + t->pl + t->pr - 2;
	size_t nin = (size_t)t->n * t->c * t->h * t->w;
	size_t nout = (size_t)t->n * t->k * oh * ow;
	const int pool = cur_pool;
	const size_t npool = (size_t)t->n * t->k * (oh / 2) * (ow / 2);
	float *in = rand_buf(nin), *wt = rand_buf((size_t)t->k * t->c * 9);
	float *bias = t->bias ? rand_buf((size_t)t->k) : NULL;
	const int m = cur_tile;
	float *u = malloc(usv__wino_weight_floats(m, t->k, t->c) * sizeof(float));
	float *out = malloc((nout + 1) * sizeof(float));
	double *ref = malloc(nout * sizeof(double));
	assert_non_null(u);
	assert_non_null(out);
	assert_non_null(ref);

	usv__wino_set_chunk_floats(t->chunk);
	size_t wsf = usv__wino_workspace_floats(m, t->n, t->c, t->k, oh, ow);
	assert_true(wsf > 0);
	float *ws = aligned_alloc(64, (wsf * sizeof(float) + 63) / 64 * 64);
	assert_non_null(ws);
	assert_int_equal(usv__wino_transform_weights(m, wt, t->k, t->c, u), 0);
	/* per-thread workspaces: 3 threads' worth (the runner numbers 0..2) */
	size_t tstride = usv__wino_thread_workspace_floats(m, t->c, t->k);
	float *tws =
	    use_par ? aligned_alloc(64, (3 * tstride * sizeof(float) + 63) / 64 * 64) : NULL;
	if (use_par)
		assert_non_null(tws);
	usv_wino_args a = {.n = t->n,
	                   .c = t->c,
	                   .h = t->h,
	                   .w = t->w,
	                   .k = t->k,
	                   .pt = t->pt,
	                   .pb = t->pb,
	                   .pl = t->pl,
	                   .pr = t->pr,
	                   .tile = m,
	                   .u = u,
	                   .bias = bias,
	                   .act = t->act,
	                   .threads = t->threads,
	                   .par_run = use_par ? serial_par : NULL,
	                   .tws = tws,
	                   .tws_stride = tstride,
	                   .pool2 = pool};
	const size_t nres = pool ? npool : nout;
	out[nres] = 12345.0f; /* guard */
	assert_int_equal(usv__wino_conv(&a, in, out, ws, wsf), 0);
	assert_true(out[nres] == 12345.0f);
	const double mabs = ref_conv3x3(t, in, wt, bias, ref, oh, ow);
	if (pool) { /* the reference pooled in place: [n, k, oh / 2, ow / 2] */
		const int ph = oh / 2, pw = ow / 2;
		for (size_t pl = 0; pl < (size_t)t->n * t->k; pl++)
			for (int y = 0; y < ph; y++)
				for (int x = 0; x < pw; x++) {
					const double *r =
					    ref + pl * oh * ow + (size_t)2 * y * ow + 2 * x;
					double v = fmax(fmax(r[0], r[1]), fmax(r[ow], r[ow + 1]));
					ref[(pl * ph + y) * pw + x] = v;
				}
		nout = npool;
	}
	double mref = 0, merr = 0;
	for (size_t i = 0; i < nout; i++) {
		double e = fabs(out[i] - ref[i]);
		assert_false(isnan(out[i]));
		if (fabs(ref[i]) > mref)
			mref = fabs(ref[i]);
		if (e > merr)
			merr = e;
	}
	usv__wino_set_chunk_floats(0);
	free(in);
	free(wt);
	free(bias);
	free(u);
	free(out);
	free(ref);
	free(ws);
	free(tws);
	double scale = mref > 0.25 * mabs ? mref : 0.25 * mabs;
	return scale > 0 ? merr / scale : merr;
}

static const wcase wcases[] = {
    {1, 1, 1, 3, 3, 0, 0, 0, 0, USV_ACT_NONE, 0, 0, 0},         /* 1x1 output */
    {1, 3, 5, 7, 9, 1, 1, 1, 1, USV_ACT_RELU, 1, 0, 0},         /* odd sizes */
    {2, 17, 19, 13, 11, 1, 1, 1, 1, USV_ACT_NONE, 1, 0, 0},     /* batch, odd channels */
    {3, 16, 16, 8, 8, 0, 0, 0, 0, USV_ACT_RELU, 1, 0, 0},       /* exact tiles */
    {1, 33, 7, 10, 15, 2, 0, 1, 2, USV_ACT_RELU6, 1, 0, 0},     /* asymmetric pad */
    {2, 5, 9, 14, 14, 1, 1, 1, 1, USV_ACT_RELU, 0, 0, 0},       /* 14x14, pad 1 */
    {3, 7, 6, 21, 23, 1, 1, 1, 1, USV_ACT_NONE, 1, 2000, 0},    /* chunks of 16 tiles */
    {2, 20, 12, 17, 19, 0, 1, 1, 0, USV_ACT_RELU, 1, 40000, 0}, /* chunks of 32 tiles */
    {1, 64, 24, 12, 12, 1, 1, 1, 1, USV_ACT_NONE, 1, 0, 0},     /* longer reduction */
    {2, 9, 40, 9, 30, 1, 1, 0, 0, USV_ACT_RELU, 1, 20000, 0},   /* 4 blocks of 12 outputs */
    {1, 1, 30, 6, 5, 0, 0, 1, 1, USV_ACT_NONE, 1, 0, 0},        /* one input channel */
    {1, 16, 13, 24, 20, 1, 1, 1, 1, USV_ACT_NONE, 1, 0, 0},     /* 30 tiles: 32-wide block */
    {2, 5, 17, 26, 41, 1, 1, 1, 1, USV_ACT_RELU, 1, 0, 0},      /* rows of 11 tiles */
    {2, 24, 30, 13, 70, 1, 1, 1, 1, USV_ACT_RELU, 1, 0, 0},     /* rows of 18 tiles, prefetch */
    {2, 8, 20, 28, 44, 1, 1, 1, 1, USV_ACT_RELU, 1, 0, 0},      /* even: pooled quads of rows */
};

static void check_wino_all(const char *path, int threads)
{
	for (int m = 4; m <= 6; m += 2)
		for (size_t i = 0; i < sizeof(wcases) / sizeof(wcases[0]); i++) {
			wcase t = wcases[i];
			t.threads = threads;
			cur_tile = m;
			double rel = run_wcase(&t);
			cur_tile = 4;
			/* Bound: rounding of the transforms grows with sqrt(9 c);
			 * F(6x6, 3x3) has larger transform constants (measured
			 * about 3x the error of F(4x4, 3x3)) */
			double bound = (m == 4 ? 1.0 : 4.0) * (2e-6 * sqrt(9.0 * t.c) + 2e-6);
			printf("# winograd F%d %s %dT case %zu: n%d c%d k%d %dx%d pad %d%d%d%d: "
			       "rel err %.2e (bound %.1e)\n",
			       m, path, threads, i, t.n, t.c, t.k, t.h, t.w, t.pt, t.pb, t.pl, t.pr,
			       rel, bound);
			assert_true(rel < bound);
		}
}

/* Fused 2x2 max pooling: the cases with an even output, both tile sizes. */
static void check_wino_pool(const char *path, int threads)
{
	int ran = 0;
	for (int m = 4; m <= 6; m += 2)
		for (size_t i = 0; i < sizeof(wcases) / sizeof(wcases[0]); i++) {
			wcase t = wcases[i];
			int oh = t.h + t.pt + t.pb - 2, ow = t.w + t.pl + t.pr - 2;
			if (oh % 2 || ow % 2)
				continue;
			t.threads = threads;
			cur_tile = m;
			cur_pool = 1;
			double rel = run_wcase(&t);
			cur_tile = 4;
			cur_pool = 0;
			double bound = (m == 4 ? 1.0 : 4.0) * (2e-6 * sqrt(9.0 * t.c) + 2e-6);
			printf("# winograd F%d + maxpool 2x2 %s %dT case %zu: rel err %.2e (bound "
			       "%.1e)\n",
			       m, path, threads, i, rel, bound);
			assert_true(rel < bound);
			ran++;
		}
	assert_true(ran >= 8);
}

static void test_wino_fast(void **state)
{
	if (!usv__cpu_has_avx512()) {
		printf("# skipped: CPU has no AVX-512F/FMA, the portable path is tested below\n");
		skip();
	}
	check_wino_all("avx512", 1);
	check_wino_all("avx512", 3);
	check_wino_pool("avx512", 1);
	check_wino_pool("avx512", 3);
	use_par = 1;
	par_calls = 0;
	check_wino_all("avx512-par", 3);
	check_wino_pool("avx512-par", 3);
	use_par = 0;
	assert_true(par_calls > 0);
}

static void test_wino_portable(void **state)
{
	usv__cpu_mask(USV_CPU_AVX512F);
	check_wino_all("portable", 1);
	check_wino_all("portable", 2);
	check_wino_pool("portable", 2);
	usv__cpu_mask(0);
}

/* Transformed weights of a single tap are G e G^T: check one known value
 * set against the closed form of G. */
static void test_wino_weights(void **state)
{
	float w[9] = {0};
	float u[36 * 12]; /* one block of 12 output channels, 11 of them zero */
	double g[6] = {1.0 / 4, -1.0 / 6, -1.0 / 6, 1.0 / 24, 1.0 / 24, 0};

	w[0] = 1.0f; /* only g[0][0]: U = G[:,0] G[:,0]^T */
	assert_int_equal(usv__wino_transform_weights(4, w, 1, 1, u), 0);
	for (int r = 0; r < 6; r++)
		for (int s = 0; s < 6; s++)
			for (int o = 0; o < 12; o++)
				assert_float_equal(u[(r * 6 + s) * 12 + o], o ? 0.0 : g[r] * g[s],
				                   1e-7);
	assert_true(usv__wino_applicable(3, 3, 1, 1, 1));
	assert_false(usv__wino_applicable(3, 3, 2, 2, 1));
	assert_true(usv__wino_applicable(3, 3, 1, 1, 2)); /* one call per group */
	assert_false(usv__wino_applicable(5, 5, 1, 1, 1));
}

static void test_wino_errors(void **state)
{
	float u[36 * 12] = {0}, in[9] = {0}, out[1];
	usv_wino_args a = {.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .u = u};

	assert_int_equal(usv__wino_transform_weights(4, NULL, 1, 1, u), -EINVAL);
	assert_int_equal(usv__wino_transform_weights(4, in, 0, 1, u), -EINVAL);
	assert_int_equal(usv__wino_transform_weights(5, in, 1, 1, u), -EINVAL);
	assert_int_equal(usv__wino_weight_floats(5, 1, 1), 0);
	assert_int_equal(usv__wino_workspace_floats(4, 0, 1, 1, 1, 1), 0);
	assert_int_equal(usv__wino_workspace_floats(3, 1, 1, 1, 1, 1), 0);
	size_t need = usv__wino_workspace_floats(4, 1, 1, 1, 1, 1);
	assert_true(need > 0);
	float *ws = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
	assert_non_null(ws);
	assert_int_equal(usv__wino_conv(&a, in, out, ws, need - 1), -EINVAL);
	a.h = 2; /* output would be 0x1 */
	assert_int_equal(usv__wino_conv(&a, in, out, ws, need), -EINVAL);
	a.h = 3;
	a.pt = -1;
	assert_int_equal(usv__wino_conv(&a, in, out, ws, need), -EINVAL);
	a.pt = 0;
	a.tile = 5; /* no such F(m x m, 3x3) */
	assert_int_equal(usv__wino_conv(&a, in, out, ws, need), -EINVAL);
	a.tile = 0;  /* 0: F(4x4, 3x3) */
	a.pool2 = 1; /* a 1x1 output cannot be pooled 2x2 */
	assert_int_equal(usv__wino_conv(&a, in, out, ws, need), -EINVAL);
	a.pool2 = 0;
	assert_int_equal(usv__wino_conv(&a, in, out, ws, need), 0);
	assert_true(out[0] == 0.0f);
	free(ws);
}

/* ---------------- BF16 ---------------- */

static void test_bf16_rounding(void **state)
{
	assert_int_equal(usv__bf16_from_f32(1.0f), 0x3f80);
	assert_int_equal(usv__bf16_from_f32(-2.0f), 0xc000);
	/* 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even (1) */
	assert_int_equal(usv__bf16_from_f32(1.0f + 0x1p-8f), 0x3f80);
	/* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to even */
	assert_int_equal(usv__bf16_from_f32(1.0f + 3 * 0x1p-8f), 0x3f82);
	assert_int_equal(usv__bf16_from_f32(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	assert_int_equal(usv__bf16_from_f32(INFINITY), 0x7f80);
	assert_true(isnan(usv__bf16_to_f32(usv__bf16_from_f32(NAN))));
	assert_true(usv__bf16_to_f32(0x3f81) == 1.0f + 0x1p-7f);
	/* largest float rounds to infinity in bf16 */
	assert_int_equal(usv__bf16_from_f32(3.4028235e38f), 0x7f80);
}

/* ---------------- packed BF16 GEMM ---------------- */

typedef struct gcase {
	int m, n, k, ta, tb, bias, bias_col, acc;
	usv_act act;
} gcase;

static const gcase gcases[] = {
    {1, 1, 1, 0, 0, 0, 0, 0, USV_ACT_NONE},       /* smallest */
    {2, 45, 77, 0, 1, 1, 1, 0, USV_ACT_RELU},     /* 2-row tiles, FC layout (B = W^T) */
    {1, 100, 1030, 0, 1, 1, 1, 0, USV_ACT_NONE},  /* batch 1 against W^T: 1-row tiles */
    {12, 32, 2, 0, 0, 1, 0, 0, USV_ACT_RELU},     /* one exact tile */
    {13, 33, 3, 0, 0, 1, 0, 0, USV_ACT_NONE},     /* edges in m, n and an odd k */
    {96, 729, 1200, 0, 0, 1, 0, 0, USV_ACT_RELU}, /* CaffeNet conv2 group: several k slices */
    {7, 50, 513, 1, 0, 1, 1, 0, USV_ACT_RELU6},   /* A transposed, bias per column */
    {40, 17, 31, 0, 1, 0, 0, 1, USV_ACT_NONE},    /* B transposed, C += A.B */
    {25, 70, 600, 1, 1, 1, 0, 1, USV_ACT_RELU},   /* both transposed, accumulate, bias */
};

/* Runs a case through fn, the rectangle split into 2 x 3 pieces; returns
 * max |C - ref| / max(sum |a||b|) against a double reference on the same
 * bf16-rounded operands (so only the order of FP32 sums differs). */
static double run_gcase(const gcase *t, int (*fn)(const usv_bgemm_args *, int, int, int, int))
{
	const int m = t->m, n = t->n, k = t->k;
	float *a = rand_buf((size_t)m * k), *b = rand_buf((size_t)k * n);
	float *bias = rand_buf((size_t)(t->bias_col ? n : m));
	float *c = rand_buf((size_t)m * n + 1), *c0 = malloc((size_t)m * n * sizeof(float));
	uint16_t *ap = aligned_alloc(64, (usv__bgemm_a_elems(m, k) * 2 + 63) / 64 * 64);
	uint16_t *bp = aligned_alloc(64, (usv__bgemm_b_elems(k, n) * 2 + 63) / 64 * 64);
	assert_non_null(c0);
	assert_non_null(ap);
	assert_non_null(bp);
	memcpy(c0, c, (size_t)m * n * sizeof(float));
	c[(size_t)m * n] = 777.0f; /* guard */
	/* a is [m][k] (or [k][m] when ta), b is [k][n] (or [n][k] when tb) */
	assert_int_equal(usv__bgemm_pack_a(a, t->ta ? m : k, t->ta, m, k, ap), 0);
	assert_int_equal(usv__bgemm_pack_b(b, t->tb ? k : n, t->tb, k, n, bp), 0);
	usv_bgemm_args g = {.m = m,
	                    .n = n,
	                    .k = k,
	                    .ap = ap,
	                    .bp = bp,
	                    .c = c,
	                    .ldc = n,
	                    .bias = t->bias ? bias : NULL,
	                    .bias_per_col = t->bias_col,
	                    .act = t->act,
	                    .accumulate = t->acc};
	int mbt = (m + USV_BGEMM_MR - 1) / USV_BGEMM_MR,
	    nbt = (n + USV_BGEMM_NR - 1) / USV_BGEMM_NR;
	int ms[3] = {0, mbt / 2, mbt}, ns[4] = {0, nbt / 3, 2 * nbt / 3, nbt};
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			assert_int_equal(fn(&g, ms[i], ms[i + 1], ns[j], ns[j + 1]), 0);
	assert_true(c[(size_t)m * n] == 777.0f);
	double worst = 0;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0, mag = 0;
			for (int q = 0; q < k; q++) {
				float av = t->ta ? a[(size_t)q * m + i] : a[(size_t)i * k + q];
				float bv = t->tb ? b[(size_t)j * k + q] : b[(size_t)q * n + j];
				double x = (double)usv__bf16_to_f32(usv__bf16_from_f32(av)) *
				           usv__bf16_to_f32(usv__bf16_from_f32(bv));
				s += x;
				mag += fabs(x);
			}
			if (t->acc)
				s += c0[(size_t)i * n + j];
			if (t->bias)
				s += bias[t->bias_col ? j : i];
			s = ref_act(s, t->act);
			double e = fabs(c[(size_t)i * n + j] - s) / (mag + 1.0);
			if (e > worst)
				worst = e;
		}
	free(a);
	free(b);
	free(bias);
	free(c);
	free(c0);
	free(ap);
	free(bp);
	return worst;
}

static void check_bgemm_all(int (*fn)(const usv_bgemm_args *, int, int, int, int), const char *path)
{
	for (size_t i = 0; i < sizeof(gcases) / sizeof(gcases[0]); i++) {
		double e = run_gcase(&gcases[i], fn);
		printf("# bgemm %s m%d n%d k%d: err / (sum|ab| + 1) %.1e\n", path, gcases[i].m,
		       gcases[i].n, gcases[i].k, e);
		/* FP32 sums of up to 1200 products: a few ulp of the magnitude */
		assert_true(e < 1e-6);
	}
}

static void test_bgemm_ref(void **state)
{
	(void)state;
	check_bgemm_all(usv__bgemm_ref, "scalar");
}

static void test_bgemm_fast(void **state)
{
	(void)state;
	if (!usv__cpu_has_bf16()) {
		printf("# skipped: CPU has no AVX512_BF16; usv__bgemm() runs the scalar path\n");
		skip();
	}
	check_bgemm_all(usv__bgemm, "avx512bf16");
	/* packing of B with the feature hidden must give the same bits */
	float b[3 * 40];
	for (int i = 0; i < 120; i++)
		b[i] = (float)i * 0.37f - 11.0f;
	size_t ne = usv__bgemm_b_elems(3, 40);
	uint16_t *p1 = calloc(ne, 2), *p2 = calloc(ne, 2);
	assert_non_null(p1);
	assert_non_null(p2);
	assert_int_equal(usv__bgemm_pack_b(b, 40, 0, 3, 40, p1), 0);
	usv__cpu_mask(USV_CPU_AVX512BF16);
	assert_int_equal(usv__bgemm_pack_b(b, 40, 0, 3, 40, p2), 0);
	usv__cpu_mask(0);
	assert_memory_equal(p1, p2, ne * 2);
	free(p1);
	free(p2);
}

static void test_bgemm_errors(void **state)
{
	(void)state;
	float a[4] = {1, 2, 3, 4}, c[4];
	uint16_t ap[64] __attribute__((aligned(4))), bp[128] __attribute__((aligned(4)));
	assert_int_equal(usv__bgemm_a_elems(0, 1), 0);
	assert_int_equal(usv__bgemm_b_elems(1, -1), 0);
	assert_int_equal(usv__bgemm_pack_a(a, 1, 0, 2, 2, ap), -EINVAL); /* lda < k */
	assert_int_equal(usv__bgemm_pack_a(a, 2, 0, 2, 2, ap), 0);
	assert_int_equal(usv__bgemm_pack_b(a, 2, 0, 2, 2, bp), 0);
	usv_bgemm_args g = {.m = 2, .n = 2, .k = 2, .ap = ap, .bp = bp, .c = c, .ldc = 2};
	assert_int_equal(usv__bgemm(&g, 0, 2, 0, 1), -EINVAL); /* 1 row block only */
	assert_int_equal(usv__bgemm(&g, 0, 1, 0, 1), 0);
	/* [1 2; 3 4]^2 = [7 10; 15 22] */
	assert_true(c[0] == 7.0f && c[1] == 10.0f && c[2] == 15.0f && c[3] == 22.0f);
	g.ldc = 1;
	assert_int_equal(usv__bgemm_ref(&g, 0, 1, 0, 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cpu_features),  cmocka_unit_test(test_wino_weights),
	    cmocka_unit_test(test_wino_errors),   cmocka_unit_test(test_wino_fast),
	    cmocka_unit_test(test_wino_portable), cmocka_unit_test(test_bf16_rounding),
	    cmocka_unit_test(test_bgemm_ref),     cmocka_unit_test(test_bgemm_fast),
	    cmocka_unit_test(test_bgemm_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
