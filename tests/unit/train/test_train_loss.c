/*
 * NAME
 *	test_train_loss.c - unit tests of the trainer's loss options and early
 *	stopping (nn/src/train.c)
 *
 * DESCRIPTION
 *	The class-weighted, label-smoothed cross-entropy and its gradient with
 *	respect to every weight and bias (through ReLU and a fixed dropout
 *	mask) against a loss computed here in double precision by a naive
 *	loop and its central finite differences; without options the loss
 *	and gradient are bit for bit those of usv_head_loss_grad(); balanced
 *	class weights are n / (k n_c); out-of-range options are refused.
 *	Early stopping on a toy problem with an overfitting head: training
 *	stops before the iteration limit, exactly `patience` curve points
 *	after the best one, the head keeps the weights of the best point
 *	(its validation loss is the curve's minimum), and it needs a
 *	validation set. Off, a run is the same as before, weights and curve.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "usv/train.h"

#include "ref_mlp.h"

/* Reference loss in double: naive loops, independent of train.c.
 * cw: NULL or class weights; e: label smoothing. */
static double ref_loss(int L, const int *dims, double *const *w, double *const *b, const float *x,
                       const int *y, int n, float *const *masks, const float *cw, double e)
{
	double total = 0;
	double z[64];
	for (int i = 0; i < n; i++) {
		ref_logits(L, dims, w, b, x, masks, i, z);
		int nc = dims[L];
		/* -sum_c q_c log p_c with log p_c = z_c - log sum exp z */
		double s = 0;
		for (int c = 0; c < nc; c++)
			s += exp(z[c]);
		double li = 0;
		for (int c = 0; c < nc; c++) {
			double q = (c == y[i] ? 1 - e : 0) + e / nc;
			li -= q * (z[c] - log(s));
		}
		total += (cw ? cw[y[i]] : 1.0) * li;
	}
	return total / n;
}

typedef struct gcase {
	const float *cw;
	double e;
	int masked;
} gcase;

static void test_gradients_weighted_smoothed(void **state)
{
	(void)state;
	const int L = 3, dims[4] = {7, 6, 5, 3}, n = 5;
	usv_head *h;
	assert_int_equal(usv_head_new(L, dims, &h), 0);
	usv_rng rng;
	usv_rng_seed(&rng, 4242);
	for (int l = 0; l < L; l++) {
		usv_head_init_layer(h, l, 0.5f, &rng);
		for (int o = 0; o < dims[l + 1]; o++)
			h->b[l][o] = (float)(0.3 * usv_rng_normal(&rng));
	}
	float x[5 * 7];
	for (int i = 0; i < n * dims[0]; i++)
		x[i] = (float)usv_rng_normal(&rng);
	int y[5] = {0, 2, 1, 2, 2};
	float m0[5 * 6];
	for (int i = 0; i < n * dims[1]; i++)
		m0[i] = (i % 3 == 1) ? 0.0f : 2.0f;
	float *masks[3] = {m0, NULL, NULL};
	const float cw[3] = {2.5f, 0.4f, 1.3f};
	const gcase cases[] = {
	    {cw, 0, 0}, {NULL, 0.1, 0}, {NULL, 0.5, 1}, {cw, 0.2, 1}, {cw, 0.05, 0},
	};
	float *gw[3], *gb[3];
	double *wd[3], *bd[3];
	for (int l = 0; l < L; l++) {
		size_t nw = (size_t)dims[l + 1] * dims[l];
		gw[l] = calloc(nw, sizeof(float));
		gb[l] = calloc(dims[l + 1], sizeof(float));
		wd[l] = calloc(nw, sizeof(double));
		bd[l] = calloc(dims[l + 1], sizeof(double));
		for (size_t k = 0; k < nw; k++)
			wd[l][k] = h->w[l][k];
		for (int o = 0; o < dims[l + 1]; o++)
			bd[l][o] = h->b[l][o];
	}
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		const gcase *gc = &cases[ci];
		float *const *mk = gc->masked ? masks : NULL;
		usv_loss_opts lo = {.class_weight = gc->cw, .label_smoothing = (float)gc->e};
		double e = lo.label_smoothing; /* the float the trainer sees */
		double loss;
		assert_int_equal(usv_head_loss_grad_ex(h, x, y, n, mk, &lo, gw, gb, &loss), 0);
		double rl = ref_loss(L, dims, wd, bd, x, y, n, mk, gc->cw, e);
		if (fabs(loss - rl) > 1e-5 * (1 + fabs(rl)))
			fail_msg("case %zu: loss %g, reference %g", ci, loss, rl);
		/* the options change the loss: a test of nothing otherwise */
		double plain = ref_loss(L, dims, wd, bd, x, y, n, mk, NULL, 0);
		assert_true(fabs(rl - plain) > 1e-3);
		const double eps = 1e-5;
		int checked = 0;
		for (int l = 0; l < L; l++) {
			size_t nw = (size_t)dims[l + 1] * dims[l];
			for (size_t k = 0; k < nw + dims[l + 1]; k++) {
				double *p = k < nw ? &wd[l][k] : &bd[l][k - nw];
				float an = k < nw ? gw[l][k] : gb[l][k - nw];
				double keep = *p;
				*p = keep + eps;
				double lp = ref_loss(L, dims, wd, bd, x, y, n, mk, gc->cw, e);
				*p = keep - eps;
				double lm = ref_loss(L, dims, wd, bd, x, y, n, mk, gc->cw, e);
				*p = keep;
				double fd = (lp - lm) / (2 * eps);
				if (fabs(an - fd) > 1e-3 * (fabs(an) + fabs(fd)) + 1e-6)
					fail_msg("case %zu layer %d param %zu: analytic %g, finite "
					         "difference %g",
					         ci, l, k, an, fd);
				checked++;
			}
		}
		assert_int_equal(checked, 7 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3);
	}
	for (int l = 0; l < L; l++) {
		free(gw[l]);
		free(gb[l]);
		free(wd[l]);
		free(bd[l]);
	}
	usv_head_free(h);
}

/* Without options (NULL, or all zero) the loss and gradient are those of
 * usv_head_loss_grad(), bit for bit; weights of 1 give the same values. */
static void test_no_options_identical(void **state)
{
	(void)state;
	const int L = 2, dims[3] = {9, 8, 4}, n = 6;
	usv_head *h;
	assert_int_equal(usv_head_new(L, dims, &h), 0);
	usv_rng rng;
	usv_rng_seed(&rng, 5);
	for (int l = 0; l < L; l++)
		usv_head_init_layer(h, l, 0.7f, &rng);
	float x[6 * 9];
	for (int i = 0; i < n * dims[0]; i++)
		x[i] = (float)usv_rng_normal(&rng);
	int y[6] = {0, 1, 2, 3, 1, 0};
	float *g[3][2][2];
	for (int v = 0; v < 3; v++)
		for (int l = 0; l < L; l++) {
			g[v][0][l] = calloc((size_t)dims[l + 1] * dims[l], sizeof(float));
			g[v][1][l] = calloc(dims[l + 1], sizeof(float));
		}
	const float ones[4] = {1, 1, 1, 1};
	usv_loss_opts none = {0}, unit = {.class_weight = ones};
	double l0, l1, l2;
	assert_int_equal(usv_head_loss_grad(h, x, y, n, NULL, g[0][0], g[0][1], &l0), 0);
	assert_int_equal(usv_head_loss_grad_ex(h, x, y, n, NULL, &none, g[1][0], g[1][1], &l1), 0);
	assert_int_equal(usv_head_loss_grad_ex(h, x, y, n, NULL, &unit, g[2][0], g[2][1], &l2), 0);
	assert_memory_equal(&l0, &l1, sizeof l0);
	assert_true(fabs(l0 - l2) < 1e-12);
	for (int l = 0; l < L; l++) {
		size_t nw = (size_t)dims[l + 1] * dims[l];
		assert_memory_equal(g[0][0][l], g[1][0][l], nw * sizeof(float));
		assert_memory_equal(g[0][1][l], g[1][1][l], dims[l + 1] * sizeof(float));
		assert_memory_equal(g[0][0][l], g[2][0][l], nw * sizeof(float));
	}
	for (int v = 0; v < 3; v++)
		for (int l = 0; l < L; l++) {
			free(g[v][0][l]);
			free(g[v][1][l]);
		}
	usv_head_free(h);
}

static void test_balanced_weights(void **state)
{
	(void)state;
	/* 8 samples: 6 of class 0, 2 of class 1, none of class 2 */
	int y[8] = {0, 0, 1, 0, 0, 1, 0, 0};
	float w[3];
	assert_int_equal(usv_class_weights_balanced(y, 8, 3, w), 0);
	assert_true(fabs(w[0] - 8.0 / (3 * 6)) < 1e-7);
	assert_true(fabs(w[1] - 8.0 / (3 * 2)) < 1e-7);
	assert_true(w[2] == 0.0f);
	/* two classes: the mean weight of a sample is 1 */
	assert_int_equal(usv_class_weights_balanced(y, 8, 2, w), 0);
	double mean = 0;
	for (int i = 0; i < 8; i++)
		mean += w[y[i]] / 8.0;
	assert_true(fabs(mean - 1.0) < 1e-6);
	int bad[2] = {0, 2};
	assert_int_equal(usv_class_weights_balanced(bad, 2, 2, w), -EINVAL);
	assert_int_equal(usv_class_weights_balanced(y, 0, 2, w), -EINVAL);
}

static void test_bad_options(void **state)
{
	(void)state;
	const int dims[2] = {3, 2};
	usv_head *h;
	assert_int_equal(usv_head_new(1, dims, &h), 0);
	float x[3] = {1, 2, 3};
	int y = 1;
	double loss;
	const float neg[2] = {1, -1}, nan_w[2] = {1, NAN};
	usv_loss_opts lo = {.label_smoothing = 0.6f};
	assert_int_equal(usv_head_loss_grad_ex(h, x, &y, 1, NULL, &lo, NULL, NULL, &loss), -EINVAL);
	lo.label_smoothing = -0.1f;
	assert_int_equal(usv_head_loss_grad_ex(h, x, &y, 1, NULL, &lo, NULL, NULL, &loss), -EINVAL);
	lo = (usv_loss_opts){.class_weight = neg};
	assert_int_equal(usv_head_loss_grad_ex(h, x, &y, 1, NULL, &lo, NULL, NULL, &loss), -EINVAL);
	lo = (usv_loss_opts){.class_weight = nan_w};
	assert_int_equal(usv_head_loss_grad_ex(h, x, &y, 1, NULL, &lo, NULL, NULL, &loss), -EINVAL);
	lo = (usv_loss_opts){.label_smoothing = 0.5f};
	assert_int_equal(usv_head_loss_grad_ex(h, x, &y, 1, NULL, &lo, NULL, NULL, &loss), 0);
	usv_head_free(h);
}

/* ---------------- early stopping ---------------- */

/* A small noisy problem that a wide head overfits: 40 training images
 * whose labels are half noise, 200 validation images. */
enum { EN = 40, EV = 200, ED = 20 };
static float ext[EN * ED], exv[EV * ED];
static int eyt[EN], eyv[EV];

static void overfit_data(void)
{
	usv_rng rng;
	usv_rng_seed(&rng, 77);
	for (int set = 0; set < 2; set++) {
		int n = set ? EV : EN;
		float *x = set ? exv : ext;
		int *y = set ? eyv : eyt;
		for (int i = 0; i < n; i++) {
			int c = i % 2;
			for (int k = 0; k < ED; k++)
				x[i * ED + k] =
				    (float)((k == 0 ? (c ? 0.6 : -0.6) : 0) + usv_rng_normal(&rng));
			/* a quarter of the training labels are flipped */
			y[i] = (!set && usv_rng_below(&rng, 4) == 0) ? 1 - c : c;
		}
	}
}

static usv_head *overfit_head(void)
{
	const int dims[3] = {ED, 256, 2};
	usv_head *h;
	assert_int_equal(usv_head_new(2, dims, &h), 0);
	usv_rng r;
	usv_rng_seed(&r, 3);
	usv_head_init_layer(h, 0, 0, &r);
	usv_head_init_layer(h, 1, 0.01f, &r);
	h->lr[0] = h->lr[1] = 0.05f;
	return h;
}

static void test_early_stopping(void **state)
{
	(void)state;
	overfit_data();
	usv_train_data td = {EN, 1, ED, ext, eyt}, vd = {EV, 1, ED, exv, eyv};
	usv_train_opts o;
	usv_train_opts_default(&o);
	o.iterations = 3000;
	o.batch = 8;
	o.eval_every = 25;
	o.weight_decay = 0;

	/* without early stopping: the full run; its curve's minimum comes
	 * well before the end (the head overfits the noisy labels) */
	usv_head *full = overfit_head();
	usv_curve_point *c0 = NULL;
	int n0 = 0;
	usv_train_stop st0;
	o.stop = &st0;
	assert_int_equal(usv_head_train(full, &td, &vd, &o, &c0, &n0), 0);
	assert_int_equal(n0, 3000 / 25);
	assert_int_equal(st0.iterations, 3000);
	assert_int_equal(st0.stopped_early, 0);
	int best0 = 0;
	for (int i = 1; i < n0; i++)
		if (c0[i].val_loss < c0[best0].val_loss)
			best0 = i;
	assert_true(best0 < n0 / 2);
	assert_true(c0[n0 - 1].val_loss > c0[best0].val_loss + 0.05);

	const int patience = 6;
	usv_head *es = overfit_head();
	usv_curve_point *c1 = NULL;
	int n1 = 0;
	usv_train_stop st;
	o.early_stopping = patience;
	o.stop = &st;
	assert_int_equal(usv_head_train(es, &td, &vd, &o, &c1, &n1), 0);
	assert_int_equal(st.stopped_early, 1);
	assert_true(st.iterations < o.iterations);
	assert_int_equal(c1[n1 - 1].iter, st.iterations);
	/* the same steps as the full run up to the stop */
	for (int i = 0; i < n1; i++) {
		assert_int_equal(c1[i].iter, c0[i].iter);
		assert_memory_equal(&c1[i].val_loss, &c0[i].val_loss, sizeof(float));
	}
	/* the best point is the minimum of the curve so far, the stop
	 * exactly `patience` points after it */
	int b = 0;
	for (int i = 1; i < n1; i++)
		if (c1[i].val_loss < c1[b].val_loss)
			b = i;
	assert_int_equal(st.best_iter, c1[b].iter);
	assert_int_equal(n1 - 1 - b, patience);
	assert_memory_equal(&st.best_val_loss, &c1[b].val_loss, sizeof(float));
	/* the head has the best point's weights: its validation loss */
	double vl, va;
	assert_int_equal(usv_head_evaluate(es, &vd, &vl, &va), 0);
	assert_true(fabs(vl - st.best_val_loss) < 1e-6);
	double fl, fa;
	assert_int_equal(usv_head_evaluate(full, &vd, &fl, &fa), 0);
	assert_true(vl < fl - 0.05);

	/* no validation set, a negative patience: refused */
	usv_curve_point *c2 = NULL;
	int n2 = 0;
	assert_int_equal(usv_head_train(es, &td, NULL, &o, &c2, &n2), -EINVAL);
	o.early_stopping = -1;
	assert_int_equal(usv_head_train(es, &td, &vd, &o, &c2, &n2), -EINVAL);
	assert_null(c2);
	free(c0);
	free(c1);
	usv_head_free(full);
	usv_head_free(es);
}

/* Class weights and label smoothing change training; zero options do not
 * (the same weights as a run with the options left at their defaults). */
static void test_train_with_options(void **state)
{
	(void)state;
	overfit_data();
	usv_train_data td = {EN, 1, ED, ext, eyt};
	usv_train_opts o;
	usv_train_opts_default(&o);
	o.iterations = 200;
	o.batch = 8;
	usv_head *h[4];
	const float cw[2] = {0.5f, 1.5f}, ones[2] = {1, 1};
	for (int v = 0; v < 4; v++) {
		h[v] = overfit_head();
		o.loss = (usv_loss_opts){0};
		if (v == 1)
			o.loss.class_weight = ones;
		if (v == 2)
			o.loss.class_weight = cw;
		if (v == 3)
			o.loss.label_smoothing = 0.2f;
		usv_curve_point *c = NULL;
		int nc = 0;
		assert_int_equal(usv_head_train(h[v], &td, NULL, &o, &c, &nc), 0);
		free(c);
	}
	size_t nw = (size_t)256 * ED;
	/* weights of 1: the same arithmetic up to the rounding of w * g */
	for (size_t k = 0; k < nw; k++)
		assert_true(fabsf(h[0]->w[0][k] - h[1]->w[0][k]) < 1e-4f);
	assert_true(memcmp(h[0]->w[0], h[2]->w[0], nw * sizeof(float)) != 0);
	assert_true(memcmp(h[0]->w[0], h[3]->w[0], nw * sizeof(float)) != 0);
	/* weighting class 1 up moves the predictions towards it */
	float p0[EN * 2], p2[EN * 2];
	assert_int_equal(usv_head_forward(h[0], ext, EN, 1, p0), 0);
	assert_int_equal(usv_head_forward(h[2], ext, EN, 1, p2), 0);
	double m0 = 0, m2 = 0, mx0 = 0, mx3 = 0;
	for (int i = 0; i < EN; i++) {
		m0 += p0[2 * i + 1];
		m2 += p2[2 * i + 1];
	}
	assert_true(m2 > m0);
	/* smoothing keeps the probabilities away from 0 and 1 */
	float p3[EN * 2];
	assert_int_equal(usv_head_forward(h[3], ext, EN, 1, p3), 0);
	for (int i = 0; i < EN; i++) {
		double a = fmax(p0[2 * i], p0[2 * i + 1]), c = fmax(p3[2 * i], p3[2 * i + 1]);
		mx0 = a > mx0 ? a : mx0;
		mx3 = c > mx3 ? c : mx3;
	}
	assert_true(mx3 < mx0);
	for (int v = 0; v < 4; v++)
		usv_head_free(h[v]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gradients_weighted_smoothed),
	    cmocka_unit_test(test_no_options_identical),
	    cmocka_unit_test(test_balanced_weights),
	    cmocka_unit_test(test_bad_options),
	    cmocka_unit_test(test_early_stopping),
	    cmocka_unit_test(test_train_with_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
