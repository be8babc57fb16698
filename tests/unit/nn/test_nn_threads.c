/*
 * NAME
 *	test_nn_threads.c - sessions with different thread counts side by side
 *
 * DESCRIPTION
 *	OpenBLAS's thread count is a process setting made once by main()
 *	(usv_nn_set_threads()); a session's threads are its own. Checks that
 *	a run of a session (1 or 3 threads) leaves OpenBLAS's thread count as
 *	main() set it, and that two sessions of one shared model with 1 and
 *	3 threads, run at the same time from two threads, give the results
 *	of a single-threaded session run alone (within the rounding of the
 *	fast kernels) on every run.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "nn_test_util.h"
#include "usv/nn.h"

int openblas_get_num_threads(void);

#define BATCH 2
#define RUNS 25

static void L(usv_layer_def *l, const char *name, usv_layer_type t, const char *in)
{
	memset(l, 0, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name);
	l->type = t;
	l->n_inputs = 1;
	snprintf(l->inputs[0], sizeof l->inputs[0], "%s", in);
}

/* 3x20x18 -> conv 3x3 (16) -> LRN -> max pool -> conv 1x1 (24) -> conv 3x3
 * (2 groups, 32) -> fc 300 -> fc 7: pooled kernels of every kind. */
static usv_netdef *net(void)
{
	usv_netdef *d = tu_netdef(3, 20, 18);
	usv_layer_def l;
	L(&l, "conv1", USV_LAYER_CONV, "data");
	l.num_output = 16, l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = 1, l.group = 1, l.has_bias = 1;
	l.act = USV_ACT_RELU;
	tu_layer(d, &l, 3, 20, 18);
	L(&l, "norm1", USV_LAYER_LRN, "conv1");
	l.local_size = 5, l.alpha = 1e-4f, l.beta = 0.75f, l.k = 1.0f;
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "pool1", USV_LAYER_MAXPOOL, "norm1");
	l.kernel_h = l.kernel_w = 2, l.stride_h = l.stride_w = 2;
	tu_layer(d, &l, 0, 0, 0);
	L(&l, "conv2", USV_LAYER_CONV, "pool1");
	l.num_output = 24, l.kernel_h = l.kernel_w = 1, l.stride_h = l.stride_w = 1;
	l.group = 1, l.has_bias = 1, l.act = USV_ACT_RELU;
	tu_layer(d, &l, 16, 10, 9);
	L(&l, "conv3", USV_LAYER_CONV, "conv2");
	l.num_output = 32, l.kernel_h = l.kernel_w = 3, l.stride_h = l.stride_w = 1;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = 1, l.group = 2, l.has_bias = 1;
	l.act = USV_ACT_RELU;
	tu_layer(d, &l, 24, 10, 9);
	L(&l, "fc1", USV_LAYER_FC, "conv3");
	l.num_output = 300, l.has_bias = 1, l.act = USV_ACT_RELU;
	tu_layer(d, &l, 32, 10, 9);
	L(&l, "fc2", USV_LAYER_FC, "fc1");
	l.num_output = 7, l.has_bias = 1;
	tu_layer(d, &l, 300, 1, 1);
	return d;
}

/* Output of one run of a fresh session (copied). */
static float *run_once(const usv_model *m, int threads, const float *x, int n, int *per)
{
	usv_session *s;
	usv_session_opts o = {.max_batch = BATCH, .threads = threads};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	const float *y;
	int chw[3];
	assert_int_equal(usv_session_run(s, x, n, &y, chw), 0);
	*per = chw[0] * chw[1] * chw[2];
	float *c = malloc((size_t)n * *per * sizeof(float));
	assert_non_null(c);
	memcpy(c, y, (size_t)n * *per * sizeof(float));
	usv_session_free(s);
	return c;
}

static void test_run_keeps_blas_threads(void **state)
{
	(void)state;
	tu_seed(5);
	usv_netdef *d = net();
	usv_model *m;
	char eb[256];
	assert_int_equal(usv_model_from_netdef(d, &m, eb, sizeof eb), 0);
	float *x = tu_alloc_rand((size_t)BATCH * 3 * 20 * 18);
	/* a value no kernel would pick: a session that set its own count
	 * (1 for pooled kernels) would leave it changed */
	usv_nn_set_threads(2);
	assert_int_equal(openblas_get_num_threads(), 2);
	int per;
	for (int threads = 1; threads <= 3; threads += 2) {
		free(run_once(m, threads, x, BATCH, &per));
		assert_int_equal(openblas_get_num_threads(), 2);
		assert_int_equal(usv_nn_get_threads(), 2);
	}
	usv_nn_set_threads(1);
	assert_int_equal(usv_nn_get_threads(), 1);
	free(x);
	usv_model_free(m);
	usv_netdef_free(d);
}

struct runner {
	const usv_model *m;
	int threads;
	const float *x;
	const float *ref; /* BATCH * per */
	int per;
	int rc;         /* first failing call, 0 if none */
	double max_err; /* max |y - ref| / max(max |ref|, 1e-3) over all runs */
	int bad_shape;
};

static void *runner_main(void *arg)
{
	struct runner *r = arg;
	usv_session *s;
	usv_session_opts o = {.max_batch = BATCH, .threads = r->threads};
	r->rc = usv_session_new(r->m, &o, &s);
	if (r->rc)
		return NULL;
	double scale = 1e-3;
	for (int i = 0; i < BATCH * r->per; i++)
		scale = r->ref[i] > scale ? r->ref[i] : -r->ref[i] > scale ? -r->ref[i] : scale;
	for (int k = 0; k < RUNS && !r->rc; k++) {
		const float *y;
		int chw[3];
		r->rc = usv_session_run(s, r->x, BATCH, &y, chw);
		if (r->rc)
			break;
		if (chw[0] * chw[1] * chw[2] != r->per)
			r->bad_shape = 1;
		for (int i = 0; i < BATCH * r->per; i++) {
			double e = (y[i] - r->ref[i]) / scale;
			e = e < 0 ? -e : e;
			r->max_err = e > r->max_err ? e : r->max_err;
		}
	}
	usv_session_free(s);
	return NULL;
}

static void test_concurrent_sessions(void **state)
{
	(void)state;
	tu_seed(9);
	usv_netdef *d = net();
	char eb[256];
	/* the reference: portable kernels, one thread, alone */
	usv_model_opts po = {.winograd = 0, .bf16 = USV_BF16_OFF};
	usv_model *mref, *m;
	assert_int_equal(usv_model_from_netdef_ex(d, &po, &mref, eb, sizeof eb), 0);
	assert_int_equal(usv_model_from_netdef(d, &m, eb, sizeof eb), 0);
	float *x = tu_alloc_rand((size_t)BATCH * 3 * 20 * 18);
	int per;
	float *ref = run_once(mref, 1, x, BATCH, &per);
	assert_int_equal(per, 7);

	usv_nn_set_threads(1); /* what main() does */
	struct runner r[2] = {
	    {.m = m, .threads = 1, .x = x, .ref = ref, .per = per},
	    {.m = m, .threads = 3, .x = x, .ref = ref, .per = per},
	};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, runner_main, &r[i]), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 2; i++) {
		printf("# %d thread(s), %d runs beside the other session: max rel err %.1e\n",
		       r[i].threads, RUNS, r[i].max_err);
		assert_int_equal(r[i].rc, 0);
		assert_int_equal(r[i].bad_shape, 0);
		/* Winograd against the direct reference: rounding only */
		assert_true(r[i].max_err < 1e-4);
	}
	assert_int_equal(usv_nn_get_threads(), 1);
	free(ref);
	free(x);
	usv_model_free(m);
	usv_model_free(mref);
	usv_netdef_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_run_keeps_blas_threads),
	    cmocka_unit_test(test_concurrent_sessions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
