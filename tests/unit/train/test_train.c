/*
 * NAME
 *	test_train.c - unit tests of the FC-head trainer (nn/src/train.c)
 *
 * DESCRIPTION
 *	Gradients of weights and biases (through ReLU and a fixed dropout
 *	mask) against central finite differences of a loss computed here in
 *	double precision by a naive loop; training a head on a separable toy
 *	problem must drive the cross-entropy far below chance (ln 3); the
 *	same seed gives bit-identical weights, whatever the thread count; two
 *	full-batch steps of the trainer (layers wider than one task, so the
 *	SGD step runs block by block) match the solver's formula applied here
 *	to gradients of usv_head_loss_grad(), in FP32 and (within a
 *	tolerance for the rounding of the operands) with BF16 GEMMs.
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

#include "kern_fast.h"
#include "usv/train.h"

#include "ref_mlp.h"

/* Reference loss in double: naive loops, independent of train.c. */
static double ref_loss(int L, const int *dims, double *const *w, double *const *b, const float *x,
                       const int *y, int n, float *const *masks)
{
	double total = 0;
	double z[64];
	for (int i = 0; i < n; i++) {
		ref_logits(L, dims, w, b, x, masks, i, z);
		int nc = dims[L];
		double mx = z[0];
		for (int c = 1; c < nc; c++)
			mx = z[c] > mx ? z[c] : mx;
		double s = 0;
		for (int c = 0; c < nc; c++)
			s += exp(z[c] - mx);
		total += mx + log(s) - z[y[i]];
	}
	return total / n;
}

static void test_gradients(void **state)
{
	(void)state;
	const int L = 3, dims[4] = {7, 6, 5, 3}, n = 4;
	usv_head *h;
	assert_int_equal(usv_head_new(L, dims, &h), 0);
	usv_rng rng;
	usv_rng_seed(&rng, 42);
	for (int l = 0; l < L; l++) {
		usv_head_init_layer(h, l, 0.5f, &rng);
		for (int o = 0; o < dims[l + 1]; o++)
			h->b[l][o] = (float)(0.3 * usv_rng_normal(&rng));
	}
	float x[4 * 7];
	for (int i = 0; i < n * dims[0]; i++)
		x[i] = (float)usv_rng_normal(&rng);
	int y[4] = {0, 2, 1, 2};
	/* fixed dropout mask (p = 0.5, kept units x2) on the first hidden layer */
	float m0[4 * 6];
	for (int i = 0; i < n * dims[1]; i++)
		m0[i] = (i % 3 == 1) ? 0.0f : 2.0f;
	float *masks[3] = {m0, NULL, NULL};

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
	for (int pass = 0; pass < 2; pass++) {
		float *const *mk = pass ? masks : NULL;
		double loss;
		assert_int_equal(usv_head_loss_grad(h, x, y, n, mk, gw, gb, &loss), 0);
		double rl = ref_loss(L, dims, wd, bd, x, y, n, mk);
		assert_true(fabs(loss - rl) < 1e-5 * (1 + fabs(rl)));
		const double eps = 1e-5;
		int checked = 0;
		for (int l = 0; l < L; l++) {
			size_t nw = (size_t)dims[l + 1] * dims[l];
			for (size_t k = 0; k < nw + dims[l + 1]; k++) {
				double *p = k < nw ? &wd[l][k] : &bd[l][k - nw];
				float an = k < nw ? gw[l][k] : gb[l][k - nw];
				double keep = *p;
				*p = keep + eps;
				double lp = ref_loss(L, dims, wd, bd, x, y, n, mk);
				*p = keep - eps;
				double lm = ref_loss(L, dims, wd, bd, x, y, n, mk);
				*p = keep;
				double fd = (lp - lm) / (2 * eps);
				if (fabs(an - fd) > 1e-3 * (fabs(an) + fabs(fd)) + 1e-6)
					fail_msg(
					    "layer %d param %zu: analytic %g, finite difference %g",
					    l, k, an, fd);
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

/* Three Gaussian blobs in 10-d, 40 images x 4 views each. */
static void make_blobs(usv_rng *rng, int n, int views, float *x, int *y)
{
	for (int i = 0; i < n; i++) {
		y[i] = i % 3;
		for (int v = 0; v < views; v++)
			for (int k = 0; k < 10; k++) {
				double c = (k % 3 == y[i]) ? 3.0 : 0.0;
				x[((size_t)i * views + v) * 10 + k] =
				    (float)(c + 0.5 * usv_rng_normal(rng));
			}
	}
}

static usv_head *train_toy(uint64_t seed, double *vloss, double *vacc, int *npts)
{
	enum { N = 60, V = 4 };
	static float xt[N * V * 10], xv[N * 10];
	static int yt[N], yv[N];
	usv_rng rng;
	usv_rng_seed(&rng, 7);
	make_blobs(&rng, N, V, xt, yt);
	make_blobs(&rng, N, 1, xv, yv);
	const int dims[4] = {10, 16, 8, 3};
	usv_head *h;
	assert_int_equal(usv_head_new(3, dims, &h), 0);
	usv_rng init;
	usv_rng_seed(&init, seed);
	for (int l = 0; l < 3; l++) {
		usv_head_init_layer(h, l, l == 2 ? 0.01f : 0.0f, &init);
		h->lr[l] = l == 2 ? 0.05f : 0.01f;
	}
	h->dropout[0] = h->dropout[1] = 0.5f;
	usv_train_data td = {N, V, 10, xt, yt}, vd = {N, 1, 10, xv, yv};
	double l0, a0;
	assert_int_equal(usv_head_evaluate(h, &vd, &l0, &a0), 0);
	assert_true(fabs(l0 - log(3.0)) < 0.15); /* small fc8 weights: near chance */
	usv_train_opts o;
	usv_train_opts_default(&o);
	o.iterations = 400;
	o.batch = 16;
	o.seed = seed;
	o.eval_every = 100;
	usv_curve_point *curve = NULL;
	int nc = 0;
	assert_int_equal(usv_head_train(h, &td, &vd, &o, &curve, &nc), 0);
	assert_int_equal(nc, 4);
	assert_int_equal(curve[3].iter, 400);
	assert_true(curve[3].train_loss < curve[0].train_loss);
	assert_true(fabs(curve[3].val_acc - 1.0) < 1e-6);
	*npts = nc;
	free(curve);
	assert_int_equal(usv_head_evaluate(h, &vd, vloss, vacc), 0);
	return h;
}

static void test_separable(void **state)
{
	(void)state;
	double loss, acc;
	int np;
	usv_head *h = train_toy(3, &loss, &acc, &np);
	/* chance is ln 3 = 1.0986; a sign or transposition error cannot get near 0.05 */
	assert_true(loss < 0.05);
	assert_true(acc == 1.0);
	/* forward with softmax gives probabilities that sum to 1 */
	float x[10] = {3, 0, 0, 3, 0, 0, 3, 0, 0, 3}, p[3];
	assert_int_equal(usv_head_forward(h, x, 1, 1, p), 0);
	assert_true(fabs(p[0] + p[1] + p[2] - 1.0) < 1e-5);
	assert_true(p[0] > 0.9);
	usv_head_free(h);
}

static void test_deterministic(void **state)
{
	(void)state;
	double l1, a1, l2, a2;
	int np;
	usv_head *h1 = train_toy(11, &l1, &a1, &np);
	usv_head *h2 = train_toy(11, &l2, &a2, &np);
	usv_head *h3 = train_toy(12, &l2, &a2, &np);
	for (int l = 0; l < 3; l++) {
		size_t nw = (size_t)h1->dims[l + 1] * h1->dims[l];
		assert_memory_equal(h1->w[l], h2->w[l], nw * sizeof(float));
		assert_memory_equal(h1->b[l], h2->b[l], h1->dims[l + 1] * sizeof(float));
	}
	assert_true(memcmp(h1->w[0], h3->w[0], 16 * 10 * sizeof(float)) != 0);
	usv_head_free(h1);
	usv_head_free(h2);
	usv_head_free(h3);
}

/* A head wider than one task of the trainer (512 columns, 192 rows, 32
 * batch rows, 1024-column gradient blocks; an odd input size), on random
 * data. */
enum { WN = 70, WD0 = 1101, WD1 = 530, WD2 = 270, WC = 3 };
static const int wdims[4] = {WD0, WD1, WD2, WC};

static usv_head *wide_head(float dropout)
{
	usv_head *h;
	assert_int_equal(usv_head_new(3, wdims, &h), 0);
	usv_rng r;
	usv_rng_seed(&r, 99);
	for (int l = 0; l < 3; l++) {
		usv_head_init_layer(h, l, 0.05f, &r);
		for (int o = 0; o < wdims[l + 1]; o++)
			h->b[l][o] = (float)(0.1 * usv_rng_normal(&r));
		h->lr[l] = l == 2 ? 0.02f : 0.01f;
	}
	h->dropout[0] = h->dropout[1] = dropout;
	return h;
}

static void wide_data(float **x, int **y, int views)
{
	usv_rng r;
	usv_rng_seed(&r, 5);
	*x = malloc((size_t)WN * views * WD0 * sizeof(float));
	*y = malloc(WN * sizeof(int));
	assert_non_null(*x);
	assert_non_null(*y);
	for (size_t i = 0; i < (size_t)WN * views * WD0; i++)
		(*x)[i] = (float)usv_rng_normal(&r);
	for (int i = 0; i < WN; i++)
		(*y)[i] = i % WC;
}

static usv_head *train_wide(int threads, int iterations, int precision)
{
	float *x;
	int *y;
	wide_data(&x, &y, 3);
	usv_head *h = wide_head(0.5f);
	usv_train_data td = {WN, 3, WD0, x, y};
	usv_train_opts o;
	usv_train_opts_default(&o);
	o.iterations = iterations;
	o.batch = 45;
	o.threads = threads;
	o.precision = precision;
	usv_train_times tm = {0};
	o.times = &tm;
	usv_curve_point *curve = NULL;
	int nc = 0;
	assert_int_equal(usv_head_train(h, &td, NULL, &o, &curve, &nc), 0);
	assert_true(tm.forward > 0 && tm.backward > 0);
	free(curve);
	free(x);
	free(y);
	return h;
}

static void test_threads_identical(void **state)
{
	(void)state;
	for (int prec = USV_TRAIN_FP32; prec <= USV_TRAIN_BF16; prec++) {
		usv_head *h1 = train_wide(1, 6, prec), *h3 = train_wide(3, 6, prec);
		for (int l = 0; l < 3; l++) {
			size_t nw = (size_t)wdims[l + 1] * wdims[l];
			assert_memory_equal(h1->w[l], h3->w[l], nw * sizeof(float));
			assert_memory_equal(h1->b[l], h3->b[l], wdims[l + 1] * sizeof(float));
		}
		usv_head_free(h1);
		usv_head_free(h3);
	}
}

/* Two steps with the whole set as the batch (no dropout, one view): the
 * shuffle only reorders a sum, so the trainer must match
 *   v1 = lr (g(w0) + wd w0), w1 = w0 - v1,
 *   v2 = mom v1 + lr (g(w1) + wd w1), w2 = w1 - v2
 * (biases: 2 lr, no decay) within float rounding. */
static void sgd_step(int precision, double tol)
{
	float *x;
	int *y;
	wide_data(&x, &y, 1);
	usv_head *h = wide_head(0.0f), *ref = wide_head(0.0f);
	if (precision == USV_TRAIN_BF16)
		for (int l = 0; l < 2; l++)
			for (int o = 0; o < wdims[l + 1]; o++) {
				/* every hidden unit active (pre-activations about
				 * N(8, 1.5^2)): a unit whose pre-activation is within
				 * rounding of 0 may switch its ReLU gate, which moves
				 * the gradient by a whole term, not by a rounding */
				h->b[l][o] += 8.0f;
				ref->b[l][o] += 8.0f;
			}
	usv_train_data td = {WN, 1, WD0, x, y};
	usv_train_opts o;
	usv_train_opts_default(&o);
	o.iterations = 2;
	o.batch = WN;
	o.threads = 2;
	o.precision = precision;
	usv_curve_point *curve = NULL;
	int nc = 0;
	assert_int_equal(usv_head_train(h, &td, NULL, &o, &curve, &nc), 0);
	free(curve);

	float *gw[3], *gb[3], *vw[3], *vb[3];
	for (int l = 0; l < 3; l++) {
		size_t nw = (size_t)wdims[l + 1] * wdims[l];
		gw[l] = malloc(nw * sizeof(float));
		gb[l] = malloc(wdims[l + 1] * sizeof(float));
		vw[l] = calloc(nw, sizeof(float));
		vb[l] = calloc(wdims[l + 1], sizeof(float));
	}
	for (int step = 0; step < 2; step++) {
		double loss;
		assert_int_equal(usv_head_loss_grad(ref, x, y, WN, NULL, gw, gb, &loss), 0);
		for (int l = 0; l < 3; l++) {
			size_t nw = (size_t)wdims[l + 1] * wdims[l];
			double lr = ref->lr[l];
			for (size_t k = 0; k < nw; k++) {
				vw[l][k] =
				    (float)(0.9 * vw[l][k] + lr * (gw[l][k] + 5e-4 * ref->w[l][k]));
				ref->w[l][k] -= vw[l][k];
			}
			for (int k = 0; k < wdims[l + 1]; k++) {
				vb[l][k] = (float)(0.9 * vb[l][k] + 2 * lr * gb[l][k]);
				ref->b[l][k] -= vb[l][k];
			}
		}
	}
	for (int l = 0; l < 3; l++) {
		size_t nw = (size_t)wdims[l + 1] * wdims[l];
		double maxd = 0, maxv = 0, sd = 0, sv = 0;
		for (size_t k = 0; k < nw; k++) {
			double d = fabs((double)h->w[l][k] - ref->w[l][k]);
			double v = fabs((double)vw[l][k]);
			maxd = d > maxd ? d : maxd;
			maxv = v > maxv ? v : maxv;
			sd += d * d;
			sv += v * v;
		}
		/* the weights moved (a no-op trainer fails) and moved as the formula says */
		assert_true(maxv > 1e-5);
		/* largest difference against the largest step, and the rms
		 * difference against the rms step (a layout error in a few
		 * blocks shows in the second) */
		if (maxd > tol * maxv || sqrt(sd / sv) > tol)
			fail_msg("layer %d: weights differ by %g (largest step %g), rms %g of the "
			         "rms step",
			         l, maxd, maxv, sqrt(sd / sv));
		for (int k = 0; k < wdims[l + 1]; k++)
			assert_true(fabs((double)h->b[l][k] - ref->b[l][k]) <= tol * maxv + 1e-7);
		free(gw[l]);
		free(gb[l]);
		free(vw[l]);
		free(vb[l]);
	}
	usv_head_free(h);
	usv_head_free(ref);
	free(x);
	free(y);
}

static void test_sgd_step(void **state)
{
	(void)state;
	sgd_step(USV_TRAIN_FP32, 1e-3);
}

/* BF16 GEMMs (operands rounded to 8 bits of mantissa, FP32 sums): the same
 * two steps within 3 % of the largest step. A wrong packed layout or a
 * transposed operand gives errors of the order of the step itself. */
static void test_sgd_step_bf16(void **state)
{
	(void)state;
	sgd_step(USV_TRAIN_BF16, 0.03);
}

/* The trainer's own packing of BF16 operands (nn/src/train.c) must give
 * the layout of the engine's packers, block by block. */
int usv__train_pack_block(const float *src, long ld, int lines, int k, int R, int columns,
                          uint16_t *dst);

static void test_bf16_pack_layout(void **state)
{
	(void)state;
	const int ks[] = {1, 2, 31, 32, 33, 95, 600, 601, 1027};
	const int lines[] = {1, 5, 12, 16, 17, 31, 32};
	usv_rng r;
	usv_rng_seed(&r, 3);
	for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++)
		for (size_t b = 0; b < sizeof lines / sizeof lines[0]; b++) {
			int k = ks[a], n = lines[b];
			long ld = k + 3; /* rows of src are padded */
			float *src = malloc((size_t)64 * ld * sizeof(float));
			for (size_t i = 0; i < (size_t)64 * ld; i++)
				src[i] = (float)usv_rng_normal(&r);
			/* R = NR: a panel of B given as [n][k] */
			size_t eb = usv__bgemm_b_elems(k, USV_BGEMM_NR);
			uint16_t *ref = aligned_alloc(64, (eb * 2 + 63) / 64 * 64);
			uint16_t *got = aligned_alloc(64, (eb * 2 + 63) / 64 * 64);
			assert_int_equal(usv__bgemm_pack_b(src, ld, 1, k, n, ref), 0);
			memset(got, 0x5a, eb * 2);
			assert_int_equal(usv__train_pack_block(src, ld, n, k, USV_BGEMM_NR, 0, got),
			                 0);
			assert_memory_equal(got, ref, eb * 2);
			free(ref);
			free(got);
			if (n > USV_BGEMM_MR)
				n = USV_BGEMM_MR;
			/* R = MR: a row block of A given as [m][k] and as [k][m] */
			size_t ea = usv__bgemm_a_elems(n, k);
			ref = aligned_alloc(64, (ea * 2 + 63) / 64 * 64);
			got = aligned_alloc(64, (ea * 2 + 63) / 64 * 64);
			assert_int_equal(usv__bgemm_pack_a(src, ld, 0, n, k, ref), 0);
			memset(got, 0x5a, ea * 2);
			assert_int_equal(usv__train_pack_block(src, ld, n, k, USV_BGEMM_MR, 0, got),
			                 0);
			assert_memory_equal(got, ref, ea * 2);
			if ((long)n <= ld && k <= 64) {
				/* transposed: k lines of ld values, the first n used */
				assert_int_equal(usv__bgemm_pack_a(src, ld, 1, n, k, ref), 0);
				memset(got, 0x5a, ea * 2);
				assert_int_equal(
				    usv__train_pack_block(src, ld, n, k, USV_BGEMM_MR, 1, got), 0);
				assert_memory_equal(got, ref, ea * 2);
			}
			free(ref);
			free(got);
			free(src);
		}
}

static void test_bad_input(void **state)
{
	(void)state;
	const int dims[2] = {4, 2};
	usv_head *h = NULL;
	assert_int_equal(usv_head_new(0, dims, &h), -EINVAL);
	const int bad[2] = {4, 0};
	assert_true(usv_head_new(1, bad, &h) < 0);
	assert_int_equal(usv_head_new(1, dims, &h), 0);
	float x[4] = {0};
	int y = 5;
	double loss;
	assert_int_equal(usv_head_loss_grad(h, x, &y, 1, NULL, NULL, NULL, &loss), -EINVAL);
	usv_head_free(h);
	usv_head_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gradients),        cmocka_unit_test(test_separable),
	    cmocka_unit_test(test_deterministic),    cmocka_unit_test(test_threads_identical),
	    cmocka_unit_test(test_sgd_step),         cmocka_unit_test(test_sgd_step_bf16),
	    cmocka_unit_test(test_bf16_pack_layout), cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
