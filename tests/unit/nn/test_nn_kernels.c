/*
 * NAME
 *	test_nn_kernels.c - every layer kernel against a naive loop
 *
 * DESCRIPTION
 *	Each case builds a one- or few-layer network with random weights and
 *	random geometry (odd sizes, strides, asymmetric and TensorFlow
 *	SAME/VALID padding, groups, Caffe ceil rounding), runs it through a
 *	session at batch n and compares every image with a direct loop
 *	written here from the layer's definition (output sizes are derived
 *	independently of the engine). Tolerance is relative to max |ref|.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "nn_test_util.h"
#include "usv/nn.h"

/* Runs the model built from d on in[n,...]; returns a malloc()ed copy of
 * the output of `layer` (NULL = last) and its chw. */
static float *run_net(usv_netdef *d, const float *in, int n, const char *layer, int chw[3])
{
	char eb[512] = "";
	assert_int_equal(usv_netdef_validate(d, eb, sizeof eb), 0);
	usv_model *m;
	int rc = usv_model_from_netdef(d, &m, eb, sizeof eb);
	if (rc)
		print_error("%s\n", eb);
	assert_int_equal(rc, 0);
	usv_session *s;
	usv_session_opts o = {.max_batch = n, .threads = 1, .end_layer = layer};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	const float *y;
	assert_int_equal(usv_session_run(s, in, n, &y, chw), 0);
	size_t cnt = (size_t)n * chw[0] * chw[1] * chw[2];
	float *copy = malloc(cnt * sizeof(float));
	assert_non_null(copy);
	memcpy(copy, y, cnt * sizeof(float));
	usv_session_free(s);
	/* the same with the work split over 3 threads */
	usv_session_opts o3 = {.max_batch = n, .threads = 3, .end_layer = layer};
	assert_int_equal(usv_session_new(m, &o3, &s), 0);
	int chw3[3];
	assert_int_equal(usv_session_run(s, in, n, &y, chw3), 0);
	assert_memory_equal(chw, chw3, sizeof chw3);
	tu_assert_close(y, copy, cnt, 1e-5f, "3 threads vs 1");
	usv_session_free(s);
	usv_model_free(m);
	return copy;
}

static float act_ref(float v, usv_act a)
{
	if (a == USV_ACT_RELU)
		return v > 0 ? v : 0;
	if (a == USV_ACT_RELU6)
		return v < 0 ? 0 : v > 6 ? 6 : v;
	return v;
}

/* TensorFlow SAME / VALID and explicit output size and leading pad. */
static int out_size(usv_pad_mode mode, int in, int k, int s, int p0, int p1, int *lead)
{
	if (mode == USV_PAD_SAME) {
		int o = (in + s - 1) / s;
		int tot = (o - 1) * s + k - in;
		*lead = tot > 0 ? tot / 2 : 0;
		return o;
	}
	if (mode == USV_PAD_VALID) {
		*lead = 0;
		return (in - k) / s + 1;
	}
	*lead = p0;
	return (in + p0 + p1 - k) / s + 1;
}

static void conv_ref(usv_netdef *d, const usv_layer_def *l, const float *x, int n, int c, int h,
                     int w, float *y, int *oh_, int *ow_)
{
	int pt, pl;
	int oh = out_size(l->pad_mode, h, l->kernel_h, l->stride_h, l->pad_t, l->pad_b, &pt);
	int ow = out_size(l->pad_mode, w, l->kernel_w, l->stride_w, l->pad_l, l->pad_r, &pl);
	char tn[96];
	snprintf(tn, sizeof tn, "%s.weight", l->name);
	const float *W = usv_netdef_tensor(d, tn, NULL, NULL);
	snprintf(tn, sizeof tn, "%s.bias", l->name);
	const float *B = l->has_bias ? usv_netdef_tensor(d, tn, NULL, NULL) : NULL;
	int g = l->group, O = l->num_output, cg = c / g, og = O / g;
	for (int b = 0; b < n; b++)
		for (int o = 0; o < O; o++)
			for (int yy = 0; yy < oh; yy++)
				for (int xx = 0; xx < ow; xx++) {
					double s = B ? B[o] : 0;
					int gi = o / og;
					for (int ci = 0; ci < cg; ci++)
						for (int i = 0; i < l->kernel_h; i++)
							for (int j = 0; j < l->kernel_w; j++) {
								int iy = yy * l->stride_h - pt + i;
								int ix = xx * l->stride_w - pl + j;
								if (iy < 0 || iy >= h || ix < 0 ||
								    ix >= w)
									continue;
								int cc = gi * cg + ci;
								s += (double)W[((o * cg + ci) *
								                    l->kernel_h +
								                i) *
								                   l->kernel_w +
								               j] *
								     x[(((size_t)b * c + cc) * h +
								        iy) *
								           w +
								       ix];
							}
					y[(((size_t)b * O + o) * oh + yy) * ow + xx] =
					    act_ref((float)s, l->act);
				}
	*oh_ = oh, *ow_ = ow;
}

/* A depthwise shape to test instead of a random one (conv_case()). */
struct dw_spec {
	int c, kh, kw, sh, sw, mode, pad, h, w, n;
};

static void conv_case_spec(int depthwise, int force_1x1, const struct dw_spec *sp);

static void conv_case(int depthwise, int force_1x1)
{
	conv_case_spec(depthwise, force_1x1, NULL);
}

static void conv_case_spec(int depthwise, int force_1x1, const struct dw_spec *sp)
{
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "conv");
	l.type = USV_LAYER_CONV;
	l.n_inputs = 1;
	snprintf(l.inputs[0], USV_NAME_MAX, "data");
	int g = depthwise ? tu_irand(2, 9) : tu_irand(1, 3);
	int c = depthwise ? g : g * tu_irand(1, 4);
	l.group = g;
	l.num_output = depthwise ? g : g * tu_irand(1, 5);
	l.kernel_h = force_1x1 ? 1 : tu_irand(1, 5);
	l.kernel_w = force_1x1 ? 1 : (tu_irand(0, 2) ? l.kernel_h : tu_irand(1, 5));
	l.stride_h = force_1x1 ? 1 : tu_irand(1, 3);
	l.stride_w = force_1x1 ? 1 : (tu_irand(0, 1) ? l.stride_h : tu_irand(1, 3));
	l.pad_mode = force_1x1 ? USV_PAD_EXPLICIT : (usv_pad_mode)tu_irand(0, 2);
	if (l.pad_mode == USV_PAD_EXPLICIT && !force_1x1) {
		l.pad_t = tu_irand(0, 2), l.pad_b = tu_irand(0, 2);
		l.pad_l = tu_irand(0, 2), l.pad_r = tu_irand(0, 2);
	}
	l.has_bias = tu_irand(0, 1);
	l.act = (usv_act)tu_irand(0, 2);
	int h = l.kernel_h + tu_irand(0, 11), w = l.kernel_w + tu_irand(0, 11);
	int n = tu_irand(1, 3);
	if (sp) {
		g = c = l.group = l.num_output = sp->c;
		l.kernel_h = sp->kh, l.kernel_w = sp->kw, l.stride_h = sp->sh, l.stride_w = sp->sw;
		l.pad_mode = (usv_pad_mode)sp->mode;
		l.pad_t = l.pad_b = l.pad_l = l.pad_r = sp->mode == USV_PAD_EXPLICIT ? sp->pad : 0;
		h = sp->h, w = sp->w, n = sp->n;
	}
	usv_netdef *d = tu_netdef(c, h, w);
	tu_layer(d, &l, c, h, w);
	size_t nin = (size_t)n * c * h * w;
	float *x = tu_alloc_rand(nin);
	for (size_t i = 0; i < nin; i++)
		x[i] *= 3.0f; /* so that ReLU6 clips */
	int chw[3];
	float *got = run_net(d, x, n, NULL, chw);
	float *ref = malloc((size_t)n * l.num_output * (h + 4) * (w + 4) * sizeof(float));
	int oh, ow;
	conv_ref(d, &l, x, n, c, h, w, ref, &oh, &ow);
	assert_int_equal(chw[0], l.num_output);
	assert_int_equal(chw[1], oh);
	assert_int_equal(chw[2], ow);
	char what[160];
	snprintf(what, sizeof what,
	         "conv c%d o%d g%d k%dx%d s%dx%d mode%d pad%d,%d,%d,%d %dx%d n%d", c, l.num_output,
	         g, l.kernel_h, l.kernel_w, l.stride_h, l.stride_w, l.pad_mode, l.pad_t, l.pad_b,
	         l.pad_l, l.pad_r, h, w, n);
	tu_assert_close(got, ref, (size_t)n * l.num_output * oh * ow, 1e-5f, what);
	free(got);
	free(ref);
	free(x);
	usv_netdef_free(d);
}

static void test_conv(void **state)
{
	tu_seed(1);
	for (int i = 0; i < 60; i++)
		conv_case(0, i % 6 == 0);
}

static void test_depthwise(void **state)
{
	tu_seed(2);
	for (int i = 0; i < 30; i++)
		conv_case(1, 0);
}

/* MobileNet's depthwise shapes (3x3, stride 1 and 2, SAME and explicit
 * padding, planes from 1x1 to 112x112) and the kernel's other paths
 * (other filter sizes, stride 3, unequal strides). */
static void test_depthwise_shapes(void **state)
{
	(void)state;
	tu_seed(22);
#define S USV_PAD_SAME
#define V USV_PAD_VALID
#define E USV_PAD_EXPLICIT
	static const struct dw_spec specs[] = {
	    {17, 3, 3, 1, 1, S, 0, 7, 7, 2},    {9, 3, 3, 1, 1, S, 0, 14, 14, 1},
	    {5, 3, 3, 2, 2, S, 0, 14, 14, 2},   {5, 3, 3, 2, 2, S, 0, 15, 15, 1},
	    {3, 3, 3, 2, 2, S, 0, 112, 112, 1}, {3, 3, 3, 1, 1, S, 0, 112, 112, 1},
	    {4, 3, 3, 1, 1, E, 1, 7, 9, 2},     {4, 3, 3, 2, 2, E, 1, 28, 28, 1},
	    {4, 3, 3, 2, 2, E, 0, 9, 9, 1},     {6, 3, 3, 1, 1, V, 0, 6, 5, 1},
	    {6, 3, 3, 2, 2, V, 0, 8, 8, 1},     {2, 3, 3, 1, 1, S, 0, 1, 1, 1},
	    {2, 3, 3, 2, 2, S, 0, 1, 2, 1},     {3, 5, 5, 2, 2, S, 0, 13, 11, 2},
	    {3, 5, 5, 1, 1, E, 2, 10, 10, 1},   {3, 3, 3, 3, 3, S, 0, 17, 16, 1},
	    {3, 1, 3, 1, 2, E, 1, 9, 10, 1},    {3, 3, 3, 1, 2, S, 0, 12, 12, 1},
	    {3, 3, 3, 2, 1, E, 1, 12, 12, 1},   {3, 7, 7, 2, 2, S, 0, 20, 20, 1},
	};
#undef S
#undef V
#undef E
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
		conv_case_spec(1, 0, &specs[i]);
}

static void test_fc(void **state)
{
	tu_seed(3);
	for (int it = 0; it < 20; it++) {
		int c = tu_irand(1, 6), h = tu_irand(1, 4), w = tu_irand(1, 4);
		int n = it % 2 ? 1 : tu_irand(2, 5);
		usv_layer_def l;
		memset(&l, 0, sizeof l);
		snprintf(l.name, sizeof l.name, "fc");
		l.type = USV_LAYER_FC;
		l.n_inputs = 1;
		snprintf(l.inputs[0], USV_NAME_MAX, "data");
		l.num_output = tu_irand(1, 40);
		l.has_bias = tu_irand(0, 1);
		l.act = (usv_act)tu_irand(0, 2);
		usv_netdef *d = tu_netdef(c, h, w);
		tu_layer(d, &l, c, h, w);
		int in = c * h * w;
		float *x = tu_alloc_rand((size_t)n * in);
		const float *W = usv_netdef_tensor(d, "fc.weight", NULL, NULL);
		const float *B = l.has_bias ? usv_netdef_tensor(d, "fc.bias", NULL, NULL) : NULL;
		float *ref = malloc((size_t)n * l.num_output * sizeof(float));
		for (int b = 0; b < n; b++)
			for (int o = 0; o < l.num_output; o++) {
				double s = B ? B[o] : 0;
				for (int i = 0; i < in; i++)
					s += (double)W[(size_t)o * in + i] * x[(size_t)b * in + i];
				ref[b * l.num_output + o] = act_ref((float)s, l.act);
			}
		int chw[3];
		float *got = run_net(d, x, n, NULL, chw);
		assert_int_equal(chw[0], l.num_output);
		assert_int_equal(chw[1] * chw[2], 1);
		tu_assert_close(got, ref, (size_t)n * l.num_output, 1e-5f, "fc");
		free(got);
		free(ref);
		free(x);
		usv_netdef_free(d);
	}
}

/* Nonzero: the window and stride of the next pool cases (the max-pool
 * kernel has its own loops for 2x2 and 3x3 windows of stride 2). */
static int force_k, force_s;

/* Caffe pooling (explicit symmetric pad) or TF pooling (SAME / VALID). */
static void pool_case(int ave, usv_pad_mode mode, int ceil_mode)
{
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "pool");
	l.type = ave ? USV_LAYER_AVEPOOL : USV_LAYER_MAXPOOL;
	l.n_inputs = 1;
	snprintf(l.inputs[0], USV_NAME_MAX, "data");
	l.kernel_h = tu_irand(1, 4);
	l.kernel_w = tu_irand(0, 1) ? l.kernel_h : tu_irand(1, 4);
	l.stride_h = tu_irand(1, 3);
	l.stride_w = tu_irand(0, 1) ? l.stride_h : tu_irand(1, 3);
	if (force_k) {
		l.kernel_h = l.kernel_w = force_k;
		l.stride_h = l.stride_w = force_s;
	}
	if (mode == USV_PAD_EXPLICIT) {
		/* Caffe nets have stride <= kernel; otherwise a ceil-rounded window
		 * may lie entirely outside the input */
		l.stride_h = l.stride_h > l.kernel_h ? l.kernel_h : l.stride_h;
		l.stride_w = l.stride_w > l.kernel_w ? l.kernel_w : l.stride_w;
	}
	l.pad_mode = mode;
	l.ceil_mode = ceil_mode;
	int ph = 0, pw = 0;
	if (mode == USV_PAD_EXPLICIT) {
		ph = tu_irand(0, l.kernel_h - 1);
		pw = tu_irand(0, l.kernel_w - 1);
		l.pad_t = l.pad_b = ph;
		l.pad_l = l.pad_r = pw;
	}
	int c = tu_irand(1, 4), h = l.kernel_h + tu_irand(0, 12), w = l.kernel_w + tu_irand(0, 12);
	int n = tu_irand(1, 2);
	int oh, ow, pt, pl;
	if (mode == USV_PAD_EXPLICIT) {
		/* Caffe's PoolingLayer::Reshape */
		if (ceil_mode) {
			oh = (int)ceil((float)(h + 2 * ph - l.kernel_h) / l.stride_h) + 1;
			ow = (int)ceil((float)(w + 2 * pw - l.kernel_w) / l.stride_w) + 1;
			if (ph && (oh - 1) * l.stride_h >= h + ph)
				oh--;
			if (pw && (ow - 1) * l.stride_w >= w + pw)
				ow--;
		} else {
			oh = (h + 2 * ph - l.kernel_h) / l.stride_h + 1;
			ow = (w + 2 * pw - l.kernel_w) / l.stride_w + 1;
		}
		pt = ph, pl = pw;
	} else {
		oh = out_size(mode, h, l.kernel_h, l.stride_h, 0, 0, &pt);
		ow = out_size(mode, w, l.kernel_w, l.stride_w, 0, 0, &pl);
	}
	usv_netdef *d = tu_netdef(c, h, w);
	tu_layer(d, &l, c, h, w);
	float *x = tu_alloc_rand((size_t)n * c * h * w);
	float *ref = malloc((size_t)n * c * oh * ow * sizeof(float));
	for (int b = 0; b < n; b++)
		for (int k = 0; k < c; k++)
			for (int yy = 0; yy < oh; yy++)
				for (int xx = 0; xx < ow; xx++) {
					int hs = yy * l.stride_h - pt, ws = xx * l.stride_w - pl;
					int he = hs + l.kernel_h, we = ws + l.kernel_w;
					int size = 0;
					if (mode == USV_PAD_EXPLICIT) {
						int hc = he < h + ph ? he : h + ph;
						int wc = we < w + pw ? we : w + pw;
						size = (hc - hs) * (wc - ws);
					}
					hs = hs < 0 ? 0 : hs, ws = ws < 0 ? 0 : ws;
					he = he > h ? h : he, we = we > w ? w : we;
					double s = 0;
					float mx = -FLT_MAX;
					int cnt = 0;
					for (int i = hs; i < he; i++)
						for (int j = ws; j < we; j++) {
							float v =
							    x[(((size_t)b * c + k) * h + i) * w +
							      j];
							s += v;
							mx = v > mx ? v : mx;
							cnt++;
						}
					if (mode != USV_PAD_EXPLICIT)
						size = cnt;
					ref[(((size_t)b * c + k) * oh + yy) * ow + xx] =
					    ave ? (float)(s / size) : mx;
				}
	int chw[3];
	float *got = run_net(d, x, n, NULL, chw);
	char what[128];
	snprintf(what, sizeof what, "%s mode%d ceil%d k%dx%d s%dx%d p%d,%d in %dx%d",
	         ave ? "ave" : "max", mode, ceil_mode, l.kernel_h, l.kernel_w, l.stride_h,
	         l.stride_w, ph, pw, h, w);
	if (chw[1] != oh || chw[2] != ow)
		print_error("%s: got %dx%d want %dx%d\n", what, chw[1], chw[2], oh, ow);
	assert_int_equal(chw[0], c);
	assert_int_equal(chw[1], oh);
	assert_int_equal(chw[2], ow);
	tu_assert_close(got, ref, (size_t)n * c * oh * ow, 1e-6f, what);
	free(got);
	free(ref);
	free(x);
	usv_netdef_free(d);
}

static void test_pool(void **state)
{
	tu_seed(4);
	for (int i = 0; i < 25; i++) {
		pool_case(0, USV_PAD_EXPLICIT, 1);
		pool_case(1, USV_PAD_EXPLICIT, 1);
		pool_case(0, USV_PAD_EXPLICIT, 0);
		pool_case(1, USV_PAD_EXPLICIT, 0);
		pool_case(0, USV_PAD_SAME, 0);
		pool_case(1, USV_PAD_SAME, 0);
		pool_case(1, USV_PAD_VALID, 0);
	}
	for (int k = 2; k <= 3; k++)
		for (int i = 0; i < 8; i++) {
			force_k = k;
			force_s = 2;
			pool_case(0, USV_PAD_EXPLICIT, 1);
			pool_case(0, USV_PAD_EXPLICIT, 0);
			pool_case(0, USV_PAD_SAME, 0);
			pool_case(0, USV_PAD_VALID, 0);
		}
	force_k = force_s = 0;
}

/* The classic Caffe case: 3x3/2 max pooling of 55 -> 27 and 13 -> 6. */
static void test_pool_caffe_sizes(void **state)
{
	static const int in[4] = {55, 27, 13, 6}, out[4] = {27, 13, 6, 3};
	for (int i = 0; i < 4; i++) {
		usv_layer_def l;
		memset(&l, 0, sizeof l);
		snprintf(l.name, sizeof l.name, "pool");
		l.type = USV_LAYER_MAXPOOL;
		l.n_inputs = 1;
		snprintf(l.inputs[0], USV_NAME_MAX, "data");
		l.kernel_h = l.kernel_w = 3;
		l.stride_h = l.stride_w = 2;
		l.ceil_mode = 1;
		usv_netdef *d = tu_netdef(1, in[i], in[i]);
		tu_layer(d, &l, 1, in[i], in[i]);
		usv_model *m;
		assert_int_equal(usv_model_from_netdef(d, &m, NULL, 0), 0);
		int chw[3];
		assert_int_equal(usv_model_layer_shape(m, "pool", chw), 0);
		assert_int_equal(chw[1], out[i]);
		usv_model_free(m);
		usv_netdef_free(d);
	}
}

static void test_lrn(void **state)
{
	tu_seed(5);
	for (int it = 0; it < 12; it++) {
		usv_layer_def l;
		memset(&l, 0, sizeof l);
		snprintf(l.name, sizeof l.name, "norm");
		l.type = USV_LAYER_LRN;
		l.n_inputs = 1;
		snprintf(l.inputs[0], USV_NAME_MAX, "data");
		l.local_size = 2 * tu_irand(0, 3) + 1;
		l.alpha = it % 3 ? 1e-4f : 0.5f;
		l.beta = it % 2 ? 0.75f : 0.5f + 0.1f * tu_irand(0, 5);
		l.k = it % 4 ? 1.0f : 2.0f;
		int c = tu_irand(1, 12), h = tu_irand(1, 7), w = tu_irand(1, 7), n = tu_irand(1, 2);
		usv_netdef *d = tu_netdef(c, h, w);
		tu_layer(d, &l, c, h, w);
		size_t cnt = (size_t)n * c * h * w;
		float *x = tu_alloc_rand(cnt);
		for (size_t i = 0; i < cnt; i++)
			x[i] *= 30.0f;
		float *ref = malloc(cnt * sizeof(float));
		for (int b = 0; b < n; b++)
			for (int k = 0; k < c; k++)
				for (int p = 0; p < h * w; p++) {
					double s = 0;
					for (int j = k - l.local_size / 2;
					     j <= k + l.local_size / 2; j++)
						if (j >= 0 && j < c) {
							double v =
							    x[((size_t)b * c + j) * h * w + p];
							s += v * v;
						}
					double sc = l.k + l.alpha / l.local_size * s;
					size_t idx = ((size_t)b * c + k) * h * w + p;
					ref[idx] = (float)(x[idx] / pow(sc, l.beta));
				}
		int chw[3];
		float *got = run_net(d, x, n, NULL, chw);
		tu_assert_close(got, ref, cnt, 2e-5f, "lrn");
		free(got);
		free(ref);
		free(x);
		usv_netdef_free(d);
	}
}

static void simple_layer(usv_layer_def *l, const char *name, usv_layer_type t, const char *in)
{
	memset(l, 0, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name);
	l->type = t;
	l->n_inputs = 1;
	snprintf(l->inputs[0], USV_NAME_MAX, "%s", in);
}

static void test_softmax_gap_relu(void **state)
{
	tu_seed(6);
	int c = 7, h = 3, w = 5, n = 2;
	size_t cnt = (size_t)n * c * h * w;
	float *x = tu_alloc_rand(cnt);
	for (size_t i = 0; i < cnt; i++)
		x[i] *= 8.0f;
	/* softmax over channels at every position */
	usv_layer_def l;
	usv_netdef *d = tu_netdef(c, h, w);
	simple_layer(&l, "sm", USV_LAYER_SOFTMAX, "data");
	tu_layer(d, &l, c, h, w);
	int chw[3];
	float *got = run_net(d, x, n, NULL, chw);
	float *ref = malloc(cnt * sizeof(float));
	for (int b = 0; b < n; b++)
		for (int p = 0; p < h * w; p++) {
			double s = 0;
			for (int k = 0; k < c; k++)
				s += exp(x[((size_t)b * c + k) * h * w + p]);
			for (int k = 0; k < c; k++) {
				size_t i = ((size_t)b * c + k) * h * w + p;
				ref[i] = (float)(exp(x[i]) / s);
			}
		}
	tu_assert_close(got, ref, cnt, 1e-5f, "softmax");
	free(got);
	usv_netdef_free(d);
	/* global average pooling */
	d = tu_netdef(c, h, w);
	simple_layer(&l, "gap", USV_LAYER_GLOBAL_AVEPOOL, "data");
	tu_layer(d, &l, c, h, w);
	got = run_net(d, x, n, NULL, chw);
	assert_int_equal(chw[0], c);
	assert_int_equal(chw[1] * chw[2], 1);
	for (int b = 0; b < n; b++)
		for (int k = 0; k < c; k++) {
			double s = 0;
			for (int p = 0; p < h * w; p++)
				s += x[((size_t)b * c + k) * h * w + p];
			ref[b * c + k] = (float)(s / (h * w));
		}
	tu_assert_close(got, ref, (size_t)n * c, 1e-6f, "global avepool");
	free(got);
	usv_netdef_free(d);
	/* relu6 -> dropout -> flatten */
	d = tu_netdef(c, h, w);
	simple_layer(&l, "r6", USV_LAYER_RELU6, "data");
	tu_layer(d, &l, c, h, w);
	simple_layer(&l, "drop", USV_LAYER_DROPOUT, "r6");
	l.dropout_ratio = 0.5f;
	tu_layer(d, &l, c, h, w);
	simple_layer(&l, "flat", USV_LAYER_FLATTEN, "drop");
	tu_layer(d, &l, c, h, w);
	got = run_net(d, x, n, NULL, chw);
	assert_int_equal(chw[0], c * h * w);
	for (size_t i = 0; i < cnt; i++)
		ref[i] = act_ref(x[i], USV_ACT_RELU6);
	tu_assert_close(got, ref, cnt, 0.0f, "relu6/dropout/flatten");
	free(got);
	usv_netdef_free(d);
	free(ref);
	free(x);
}

/* add (with fused ReLU) and concat of branches, including the network input */
static void test_add_concat(void **state)
{
	tu_seed(7);
	int c = 3, h = 6, w = 5, n = 3;
	usv_netdef *d = tu_netdef(c, h, w);
	usv_layer_def l;
	simple_layer(&l, "a", USV_LAYER_CONV, "data");
	l.num_output = 3, l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = 1, l.group = 1, l.has_bias = 1;
	tu_layer(d, &l, c, h, w);
	simple_layer(&l, "b", USV_LAYER_CONV, "data");
	l.num_output = 3, l.kernel_h = l.kernel_w = 1, l.stride_h = l.stride_w = 1, l.group = 1;
	tu_layer(d, &l, c, h, w);
	simple_layer(&l, "sum", USV_LAYER_ADD, "a");
	l.n_inputs = 3;
	snprintf(l.inputs[1], USV_NAME_MAX, "b");
	snprintf(l.inputs[2], USV_NAME_MAX, "data");
	l.act = USV_ACT_RELU;
	tu_layer(d, &l, c, h, w);
	simple_layer(&l, "cat", USV_LAYER_CONCAT, "sum");
	l.n_inputs = 3;
	snprintf(l.inputs[1], USV_NAME_MAX, "data");
	snprintf(l.inputs[2], USV_NAME_MAX, "b");
	tu_layer(d, &l, c, h, w);
	size_t cnt = (size_t)n * c * h * w;
	float *x = tu_alloc_rand(cnt);
	int chw[3];
	float *got = run_net(d, x, n, NULL, chw);
	assert_int_equal(chw[0], 9);
	/* references from the single convolutions */
	float *ra = malloc(cnt * sizeof(float)), *rb = malloc(cnt * sizeof(float));
	int oh, ow;
	const usv_layer_def *la = usv_netdef_layer(d, 0), *lb = usv_netdef_layer(d, 1);
	conv_ref(d, la, x, n, c, h, w, ra, &oh, &ow);
	conv_ref(d, lb, x, n, c, h, w, rb, &oh, &ow);
	size_t hw = (size_t)h * w;
	float *ref = malloc(3 * cnt * sizeof(float));
	for (int b = 0; b < n; b++)
		for (int k = 0; k < c; k++)
			for (size_t p = 0; p < hw; p++) {
				size_t i = ((size_t)b * c + k) * hw + p;
				float s = act_ref(ra[i] + rb[i] + x[i], USV_ACT_RELU);
				ref[((size_t)b * 9 + k) * hw + p] = s;
				ref[((size_t)b * 9 + 3 + k) * hw + p] = x[i];
				ref[((size_t)b * 9 + 6 + k) * hw + p] = rb[i];
			}
	tu_assert_close(got, ref, 3 * cnt, 1e-5f, "add/concat");
	free(got);
	free(ref);
	free(ra);
	free(rb);
	free(x);
	usv_netdef_free(d);
}

/* crop window, BGR order, mean (per channel and image), scale, mirror */
static void test_preprocess(void **state)
{
	usv_model_meta m;
	memset(&m, 0, sizeof m);
	m.input_c = 3, m.input_h = 2, m.input_w = 3;
	m.resize_h = 4, m.resize_w = 5;
	m.channel_order = USV_BGR;
	m.scale = 0.5f;
	m.mean_rgb[0] = 10, m.mean_rgb[1] = 20, m.mean_rgb[2] = 30; /* B, G, R */
	uint8_t rgb[4 * 5 * 3];
	for (int i = 0; i < 60; i++)
		rgb[i] = (uint8_t)(i * 3 + 1);
	float out[18];
	assert_int_equal(usv_preprocess(&m, rgb, -1, -1, 0, out), 0);
	/* centre: off_x = 1, off_y = 1 */
	for (int y = 0; y < 2; y++)
		for (int x = 0; x < 3; x++)
			for (int c = 0; c < 3; c++) {
				const uint8_t *px = rgb + ((y + 1) * 5 + (x + 1)) * 3;
				float want = (px[2 - c] - m.mean_rgb[c]) * 0.5f;
				assert_true(out[c * 6 + y * 3 + x] == want);
			}
	float fl[18];
	assert_int_equal(usv_preprocess(&m, rgb, 2, 0, 1, fl), 0);
	for (int y = 0; y < 2; y++)
		for (int x = 0; x < 3; x++) {
			const uint8_t *px = rgb + (y * 5 + 2 + (2 - x)) * 3;
			assert_true(fl[0 * 6 + y * 3 + x] == (px[2] - 10.0f) * 0.5f);
		}
	/* mean image [3, 4, 5] read at the source pixel */
	float mean[60];
	for (int i = 0; i < 60; i++)
		mean[i] = (float)i;
	m.mean_image = mean;
	assert_int_equal(usv_preprocess(&m, rgb, 0, 0, 1, fl), 0);
	const uint8_t *px = rgb + (0 * 5 + 2) * 3; /* x = 0 mirrors to source column 2 */
	assert_true(fl[6 * 1 + 0] == (px[1] - mean[20 + 2]) * 0.5f);
	assert_int_equal(usv_preprocess(&m, rgb, 3, 0, 0, fl), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conv),
	    cmocka_unit_test(test_depthwise),
	    cmocka_unit_test(test_depthwise_shapes),
	    cmocka_unit_test(test_fc),
	    cmocka_unit_test(test_pool),
	    cmocka_unit_test(test_pool_caffe_sizes),
	    cmocka_unit_test(test_lrn),
	    cmocka_unit_test(test_softmax_gap_relu),
	    cmocka_unit_test(test_add_concat),
	    cmocka_unit_test(test_preprocess),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
