/*
 * NAME
 *	test_kernels_engine.c - the fast kernels inside the engine
 *
 * DESCRIPTION
 *	Builds one small network (two 3x3 convolutions, padding 1 and 0, the
 *	second with 2 groups, channel counts that are not multiples of 12 or
 *	16, a 1x1 convolution, then two inner products) four times: portable
 *	kernels, Winograd, Winograd + BF16, BF16 without Winograd (im2col
 *	convolutions in BF16), each with its own usv_model_opts. Checks which
 *	implementation each layer got
 *	(Winograd only on AVX-512 CPUs, BF16 only with AVX512_BF16) and that
 *	sessions with 1 and 2 threads and batches 1 and 3 give the portable
 *	model's outputs within the kernels' rounding. The same network loaded
 *	from a file with different options, the models alive together: each
 *	model's layers follow its own options (nothing process-wide).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>

#include "usv/nn.h"
#include "kern_fast.h"
#include "nn_test_util.h"

static uint32_t rs = 2463534242u;

static float frand(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 17;
	rs ^= rs << 5;
	return (float)(rs >> 8) / 16777216.0f * 2.0f - 1.0f;
}

static void add_weights(usv_netdef *d, const char *layer, int ndim, const int64_t *shape,
                        float scale)
{
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	float *w = malloc(n * sizeof(float)), *b = malloc((size_t)shape[0] * sizeof(float));
	assert_non_null(w);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		w[i] = frand() * scale;
	for (int64_t i = 0; i < shape[0]; i++)
		b[i] = frand() * 0.1f;
	char tn[USV_NAME_MAX + 16];
	snprintf(tn, sizeof tn, "%s.weight", layer);
	assert_int_equal(usv_netdef_add_tensor(d, tn, ndim, shape, w), 0);
	snprintf(tn, sizeof tn, "%s.bias", layer);
	int64_t bs[1] = {shape[0]};
	assert_int_equal(usv_netdef_add_tensor(d, tn, 1, bs, b), 0);
	free(w);
	free(b);
}

/* A convolution of k outputs, square kernel, equal padding on all sides,
 * bias, weights drawn at once (scale as in add_weights). */
static void add_conv(usv_netdef *d, const char *name, const char *input, int k, int c, int ksize,
                     int pad, int group, usv_act act, float scale)
{
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "%s", name);
	l.type = USV_LAYER_CONV;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "%s", input);
	l.num_output = k;
	l.kernel_h = l.kernel_w = ksize;
	l.stride_h = l.stride_w = 1;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = pad;
	l.group = group;
	l.has_bias = 1;
	l.act = act;
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	add_weights(d, name, 4, (int64_t[]){k, c / group, ksize, ksize}, scale);
}

static usv_netdef *make_net(void)
{
	usv_netdef *d = tu_netdef(17, 13, 11);

	add_conv(d, "conv1", "data", 32, 17, 3, 1, 1, USV_ACT_RELU, 0.25f);
	/* 16 inputs and 19 outputs per group */
	add_conv(d, "conv2", "conv1", 38, 32, 3, 0, 2, USV_ACT_RELU, 0.2f);
	/* 1x1: the BF16 path packs the input planes directly */
	add_conv(d, "conv3", "conv2", 24, 38, 1, 0, 1, USV_ACT_RELU, 0.3f);

	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "fc1");
	l.type = USV_LAYER_FC;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "conv3");
	l.num_output = 600; /* >= 512: two BF16 tasks on 2 threads */
	l.has_bias = 1;
	l.act = USV_ACT_RELU;
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	add_weights(d, "fc1", 2, (int64_t[]){600, 24 * 11 * 9}, 0.05f);

	snprintf(l.name, sizeof l.name, "fc2");
	snprintf(l.inputs[0], sizeof l.inputs[0], "fc1");
	l.num_output = 7;
	l.act = USV_ACT_NONE;
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	add_weights(d, "fc2", 2, (int64_t[]){7, 600}, 0.1f);
	return d;
}

static usv_model *build(const usv_netdef *d, int winograd, int bf16)
{
	usv_model *m = NULL;
	char eb[256];
	usv_model_opts o = {.winograd = winograd, .bf16 = bf16};
	assert_int_equal(usv_model_from_netdef_ex(d, &o, &m, eb, sizeof eb), 0);
	return m;
}

static const char *impl_of(const usv_model *m, const char *name)
{
	for (int i = 0; i < usv_model_n_layers(m); i++)
		if (strcmp(usv_model_layer_name(m, i), name) == 0)
			return usv_model_layer_impl(m, i);
	return "";
}

/* Runs batch n with the given threads; returns a malloc'ed copy of fc2. */
static float *run(const usv_model *m, int n, int threads, const float *x)
{
	usv_session *s;
	usv_session_opts o = {.max_batch = 3, .threads = threads};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	const float *y;
	int chw[3];
	assert_int_equal(usv_session_run(s, x, n, &y, chw), 0);
	assert_int_equal(chw[0], 7);
	float *c = malloc((size_t)n * 7 * sizeof(float));
	assert_non_null(c);
	memcpy(c, y, (size_t)n * 7 * sizeof(float));
	usv_session_free(s);
	return c;
}

static double rel_diff(const float *a, const float *b, size_t n)
{
	double m = 0, e = 0;
	for (size_t i = 0; i < n; i++) {
		m = fmax(m, fabs(b[i]));
		e = fmax(e, fabs(a[i] - b[i]));
	}
	return m > 0 ? e / m : e;
}

static void test_engine_selection_and_results(void **state)
{
	(void)state;
	usv_netdef *d = make_net();
	usv_model *mp = build(d, 0, 0), *mw = build(d, 1, 0), *mb = build(d, 1, 1);
	usv_model *mc = build(d, 0, USV_BF16_ALL); /* BF16 im2col convolutions */

	assert_string_equal(impl_of(mp, "conv1"), "conv_im2col_sgemm");
	assert_string_equal(impl_of(mp, "fc1"), impl_of(mw, "fc1"));
	int wino = usv__cpu_has_avx512(), bf16 = usv__cpu_has_bf16();
	printf("# conv1: %s, fc1 with bf16 requested: %s\n", impl_of(mw, "conv1"),
	       impl_of(mb, "fc1"));
	assert_string_equal(impl_of(mw, "conv1"),
	                    wino ? "conv_winograd_f4x4" : "conv_im2col_sgemm");
	assert_string_equal(impl_of(mw, "conv2"), impl_of(mw, "conv1"));
	assert_string_equal(impl_of(mb, "fc1"), bf16 ? "fc_bf16_gemm" : impl_of(mp, "fc1"));
	assert_string_equal(impl_of(mb, "fc2"), impl_of(mb, "fc1"));
	for (int i = 1; i <= 3; i++) {
		char nm[8];
		snprintf(nm, sizeof nm, "conv%d", i);
		assert_string_equal(impl_of(mc, nm), bf16 ? "conv_im2col_bf16" : impl_of(mp, nm));
	}
	assert_string_equal(impl_of(mb, "conv3"), impl_of(mp, "conv3")); /* FC level: FP32 convs */

	size_t nx = (size_t)3 * 17 * 13 * 11;
	float *x = malloc(nx * sizeof(float));
	assert_non_null(x);
	for (size_t i = 0; i < nx; i++)
		x[i] = frand();
	float *ref = run(mp, 3, 1, x);
	for (int threads = 1; threads <= 2; threads++)
		for (int n = 1; n <= 3; n += 2) {
			float *yp = run(mp, n, threads, x);
			float *yw = run(mw, n, threads, x);
			float *yb = run(mb, n, threads, x);
			float *yc = run(mc, n, threads, x);
			double dp = rel_diff(yp, ref, (size_t)n * 7);
			double dw = rel_diff(yw, ref, (size_t)n * 7);
			double db = rel_diff(yb, ref, (size_t)n * 7);
			double dc = rel_diff(yc, ref, (size_t)n * 7);
			printf("# threads %d batch %d: portable %.1e, winograd %.1e, +bf16 %.1e, "
			       "bf16 convs %.1e\n",
			       threads, n, dp, dw, db, dc);
			assert_true(dp < 1e-5);
			assert_true(dw < 1e-4);
			assert_true(db < 3e-2);
			assert_true(dc < 3e-2);
			free(yp);
			free(yw);
			free(yb);
			free(yc);
		}
	free(ref);
	free(x);
	usv_model_free(mp);
	usv_model_free(mw);
	usv_model_free(mb);
	usv_model_free(mc);
	usv_netdef_free(d);
}

/* conv (separate ReLU layer) -> 2x2/2 max pool -> conv (ReLU inside) ->
 * 2x2/2 max pool -> fc, on a 12x16 input: both pools can be fused into the
 * Winograd convolutions before them. */
static usv_netdef *make_pool_net(void)
{
	usv_netdef *d = tu_netdef(5, 12, 16);

	add_conv(d, "conv1", "data", 20, 5, 3, 1, 1, USV_ACT_NONE, 0.3f);

	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "relu1");
	l.type = USV_LAYER_RELU;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "conv1");
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);

	for (int k = 1; k <= 2; k++) {
		memset(&l, 0, sizeof l);
		snprintf(l.name, sizeof l.name, "pool%d", k);
		l.type = USV_LAYER_MAXPOOL;
		l.n_inputs = 1;
		snprintf(l.inputs[0], sizeof l.inputs[0], k == 1 ? "relu1" : "conv2");
		l.kernel_h = l.kernel_w = 2;
		l.stride_h = l.stride_w = 2;
		assert_int_equal(usv_netdef_add_layer(d, &l), 0);
		if (k == 1)
			add_conv(d, "conv2", "pool1", 16, 20, 3, 1, 1, USV_ACT_RELU, 0.2f);
	}

	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "fc1");
	l.type = USV_LAYER_FC;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "pool2");
	l.num_output = 7;
	l.has_bias = 1;
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	add_weights(d, "fc1", 2, (int64_t[]){7, 16 * 3 * 4}, 0.1f);
	return d;
}

/* Output of `layer` (keep_all or not) for batch n, copied; NULL if the
 * session does not hold it. */
static float *blob_of(const usv_model *m, int n, int threads, int keep_all, const float *x,
                      const char *layer, size_t *count)
{
	usv_session *s;
	usv_session_opts o = {.max_batch = 3, .threads = threads, .keep_all = keep_all};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	assert_int_equal(usv_session_run(s, x, n, NULL, NULL), 0);
	int chw[3];
	const float *b = usv_session_blob(s, layer, chw);
	float *c = NULL;
	if (b) {
		*count = (size_t)n * chw[0] * chw[1] * chw[2];
		c = malloc(*count * sizeof(float));
		assert_non_null(c);
		memcpy(c, b, *count * sizeof(float));
	}
	usv_session_free(s);
	return c;
}

static void test_engine_pool_fusion(void **state)
{
	(void)state;
	usv_netdef *d = make_pool_net();
	usv_model *mp = build(d, 0, 0), *mw = build(d, 1, 0);
	size_t nx = (size_t)3 * 5 * 12 * 16;
	float *x = malloc(nx * sizeof(float));
	assert_non_null(x);
	for (size_t i = 0; i < nx; i++)
		x[i] = frand();
	const char *layers[] = {"pool1", "pool2", "fc1"};
	for (int threads = 1; threads <= 2; threads++)
		for (int n = 1; n <= 3; n += 2)
			for (int li = 0; li < 3; li++) {
				size_t cr = 0, cf = 0, cu = 0;
				float *ref = blob_of(mp, n, threads, 1, x, layers[li], &cr);
				float *fused = blob_of(mw, n, threads, 0, x, layers[li], &cf);
				float *unf = blob_of(mw, n, threads, 1, x, layers[li], &cu);
				assert_non_null(ref);
				assert_non_null(unf);
				/* fc1 is the end layer; the pools are held where no later
				 * layer wrote over them */
				if (fused) {
					assert_int_equal(cf, cr);
					double df = rel_diff(fused, ref, cr);
					printf("# pool fusion, %s, threads %d batch %d: %.1e\n",
					       layers[li], threads, n, df);
					assert_true(df < 1e-4);
				}
				assert_int_equal(cu, cr);
				assert_true(rel_diff(unf, ref, cr) < 1e-4);
				free(ref);
				free(fused);
				free(unf);
			}
	/* with fusion the pools run nothing (0 ms in a profile) and the
	 * convolutions' own outputs never exist */
	if (usv__cpu_has_avx512()) {
		usv_session *s;
		usv_session_opts o = {.max_batch = 1, .threads = 1, .profile = 1};
		assert_int_equal(usv_session_new(mw, &o, &s), 0);
		assert_int_equal(usv_session_run(s, x, 1, NULL, NULL), 0);
		int chw[3];
		assert_null(usv_session_blob(s, "conv1", chw));
		assert_null(usv_session_blob(s, "conv2", chw));
		const double *ms = usv_session_layer_ms(s);
		assert_non_null(ms);
		for (int i = 0; i < usv_model_n_layers(mw); i++) {
			const char *nm = usv_model_layer_name(mw, i);
			if (strncmp(nm, "pool", 4) == 0 || strcmp(nm, "relu1") == 0)
				assert_true(ms[i] == 0.0);
			if (strncmp(nm, "conv", 4) == 0)
				assert_true(ms[i] > 0.0);
		}
		usv_session_free(s);
	}
	free(x);
	usv_model_free(mp);
	usv_model_free(mw);
	usv_netdef_free(d);
}

/* usv_model_load_ex(): the options given to the loader are what the
 * layers got, per model, whatever was loaded before or after. */
static void test_engine_load_opts(void **state)
{
	(void)state;
	usv_netdef *d = make_net();
	char path[] = "/tmp/usv_test_kernels_XXXXXX", eb[256];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(usv_netdef_write(d, path, eb, sizeof eb), 0);
	const int wino = usv__cpu_has_avx512(), bf16 = usv__cpu_has_bf16();
	usv_model_opts all = {.winograd = 1, .bf16 = USV_BF16_ALL};
	usv_model_opts portable = {.winograd = 0, .bf16 = USV_BF16_OFF};
	usv_model_opts fc = usv_model_opts_default();
	fc.bf16 = USV_BF16_FC;
	usv_model *ma, *mp, *md, *mf;
	assert_int_equal(usv_model_load_ex(path, &all, &ma, eb, sizeof eb), 0);
	assert_int_equal(usv_model_load_ex(path, &portable, &mp, eb, sizeof eb), 0);
	assert_int_equal(usv_model_load_ex(path, NULL, &md, eb, sizeof eb), 0);
	assert_int_equal(usv_model_load_ex(path, &fc, &mf, eb, sizeof eb), 0);
	unlink(path);

	/* portable: im2col everywhere, FP32 inner products */
	assert_string_equal(impl_of(mp, "conv1"), "conv_im2col_sgemm");
	assert_string_equal(impl_of(mp, "fc1"), "fc_gemv_or_sgemm_wxt");
	/* default (NULL): Winograd where the CPU allows, FP32 inner products */
	assert_string_equal(impl_of(md, "conv1"),
	                    wino ? "conv_winograd_f4x4" : "conv_im2col_sgemm");
	assert_string_equal(impl_of(md, "fc1"), "fc_gemv_or_sgemm_wxt");
	/* the daemon's bf16: BF16 inner products, FP32 convolutions */
	assert_string_equal(impl_of(mf, "conv1"), impl_of(md, "conv1"));
	assert_string_equal(impl_of(mf, "conv3"), impl_of(mp, "conv3"));
	assert_string_equal(impl_of(mf, "fc1"), bf16 ? "fc_bf16_gemm" : "fc_gemv_or_sgemm_wxt");
	/* everything: Winograd first, BF16 for the other convolutions */
	assert_string_equal(impl_of(ma, "conv1"), impl_of(md, "conv1"));
	assert_string_equal(impl_of(ma, "conv3"), bf16 ? "conv_im2col_bf16" : "conv_1x1_sgemm");
	assert_string_equal(impl_of(ma, "fc2"), impl_of(mf, "fc2"));
	/* the same weights: the file's hash does not depend on the options */
	assert_string_equal(usv_model_get_meta(ma)->sha256, usv_model_get_meta(mp)->sha256);

	/* out-of-range levels are clamped, not refused */
	usv_model_opts big = {.winograd = 0, .bf16 = 99};
	usv_model *mx;
	assert_int_equal(usv_model_from_netdef_ex(d, &big, &mx, eb, sizeof eb), 0);
	assert_string_equal(impl_of(mx, "conv3"), impl_of(ma, "conv3"));
	usv_model_free(mx);

	usv_model_free(ma);
	usv_model_free(mp);
	usv_model_free(md);
	usv_model_free(mf);
	usv_netdef_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_engine_selection_and_results),
	    cmocka_unit_test(test_engine_pool_fusion),
	    cmocka_unit_test(test_engine_load_opts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
