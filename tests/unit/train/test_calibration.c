/*
 * NAME
 *	test_calibration.c - unit tests of the calibration metrics
 *	(cli/stats.c usv_calibration(), usv_nll()) and of temperature
 *	scaling (nn usv_temperature_fit(), usv_temperature_nll(),
 *	usv_softmax_t())
 *
 * DESCRIPTION
 *	ECE on hand-made cases whose answer is worked out in the comments,
 *	then against a naive reference (each bin scanned separately with
 *	explicit interval tests) on random probabilities. The temperature
 *	fit against a brute-force grid search of an independently written
 *	NLL (direct softmax in long double) on synthetic logits whose labels
 *	are drawn from softmax(z / T_true): over-confident (T_true > 1),
 *	under-confident (T_true < 1), calibrated, and separable data (the
 *	fit must stop at the lower end of the range).
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

#include "stats.h"
#include "usv/nn.h"
#include "usv/train.h"

/* ---------------- ECE ---------------- */

static void test_ece_hand(void **state)
{
	(void)state;
	struct usv_calib_bin b[USV_CALIB_BINS];
	double ece, mce;
	/* four predictions, each alone in its bin (15 bins of width 1/15):
	 * conf 0.9 right (bin 13), 0.75 wrong (bin 11), 0.7 right (bin 10),
	 * 0.55 wrong (bin 8): ECE = (0.1 + 0.75 + 0.3 + 0.55) / 4 = 0.425,
	 * MCE = 0.75 */
	const float p1[] = {0.9f, 0.1f, 0.75f, 0.25f, 0.3f, 0.7f, 0.45f, 0.55f};
	const int y1[] = {0, 1, 1, 0};
	assert_int_equal(usv_calibration(p1, y1, 4, 2, USV_CALIB_BINS, b, &ece, &mce), 0);
	assert_true(fabs(ece - 0.425) < 1e-6);
	assert_true(fabs(mce - 0.75) < 1e-6);
	assert_int_equal(b[13].n, 1);
	assert_int_equal(b[11].n, 1);
	assert_int_equal(b[10].n, 1);
	assert_int_equal(b[8].n, 1);
	assert_true(fabs(b[11].conf - 0.75) < 1e-6 && b[11].acc == 0);
	assert_true(fabs(b[10].conf - 0.7) < 1e-6 && b[10].acc == 1);
	assert_true(fabs(b[13].lo - 13.0 / 15) < 1e-15 && fabs(b[13].hi - 14.0 / 15) < 1e-15);
	assert_int_equal(b[0].n, 0);
	assert_true(b[0].conf == 0 && b[0].acc == 0);

	/* three classes: 0.62 right and 0.64 wrong share bin 9 (acc 0.5,
	 * conf 0.63, gap 0.13), 0.98 right in bin 14 (gap 0.02):
	 * ECE = 2/3 * 0.13 + 1/3 * 0.02 = 0.28 / 3 */
	const float p2[] = {0.62f, 0.3f, 0.08f, 0.2f, 0.64f, 0.16f, 0.01f, 0.01f, 0.98f};
	const int y2[] = {0, 2, 2};
	assert_int_equal(usv_calibration(p2, y2, 3, 3, USV_CALIB_BINS, b, &ece, &mce), 0);
	assert_true(fabs(ece - 0.28 / 3) < 1e-6);
	assert_true(fabs(mce - 0.13) < 1e-6);
	assert_int_equal(b[9].n, 2);
	assert_true(fabs(b[9].acc - 0.5) < 1e-15);
	assert_true(fabs(b[9].conf - 0.63) < 1e-6);

	/* perfectly calibrated: 10 predictions at 0.7, 7 right -> ECE 0 */
	float p3[20];
	int y3[10];
	for (int i = 0; i < 10; i++) {
		p3[2 * i] = 0.7f;
		p3[2 * i + 1] = 0.3f;
		y3[i] = i < 7 ? 0 : 1;
	}
	assert_int_equal(usv_calibration(p3, y3, 10, 2, USV_CALIB_BINS, b, &ece, NULL), 0);
	assert_true(ece < 1e-6);

	/* a tie goes to the first class: [0.5, 0.5] with truth 1 is wrong,
	 * conf 0.5 in bin 7 (7/15 < 0.5 <= 8/15): ECE 0.5 */
	const float p4[] = {0.5f, 0.5f};
	const int y4[] = {1};
	assert_int_equal(usv_calibration(p4, y4, 1, 2, USV_CALIB_BINS, b, &ece, NULL), 0);
	assert_true(fabs(ece - 0.5) < 1e-12);
	assert_int_equal(b[7].n, 1);

	/* one bin: ECE = |accuracy - mean confidence| = |2/4 - 0.725| */
	assert_int_equal(usv_calibration(p1, y1, 4, 2, 1, b, &ece, NULL), 0);
	assert_true(fabs(ece - fabs(0.5 - (0.9 + 0.75 + 0.7 + 0.55) / 4)) < 1e-6);

	/* bad input */
	const int ybad[] = {0, 2, 1, 0};
	assert_int_equal(usv_calibration(p1, ybad, 4, 2, USV_CALIB_BINS, b, &ece, NULL), -EINVAL);
	assert_int_equal(usv_calibration(p1, y1, 4, 2, 0, b, &ece, NULL), -EINVAL);
	assert_int_equal(usv_calibration(p1, y1, 0, 2, USV_CALIB_BINS, b, &ece, NULL), -EINVAL);
}

/* Reference: for each bin, scan every prediction and keep those with
 * lo < conf <= hi (bin 0 also conf == 0). */
static double naive_ece(const float *p, const int *y, int n, int nc, int nb, double *mce)
{
	double e = 0;
	*mce = 0;
	for (int b = 0; b < nb; b++) {
		double lo = (double)b / nb, hi = (double)(b + 1) / nb, sc = 0;
		int cnt = 0, ok = 0;
		for (int i = 0; i < n; i++) {
			int arg = 0;
			for (int k = 0; k < nc; k++)
				if (p[i * nc + k] > p[i * nc + arg])
					arg = k;
			double c = p[i * nc + arg];
			if ((c > lo && c <= hi) || (b == 0 && c == 0)) {
				cnt++;
				sc += c;
				ok += arg == y[i];
			}
		}
		if (cnt) {
			double gap = fabs((double)ok / cnt - sc / cnt);
			e += (double)cnt / n * gap;
			*mce = gap > *mce ? gap : *mce;
		}
	}
	return e;
}

static void test_ece_random(void **state)
{
	(void)state;
	srand(11);
	static const int nbs[] = {1, 2, 10, 15, 100};
	for (int round = 0; round < 40; round++) {
		int n = 1 + rand() % 400, nc = 2 + rand() % 6, nb = nbs[round % 5];
		float *p = malloc((size_t)n * nc * sizeof(float));
		int *y = malloc((size_t)n * sizeof(int));
		for (int i = 0; i < n; i++) {
			double s = 0;
			for (int k = 0; k < nc; k++) {
				/* powers sharpen some rows towards one class */
				double u = pow((rand() + 1.0) / (RAND_MAX + 1.0), 1 + rand() % 8);
				p[i * nc + k] = (float)u;
				s += u;
			}
			for (int k = 0; k < nc; k++)
				p[i * nc + k] = (float)(p[i * nc + k] / s);
			y[i] = rand() % nc;
		}
		struct usv_calib_bin *b = calloc((size_t)nb, sizeof *b);
		double ece, mce, rmce;
		assert_int_equal(usv_calibration(p, y, (size_t)n, nc, nb, b, &ece, &mce), 0);
		double ref = naive_ece(p, y, n, nc, nb, &rmce);
		assert_true(fabs(ece - ref) < 1e-12);
		assert_true(fabs(mce - rmce) < 1e-12);
		long tot = 0;
		for (int k = 0; k < nb; k++)
			tot += b[k].n;
		assert_int_equal(tot, n);
		free(b);
		free(p);
		free(y);
	}
}

static void test_nll(void **state)
{
	(void)state;
	const float p[] = {0.9f, 0.1f, 0.8f, 0.2f, 0.0f, 1.0f};
	const int y[] = {0, 1, 0};
	double nll;
	/* -(ln 0.9 + ln 0.2) / 2 */
	assert_int_equal(usv_nll(p, y, 2, 2, &nll), 0);
	assert_true(fabs(nll - (-(log(0.9) + log(0.2)) / 2)) < 1e-6);
	/* a zero probability is clamped to 1e-12 */
	assert_int_equal(usv_nll(p, y, 3, 2, &nll), 0);
	assert_true(fabs(nll - (-(log(0.9) + log(0.2) + log(1e-12)) / 3)) < 1e-6);
}

/* ---------------- temperature ---------------- */

/* Reference NLL: softmax written out directly in long double. */
static double naive_nll(const float *z, const int *y, int n, int nc, double t)
{
	long double s = 0;
	for (int i = 0; i < n; i++) {
		long double den = 0;
		for (int k = 0; k < nc; k++)
			den += expl((long double)z[i * nc + k] / t);
		s -= logl(expl((long double)z[i * nc + y[i]] / t) / den);
	}
	return (double)(s / n);
}

/* n rows of nc logits (a per-row "strength" times a random direction)
 * and labels drawn from softmax(z / t_true). */
static void synth(int n, int nc, double t_true, unsigned seed, float *z, int *y)
{
	srand(seed);
	for (int i = 0; i < n; i++) {
		double strength = 1 + 5.0 * rand() / RAND_MAX;
		for (int k = 0; k < nc; k++)
			z[i * nc + k] = (float)(strength * (2.0 * rand() / RAND_MAX - 1));
		double p[16], s = 0, u = (double)rand() / ((double)RAND_MAX + 1);
		for (int k = 0; k < nc; k++)
			s += p[k] = exp(z[i * nc + k] / t_true);
		int k = 0;
		for (double acc = p[0] / s; acc <= u && k < nc - 1; acc += p[++k] / s)
			;
		y[i] = k;
	}
}

/* The fit against a grid of 1500 points in log T over the whole range. */
static void check_fit(int n, int nc, double t_true, unsigned seed)
{
	float *z = malloc((size_t)n * nc * sizeof(float));
	int *y = malloc((size_t)n * sizeof(int));
	synth(n, nc, t_true, seed, z, y);
	double t = -1;
	assert_int_equal(usv_temperature_fit(z, y, n, nc, &t), 0);
	assert_true(t >= USV_TEMPERATURE_MIN && t <= USV_TEMPERATURE_MAX);
	/* the fast NLL agrees with the reference */
	for (double tt = 0.1; tt < 50; tt *= 2.7)
		assert_true(
		    fabs(usv_temperature_nll(z, y, n, nc, tt) - naive_nll(z, y, n, nc, tt)) < 1e-9);
	const int G = 1500;
	double lo = log((double)USV_TEMPERATURE_MIN), hi = log((double)USV_TEMPERATURE_MAX);
	double best = INFINITY, tbest = 0;
	for (int g = 0; g <= G; g++) {
		double tg = exp(lo + (hi - lo) * g / G), v = naive_nll(z, y, n, nc, tg);
		if (v < best)
			best = v, tbest = tg;
	}
	double got = naive_nll(z, y, n, nc, t);
	print_message("T_true %.3f: fit %.5f, grid %.5f; NLL %.8f vs grid %.8f\n", t_true, t, tbest,
	              got, best);
	/* never worse than the grid's best, and within one grid step of it */
	assert_true(got <= best + 1e-10);
	assert_true(fabs(log(t) - log(tbest)) <= (hi - lo) / G + 1e-9);
	/* and the fit recovers the temperature the labels were drawn with */
	assert_true(fabs(log(t / t_true)) < 0.25);
	free(z);
	free(y);
}

static void test_temperature_fit(void **state)
{
	(void)state;
	check_fit(1500, 3, 2.0, 1); /* over-confident logits */
	check_fit(1500, 5, 0.5, 2); /* under-confident */
	check_fit(1500, 2, 1.0, 3); /* calibrated */
	check_fit(1500, 11, 3.5, 4);
}

static void test_temperature_edges(void **state)
{
	(void)state;
	/* separable: every label is the argmax by a wide margin; the NLL
	 * falls as T -> 0, so the fit stops at the lower end */
	float z[] = {4, 0, 0, 5, 3, -1, -2, 6};
	int y[] = {0, 1, 0, 1};
	double t = 7;
	assert_int_equal(usv_temperature_fit(z, y, 4, 2, &t), 0);
	assert_true(fabs(t - USV_TEMPERATURE_MIN) < 1e-6);
	/* every label the argmin: the NLL falls as T grows */
	int w[] = {1, 0, 1, 0};
	assert_int_equal(usv_temperature_fit(z, w, 4, 2, &t), 0);
	assert_true(fabs(t - USV_TEMPERATURE_MAX) < 1e-4);
	/* bad input leaves *t alone */
	t = 7;
	int bad[] = {0, 2, 0, 1};
	assert_int_equal(usv_temperature_fit(z, bad, 4, 2, &t), -EINVAL);
	float zn[] = {NAN, 0, 0, 5};
	assert_int_equal(usv_temperature_fit(zn, y, 2, 2, &t), -EINVAL);
	assert_int_equal(usv_temperature_fit(z, y, 4, 1, &t), -EINVAL);
	assert_int_equal(usv_temperature_fit(z, y, 0, 2, &t), -EINVAL);
	assert_true(t == 7);
	assert_true(isnan(usv_temperature_nll(z, y, 4, 2, 0)));
}

/* usv_softmax_t against softmax(z / T) written out in double. */
static void test_softmax_t(void **state)
{
	(void)state;
	srand(3);
	static const float ts[] = {0.05f, 0.3f, 1.0f, 1.7f, 25.0f, 100.0f};
	for (int round = 0; round < 60; round++) {
		int n = 1 + rand() % 20;
		float x[20], ref[20], t = ts[round % 6];
		double s = 0;
		for (int k = 0; k < n; k++)
			x[k] = (float)(40.0 * rand() / RAND_MAX - 20);
		double mx = x[0];
		for (int k = 1; k < n; k++)
			mx = x[k] > mx ? x[k] : mx;
		for (int k = 0; k < n; k++)
			s += exp((x[k] - mx) / t);
		for (int k = 0; k < n; k++)
			ref[k] = (float)(exp((x[k] - mx) / t) / s);
		float y[20];
		memcpy(y, x, (size_t)n * sizeof(float));
		usv_softmax_t(y, n, t);
		for (int k = 0; k < n; k++)
			assert_true(fabsf(y[k] - ref[k]) <= 1e-6f + 1e-5f * ref[k]);
		/* T = 1 is usv_softmax() bit for bit */
		if (t == 1.0f) {
			float a[20];
			memcpy(a, x, (size_t)n * sizeof(float));
			usv_softmax(a, n);
			assert_memory_equal(a, y, (size_t)n * sizeof(float));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ece_hand),
	    cmocka_unit_test(test_ece_random),
	    cmocka_unit_test(test_nll),
	    cmocka_unit_test(test_temperature_fit),
	    cmocka_unit_test(test_temperature_edges),
	    cmocka_unit_test(test_softmax_t),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
