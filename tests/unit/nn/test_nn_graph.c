/*
 * NAME
 *	test_nn_graph.c - sessions (buffer reuse, fusion, batching, blobs),
 *	validation errors, truncation and the built-in architectures
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <cmocka.h>

#include "nn_test_util.h"
#include "usv/err.h"
#include "usv/nn.h"

static void L(usv_layer_def *l, const char *name, usv_layer_type t, const char *in)
{
	memset(l, 0, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name);
	l->type = t;
	l->n_inputs = 1;
	snprintf(l->inputs[0], USV_NAME_MAX, "%s", in);
	l->group = 1;
}

/* 3x13x11 -> conv1 8@3x3 p1 -> relu1 -> pool1 2/2 -> norm1 -> conv2 8@3x3 g2 -> relu2
 * -> fc1 16 -> relu3 -> drop -> fc2 5 -> prob */
static usv_netdef *small_net(void)
{
	usv_netdef *d = tu_netdef(3, 13, 11);
	usv_layer_def l;
	L(&l, "conv1", USV_LAYER_CONV, "data");
	l.num_output = 8, l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = 1, l.has_bias = 1;
	tu_layer(d, &l, 3, 13, 11);
	L(&l, "relu1", USV_LAYER_RELU, "conv1");
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "pool1", USV_LAYER_MAXPOOL, "relu1");
	l.kernel_h = l.kernel_w = 2, l.stride_h = l.stride_w = 2, l.ceil_mode = 1;
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "norm1", USV_LAYER_LRN, "pool1");
	l.local_size = 3, l.alpha = 1e-2f, l.beta = 0.75f, l.k = 1.0f;
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "conv2", USV_LAYER_CONV, "norm1");
	l.num_output = 8, l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1, l.group = 2;
	l.has_bias = 1;
	tu_layer(d, &l, 8, 7, 6);
	L(&l, "relu2", USV_LAYER_RELU, "conv2");
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "fc1", USV_LAYER_FC, "relu2");
	l.num_output = 16, l.has_bias = 1;
	tu_layer(d, &l, 8, 5, 4);
	L(&l, "relu3", USV_LAYER_RELU, "fc1");
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "drop", USV_LAYER_DROPOUT, "relu3");
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "fc2", USV_LAYER_FC, "drop");
	l.num_output = 5, l.has_bias = 1;
	tu_layer(d, &l, 16, 1, 1);
	L(&l, "prob", USV_LAYER_SOFTMAX, "fc2");
	tu_layer(d, &l, 0, 0, 0);
	return d;
}

static void test_session_reuse_and_batch(void **state)
{
	tu_seed(11);
	usv_netdef *d = small_net();
	char eb[512] = "";
	int rc = usv_netdef_validate(d, eb, sizeof eb);
	if (rc)
		print_error("%s\n", eb);
	assert_int_equal(rc, 0);
	usv_model *m;
	assert_int_equal(usv_model_from_netdef(d, &m, eb, sizeof eb), 0);
	const int n = 4, per = 3 * 13 * 11;
	float *x = tu_alloc_rand((size_t)n * per);
	for (int i = 0; i < n * per; i++)
		x[i] *= 4.0f;
	usv_session *s, *s1, *sk;
	usv_session_opts o = {.max_batch = n, .threads = 1};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	usv_session_opts o1 = {.max_batch = 1, .threads = 1};
	assert_int_equal(usv_session_new(m, &o1, &s1), 0);
	usv_session_opts ok = {.max_batch = n, .threads = 2, .keep_all = 1};
	assert_int_equal(usv_session_new(m, &ok, &sk), 0);
	const float *y;
	int chw[3];
	assert_int_equal(usv_session_run(s, x, n, &y, chw), 0);
	assert_int_equal(chw[0], 5);
	float first[4 * 5];
	memcpy(first, y, sizeof first);
	for (int b = 0; b < n; b++) {
		double sum = 0;
		for (int k = 0; k < 5; k++)
			sum += first[b * 5 + k];
		assert_true(fabs(sum - 1.0) < 1e-5);
	}
	/* a second run gives bit-identical results */
	assert_int_equal(usv_session_run(s, x, n, &y, chw), 0);
	assert_memory_equal(first, y, sizeof first);
	/* batch n == n runs of batch 1 */
	for (int b = 0; b < n; b++) {
		assert_int_equal(usv_session_run(s1, x + (size_t)b * per, 1, &y, chw), 0);
		tu_assert_close(y, first + b * 5, 5, 1e-5f, "batch vs single");
	}
	/* a smaller batch than planned */
	assert_int_equal(usv_session_run(s, x, 3, &y, chw), 0);
	tu_assert_close(y, first, 3 * 5, 1e-5f, "batch 3 in a batch-4 session");
	/* batch larger than planned is refused */
	assert_int_equal(usv_session_run(s1, x, 2, &y, chw), -EINVAL);
	/* keep_all: same result, every blob available */
	assert_int_equal(usv_session_run(sk, x, n, &y, chw), 0);
	tu_assert_close(y, first, 4 * 5, 1e-6f, "keep_all vs reuse");
	static const char *names[] = {"conv1", "relu1", "pool1", "norm1", "conv2",
	                              "relu2", "fc1",   "relu3", "drop",  "fc2"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		int bc[3], mc[3];
		const float *b = usv_session_blob(sk, names[i], bc);
		assert_non_null(b);
		assert_int_equal(usv_model_layer_shape(m, names[i], mc), 0);
		assert_memory_equal(bc, mc, sizeof bc);
	}
	/* conv1 before ReLU has negative values; relu1 has none */
	int bc[3];
	const float *c1 = usv_session_blob(sk, "conv1", bc),
	            *r1 = usv_session_blob(sk, "relu1", bc);
	int neg = 0;
	for (int i = 0; i < bc[0] * bc[1] * bc[2]; i++) {
		neg |= c1[i] < 0;
		assert_true(r1[i] >= 0);
		assert_true(r1[i] == (c1[i] > 0 ? c1[i] : 0));
	}
	assert_true(neg);
	/* the end layer is always available; unknown layers are not */
	assert_non_null(usv_session_blob(s, "prob", bc));
	assert_null(usv_session_blob(s, "nope", bc));
	/* end_layer: stop at fc1 (ReLU not fused into the end layer) */
	usv_session *se;
	usv_session_opts oe = {.max_batch = 2, .threads = 1, .end_layer = "fc1"};
	assert_int_equal(usv_session_new(m, &oe, &se), 0);
	assert_int_equal(usv_session_run(se, x, 2, &y, chw), 0);
	assert_int_equal(chw[0], 16);
	const float *kfc = usv_session_blob(sk, "fc1", bc);
	tu_assert_close(y, kfc, 32, 1e-5f, "end_layer fc1");
	usv_session_opts bad = {.max_batch = 1, .end_layer = "missing"};
	usv_session *sb = NULL;
	assert_int_equal(usv_session_new(m, &bad, &sb), -ENOENT);
	usv_session_free(se);
	usv_session_free(s);
	usv_session_free(s1);
	usv_session_free(sk);
	usv_session_free(NULL);
	usv_model_free(m);
	usv_model_free(NULL);
	free(x);
	usv_netdef_free(d);
}

struct shared_run {
	const usv_model *m;
	const float *x;
	const float *want;
	int threads;
	int ok;
};

static void *shared_worker(void *p)
{
	struct shared_run *r = p;
	usv_session *s;
	usv_session_opts o = {.max_batch = 4, .threads = r->threads};
	r->ok = usv_session_new(r->m, &o, &s) == 0;
	for (int it = 0; r->ok && it < 20; it++) {
		const float *y;
		int chw[3];
		r->ok = usv_session_run(s, r->x, 4, &y, chw) == 0;
		for (int i = 0; r->ok && i < 4 * 5; i++)
			r->ok = fabsf(y[i] - r->want[i]) <= 1e-5f;
	}
	usv_session_free(s);
	return NULL;
}

/* One model shared by several threads, each with its own session (some
 * with their own pools): every run gives the single-threaded result. */
static void test_shared_model_threads(void **state)
{
	tu_seed(14);
	usv_netdef *d = small_net();
	usv_model *m;
	assert_int_equal(usv_model_from_netdef(d, &m, NULL, 0), 0);
	float *x = tu_alloc_rand(4 * 3 * 13 * 11);
	usv_session *s;
	usv_session_opts o = {.max_batch = 4, .threads = 1};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	const float *y;
	int chw[3];
	assert_int_equal(usv_session_run(s, x, 4, &y, chw), 0);
	float want[4 * 5];
	memcpy(want, y, sizeof want);
	usv_session_free(s);
	pthread_t th[3];
	struct shared_run r[3];
	for (int i = 0; i < 3; i++) {
		r[i] = (struct shared_run){m, x, want, 1 + i % 2, 0};
		assert_int_equal(pthread_create(&th[i], NULL, shared_worker, &r[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_true(r[i].ok);
	}
	usv_model_free(m);
	free(x);
	usv_netdef_free(d);
}

static void test_validation_errors(void **state)
{
	tu_seed(12);
	usv_netdef *d = tu_netdef(3, 8, 8);
	usv_layer_def l;
	char eb[512];
	/* bad fields */
	L(&l, "data", USV_LAYER_RELU, "data");
	assert_int_equal(usv_netdef_add_layer(d, &l), -EINVAL);
	L(&l, "c", USV_LAYER_CONV, "data");
	l.num_output = 4;
	assert_int_equal(usv_netdef_add_layer(d, &l), -EINVAL); /* no kernel */
	l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1, l.pad_t = -1;
	assert_int_equal(usv_netdef_add_layer(d, &l), -EINVAL);
	l.pad_t = 0;
	l.type = (usv_layer_type)99;
	assert_int_equal(usv_netdef_add_layer(d, &l), -EINVAL);
	l.type = USV_LAYER_CONV;
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	assert_int_equal(usv_netdef_add_layer(d, &l), -EEXIST);
	/* missing weights */
	assert_true(usv_netdef_validate(d, eb, sizeof eb) < 0);
	assert_non_null(strstr(eb, "'c'"));
	assert_non_null(strstr(eb, "c.weight"));
	/* wrong shape */
	int64_t shp[4] = {4, 3, 3, 2};
	float w[108] = {0};
	assert_int_equal(usv_netdef_add_tensor(d, "c.weight", 4, shp, w), 0);
	assert_true(usv_netdef_validate(d, eb, sizeof eb) < 0);
	shp[3] = 3;
	assert_int_equal(usv_netdef_add_tensor(d, "c.weight", 4, shp, w), 0);
	assert_int_equal(usv_netdef_validate(d, eb, sizeof eb), 0);
	/* input that is not an earlier layer */
	L(&l, "r", USV_LAYER_RELU, "later");
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	assert_true(usv_netdef_validate(d, eb, sizeof eb) < 0);
	assert_non_null(strstr(eb, "later"));
	usv_netdef_free(d);
	/* group must divide channels */
	d = tu_netdef(3, 8, 8);
	L(&l, "g", USV_LAYER_CONV, "data");
	l.num_output = 4, l.kernel_h = l.kernel_w = 1, l.stride_h = l.stride_w = 1, l.group = 2;
	assert_int_equal(usv_netdef_add_layer(d, &l), 0);
	assert_true(usv_netdef_validate(d, eb, sizeof eb) < 0);
	usv_model *m = NULL;
	assert_true(usv_model_from_netdef(d, &m, eb, sizeof eb) < 0);
	assert_null(m);
	usv_netdef_free(d);
	/* kernel larger than the input */
	d = tu_netdef(1, 2, 2);
	L(&l, "p", USV_LAYER_MAXPOOL, "data");
	l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1;
	tu_layer(d, &l, 1, 2, 2);
	assert_true(usv_netdef_validate(d, eb, sizeof eb) < 0);
	usv_netdef_free(d);
	usv_netdef_free(NULL);
}

static void test_truncate(void **state)
{
	tu_seed(13);
	usv_netdef *d = small_net();
	assert_int_equal(usv_netdef_truncate(d, "nope"), -ENOENT);
	assert_int_equal(usv_netdef_truncate(d, "fc1"), 0);
	assert_int_equal(usv_netdef_n_layers(d), 7);
	assert_null(usv_netdef_tensor(d, "fc2.weight", NULL, NULL));
	assert_non_null(usv_netdef_tensor(d, "fc1.weight", NULL, NULL));
	assert_string_equal(usv_netdef_meta(d)->output_layer, "fc1");
	assert_int_equal(usv_netdef_meta(d)->output_is_prob, 0);
	usv_model *m;
	assert_int_equal(usv_model_from_netdef(d, &m, NULL, 0), 0);
	assert_int_equal(usv_model_n_layers(m), 7);
	assert_string_equal(usv_model_layer_name(m, 6), "fc1");
	usv_model_free(m);
	usv_netdef_free(d);
}

static void check_shape(const usv_model *m, const char *layer, int c, int h, int w)
{
	int chw[3];
	assert_int_equal(usv_model_layer_shape(m, layer, chw), 0);
	if (chw[0] != c || chw[1] != h || chw[2] != w)
		print_error("%s: %dx%dx%d, want %dx%dx%d\n", layer, chw[0], chw[1], chw[2], c, h,
		            w);
	assert_int_equal(chw[0], c);
	assert_int_equal(chw[1], h);
	assert_int_equal(chw[2], w);
}

static float *run_builtin(usv_model *m, const char *end, int chw[3])
{
	const usv_model_meta *mm = usv_model_get_meta(m);
	size_t n = (size_t)mm->input_c * mm->input_h * mm->input_w;
	float *x = tu_alloc_rand(n);
	usv_session *s;
	usv_session_opts o = {.max_batch = 1, .threads = 1, .end_layer = end};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	const float *y;
	assert_int_equal(usv_session_run(s, x, 1, &y, chw), 0);
	size_t cnt = (size_t)chw[0] * chw[1] * chw[2];
	float *copy = malloc(cnt * sizeof(float));
	memcpy(copy, y, cnt * sizeof(float));
	usv_session_free(s);
	free(x);
	return copy;
}

static void test_builtin_caffenet(void **state)
{
#ifdef USV_TEST_SANITIZED
	skip();
#endif
	usv_netdef *d;
	assert_int_equal(usv_netdef_builtin("nope", 11, 1, &d), -USV_ERR_UNSUPPORTED);
	assert_int_equal(usv_netdef_builtin("caffenet", 11, 1, &d), 0);
	const usv_model_meta *mm = usv_netdef_meta(d);
	assert_int_equal(mm->input_h, 227);
	assert_int_equal(mm->resize_h, 256);
	assert_int_equal(mm->channel_order, USV_BGR);
	assert_int_equal(mm->n_labels, 11);
	assert_string_equal(mm->labels[10], "class10");
	assert_string_equal(usv_netdef_layer(d, 0)->name, "conv1");
	assert_string_equal(usv_netdef_layer(d, 3)->name, "norm1");
	int nd;
	int64_t shp[4];
	assert_non_null(usv_netdef_tensor(d, "conv2.weight", &nd, shp));
	assert_int_equal(shp[1], 48); /* group 2 */
	assert_non_null(usv_netdef_tensor(d, "fc6.weight", &nd, shp));
	assert_int_equal(shp[1], 9216);
	assert_int_equal(usv_netdef_truncate(d, "fc7"), 0);
	usv_model *m;
	assert_int_equal(usv_model_from_netdef_take(d, &m, NULL, 0), 0);
	check_shape(m, "conv1", 96, 55, 55);
	check_shape(m, "pool1", 96, 27, 27);
	check_shape(m, "conv2", 256, 27, 27);
	check_shape(m, "pool2", 256, 13, 13);
	check_shape(m, "conv5", 256, 13, 13);
	check_shape(m, "pool5", 256, 6, 6);
	check_shape(m, "fc7", 4096, 1, 1);
	/* liveness: far less activation memory than one buffer per layer */
	usv_session *sr, *sk;
	usv_session_opts orr = {.max_batch = 2}, okk = {.max_batch = 2, .keep_all = 1};
	assert_int_equal(usv_session_new(m, &orr, &sr), 0);
	assert_int_equal(usv_session_new(m, &okk, &sk), 0);
	int nb_r, nb_k;
	size_t br = usv_session_memory(sr, &nb_r), bk = usv_session_memory(sk, &nb_k);
	assert_int_equal(nb_k, usv_model_n_layers(m));
	assert_true(nb_r <= 3);
	assert_true(br * 2 < bk);
	usv_session_free(sr);
	usv_session_free(sk);
	int chw[3];
	float *y = run_builtin(m, NULL, chw);
	assert_int_equal(chw[0], 4096);
	int pos = 0;
	for (int i = 0; i < 4096; i++) {
		assert_true(isfinite(y[i]));
		pos += y[i] > 0;
	}
	assert_true(pos > 0); /* random He weights keep activations alive */
	free(y);
	usv_model_free(m);
}

static void test_builtin_others(void **state)
{
#ifdef USV_TEST_SANITIZED
	skip();
#endif
	usv_netdef *d;
	usv_model *m;
	int chw[3];
	assert_int_equal(usv_netdef_builtin("mobilenet_v1", 5, 7, &d), 0);
	assert_int_equal(usv_model_from_netdef_take(d, &m, NULL, 0), 0);
	check_shape(m, "conv1", 32, 112, 112);
	check_shape(m, "conv_pw_13", 1024, 7, 7);
	check_shape(m, "embedding", 1024, 1, 1);
	assert_int_equal(usv_model_get_meta(m)->channel_order, USV_RGB);
	float *y = run_builtin(m, NULL, chw);
	double s = 0;
	for (int i = 0; i < 5; i++)
		s += y[i];
	assert_true(fabs(s - 1) < 1e-5);
	free(y);
	usv_model_free(m);
	assert_int_equal(usv_netdef_builtin("mobilenet_v2", 5, 7, &d), 0);
	assert_int_equal(usv_model_from_netdef_take(d, &m, NULL, 0), 0);
	check_shape(m, "block_16_project", 320, 7, 7);
	check_shape(m, "block_15_add", 160, 7, 7);
	check_shape(m, "embedding", 1280, 1, 1);
	y = run_builtin(m, NULL, chw);
	assert_int_equal(chw[0], 5);
	free(y);
	usv_model_free(m);
	/* determinism of the seeded weights */
	usv_netdef *a, *b, *c;
	assert_int_equal(usv_netdef_builtin("mobilenet_v1", 5, 7, &a), 0);
	assert_int_equal(usv_netdef_builtin("mobilenet_v1", 5, 7, &b), 0);
	assert_int_equal(usv_netdef_builtin("mobilenet_v1", 5, 8, &c), 0);
	int64_t shp[4];
	const float *wa = usv_netdef_tensor(a, "conv_pw_3.weight", NULL, shp);
	size_t cnt = (size_t)shp[0] * shp[1];
	assert_memory_equal(wa, usv_netdef_tensor(b, "conv_pw_3.weight", NULL, NULL), cnt * 4);
	assert_memory_not_equal(wa, usv_netdef_tensor(c, "conv_pw_3.weight", NULL, NULL), cnt * 4);
	usv_netdef_free(a);
	usv_netdef_free(b);
	usv_netdef_free(c);
	/* VGG16: shapes only */
	assert_int_equal(usv_netdef_builtin("vgg16", 11, 1, &d), 0);
	assert_int_equal(usv_model_from_netdef_take(d, &m, NULL, 0), 0);
	check_shape(m, "conv1_2", 64, 224, 224);
	check_shape(m, "pool5", 512, 7, 7);
	check_shape(m, "fc7", 4096, 1, 1);
	check_shape(m, "prob", 11, 1, 1);
	usv_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_reuse_and_batch),
	    cmocka_unit_test(test_shared_model_threads),
	    cmocka_unit_test(test_validation_errors),
	    cmocka_unit_test(test_truncate),
	    cmocka_unit_test(test_builtin_caffenet),
	    cmocka_unit_test(test_builtin_others),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
