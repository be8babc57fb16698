/*
 * NAME
 *	test_auc_ci.c - unit tests of cli/stats.c: multi-class AUC, its
 *	bootstrap interval and DeLong's test
 *
 * DESCRIPTION
 *	DeLong on a case worked by hand (below) and against a direct
 *	O(m n) computation of the placements and their covariances on random
 *	scores with ties; identical scores (variance 0: z undefined, p 1).
 *	The bootstrap: the same seed gives the same bits, another seed
 *	another interval; resampling by group equals resampling the images
 *	when every group is k copies of one image; replicates recomputed
 *	here from the documented SplitMix64 draws by repeating images.
 *
 *	Worked example (m = 3 positives, n = 2 negatives):
 *	    A: X = (0.9, 0.7, 0.4), Y = (0.5, 0.3)
 *	    B: X = (0.6, 0.8, 0.2), Y = (0.6, 0.1)
 *	A: V10 = (1, 1, 1/2), AUC_A = 5/6, V01 = (2/3, 1).
 *	B: V10 = (3/4, 1, 1/2) (0.6 ties 0.6: 1/2), AUC_B = 3/4, V01 = (1/2, 1).
 *	Deviations from the AUC: A: V10 (1/6, 1/6, -1/3), V01 (-1/6, 1/6);
 *	B: V10 (0, 1/4, -1/4), V01 (-1/4, 1/4).
 *	S10: AA = (1/36 + 1/36 + 4/36) / 2 = 1/12, BB = (0 + 1/16 + 1/16) / 2
 *	= 1/16, AB = (0 + 1/24 + 1/12) / 2 = 1/16.
 *	S01: AA = 1/36 + 1/36 = 1/18, BB = 1/16 + 1/16 = 1/8, AB = 1/24 +
 *	1/24 = 1/12.
 *	S = S10 / 3 + S01 / 2: AA = 1/36 + 1/36 = 1/18, BB = 1/48 + 1/16 =
 *	1/12, AB = 1/48 + 1/24 = 1/16.
 *	var = 1/18 + 1/12 - 2/16 = (4 + 6 - 9) / 72 = 1/72, diff = 5/6 - 3/4
 *	= 1/12, z = (1/12) / sqrt(1/72) = sqrt(2) / 2, p = erfc(1/2)
 *	= 0.4795001221869535.
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

#define NEAR(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

static void test_delong_hand(void **state)
{
	(void)state;
	/* positives and negatives interleaved: order must not matter */
	double a[5] = {0.5, 0.9, 0.7, 0.3, 0.4};
	double b[5] = {0.6, 0.6, 0.8, 0.1, 0.2};
	int pos[5] = {0, 1, 1, 0, 1};
	struct usv_delong r;
	assert_int_equal(usv_delong(a, b, pos, 5, &r), 0);
	assert_int_equal(r.n_pos, 3);
	assert_int_equal(r.n_neg, 2);
	NEAR(r.auc_a, 5.0 / 6, 1e-15);
	NEAR(r.auc_b, 0.75, 1e-15);
	NEAR(r.var_a, 1.0 / 18, 1e-15);
	NEAR(r.var_b, 1.0 / 12, 1e-15);
	NEAR(r.cov, 1.0 / 16, 1e-15);
	NEAR(r.diff, 1.0 / 12, 1e-15);
	NEAR(r.se, sqrt(1.0 / 72), 1e-15);
	assert_true(r.z_defined);
	NEAR(r.z, sqrt(2.0) / 2, 1e-14);
	NEAR(r.p, 0.4795001221869535, 1e-14);
	/* swapping A and B flips the sign, not p */
	struct usv_delong s;
	assert_int_equal(usv_delong(b, a, pos, 5, &s), 0);
	NEAR(s.z, -r.z, 1e-15);
	NEAR(s.p, r.p, 1e-15);
}

static void test_delong_degenerate(void **state)
{
	(void)state;
	double a[6] = {0.1, 0.4, 0.35, 0.8, 0.5, 0.5};
	int pos[6] = {0, 0, 1, 1, 1, 0};
	struct usv_delong r;
	/* identical scores: difference 0 with variance 0 */
	assert_int_equal(usv_delong(a, a, pos, 6, &r), 0);
	assert_true(r.diff == 0 && r.se == 0);
	assert_false(r.z_defined);
	assert_true(isnan(r.z));
	assert_true(r.p == 1.0);
	/* perfect separation against a constant: both variances 0, AUCs differ */
	double sep[6] = {0, 0, 1, 1, 1, 0}, flat[6] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
	assert_int_equal(usv_delong(sep, flat, pos, 6, &r), 0);
	NEAR(r.auc_a, 1, 0);
	NEAR(r.auc_b, 0.5, 0);
	assert_false(r.z_defined);
	assert_true(r.p == 0.0);
	/* fewer than two positives or negatives */
	int one[6] = {0, 0, 0, 0, 1, 0};
	assert_int_equal(usv_delong(a, a, one, 6, &r), -EINVAL);
	double bad[6] = {0.1, NAN, 0.35, 0.8, 0.5, 0.5};
	assert_int_equal(usv_delong(bad, a, pos, 6, &r), -EINVAL);
}

static double psi(double x, double y)
{
	return x > y ? 1.0 : x == y ? 0.5 : 0.0;
}

/* DeLong straight from the definitions, O(m n). */
static void delong_naive(const double *a, const double *b, const int *pos, size_t n, double out[6])
{
	size_t m = 0, k = 0;
	for (size_t i = 0; i < n; i++)
		m += pos[i] != 0;
	k = n - m;
	double *v10[2], *v01[2], auc[2] = {0, 0};
	const double *s[2] = {a, b};
	for (int r = 0; r < 2; r++) {
		v10[r] = calloc(m, sizeof(double));
		v01[r] = calloc(k, sizeof(double));
		size_t ii = 0;
		for (size_t i = 0; i < n; i++) {
			if (!pos[i])
				continue;
			size_t jj = 0;
			for (size_t j = 0; j < n; j++) {
				if (pos[j])
					continue;
				double v = psi(s[r][i], s[r][j]);
				v10[r][ii] += v / (double)k;
				v01[r][jj] += v / (double)m;
				auc[r] += v;
				jj++;
			}
			ii++;
		}
		auc[r] /= (double)(m * k);
	}
	double S[3];
	for (int t = 0; t < 3; t++) {
		int r1 = t == 1, r2 = t >= 1; /* t: aa, bb, ab */
		double s10 = 0, s01 = 0;
		for (size_t i = 0; i < m; i++)
			s10 += (v10[r1][i] - auc[r1]) * (v10[r2][i] - auc[r2]);
		for (size_t j = 0; j < k; j++)
			s01 += (v01[r1][j] - auc[r1]) * (v01[r2][j] - auc[r2]);
		S[t] = s10 / (double)(m - 1) / (double)m + s01 / (double)(k - 1) / (double)k;
	}
	out[0] = auc[0];
	out[1] = auc[1];
	out[2] = S[0]; /* aa */
	out[3] = S[1]; /* bb */
	out[4] = S[2]; /* ab */
	out[5] = (auc[0] - auc[1]) / sqrt(S[0] + S[1] - 2 * S[2]);
	for (int r = 0; r < 2; r++) {
		free(v10[r]);
		free(v01[r]);
	}
}

static void test_delong_random(void **state)
{
	(void)state;
	srand(11);
	for (int round = 0; round < 30; round++) {
		size_t n = 6 + (size_t)(rand() % 150);
		double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
		int *pos = malloc(n * sizeof *pos);
		for (size_t i = 0; i < n; i++) {
			pos[i] = rand() % 3 == 0;
			a[i] = (rand() % 9) / 9.0 + (pos[i] ? 0.15 : 0); /* ties */
			b[i] = round % 2 ? (double)rand() / RAND_MAX + (pos[i] ? 0.2 : 0)
			                 : (rand() % 5) / 5.0 + 0.5 * a[i];
		}
		pos[0] = pos[1] = 1;
		pos[2] = pos[3] = 0;
		struct usv_delong r;
		double ref[6];
		assert_int_equal(usv_delong(a, b, pos, n, &r), 0);
		delong_naive(a, b, pos, n, ref);
		NEAR(r.auc_a, ref[0], 1e-12);
		NEAR(r.auc_b, ref[1], 1e-12);
		NEAR(r.var_a, ref[2], 1e-12);
		NEAR(r.var_b, ref[3], 1e-12);
		NEAR(r.cov, ref[4], 1e-12);
		assert_true(r.z_defined);
		NEAR(r.z, ref[5], 1e-9);
		NEAR(r.p, erfc(fabs(ref[5]) / sqrt(2.0)), 1e-9);
		free(a);
		free(b);
		free(pos);
	}
}

static void test_auc_stat(void **state)
{
	(void)state;
	/* two classes: the second class's probability, as usv_auc */
	double p2[8] = {0.9, 0.1, 0.4, 0.6, 0.5, 0.5, 0.2, 0.8};
	int t2[4] = {0, 1, 1, 0};
	double s[4] = {0.1, 0.6, 0.5, 0.8}, auc, ref, pc[3];
	int pos[4] = {0, 1, 1, 0};
	assert_int_equal(usv_auc(s, pos, 4, &ref), 0);
	assert_int_equal(usv_auc_stat(p2, t2, 4, 2, pc, &auc), 0);
	NEAR(auc, ref, 0);
	NEAR(pc[1], ref, 0);
	/* three classes by hand:
	 *   image: truth, p0 p1 p2
	 *   0: 0, .7 .2 .1   1: 0, .4 .4 .2   2: 1, .3 .6 .1
	 *   3: 1, .5 .3 .2   4: 2, .2 .3 .5   5: 2, .1 .2 .7
	 * class 0: pos p0 {.7, .4}, neg {.3, .5, .2, .1}: (4 + 3) / 8 = 7/8
	 * class 1: pos p1 {.6, .3}, neg {.2, .4, .3, .2}: (4 + 2.5) / 8 = 13/16
	 * class 2: pos p2 {.5, .7}, neg {.1, .2, .1, .2}: 8 / 8 = 1
	 * mean (7/8 + 13/16 + 1) / 3 = 43/48 */
	double p3[18] = {.7, .2, .1, .4, .4, .2, .3, .6, .1, .5, .3, .2, .2, .3, .5, .1, .2, .7};
	int t3[6] = {0, 0, 1, 1, 2, 2};
	assert_int_equal(usv_auc_stat(p3, t3, 6, 3, pc, &auc), 0);
	NEAR(pc[0], 7.0 / 8, 1e-15);
	NEAR(pc[1], 13.0 / 16, 1e-15);
	NEAR(pc[2], 1.0, 1e-15);
	NEAR(auc, 43.0 / 48, 1e-15);
	/* a class without examples: NAN and left out of the mean */
	int t4[6] = {0, 0, 1, 1, 1, 1};
	double pc4[4];
	double p4[24];
	for (int i = 0; i < 6; i++) {
		memcpy(p4 + i * 4, p3 + i * 3, 3 * sizeof(double));
		p4[i * 4 + 3] = 0;
	}
	assert_int_equal(usv_auc_stat(p4, t4, 6, 4, pc4, &auc), 0);
	assert_true(isnan(pc4[2]) && isnan(pc4[3]));
	NEAR(auc, (pc4[0] + pc4[1]) / 2, 1e-15);
	int bad[6] = {0, 0, 1, 1, 3, 1};
	assert_int_equal(usv_auc_stat(p3, bad, 6, 3, pc, &auc), -EINVAL);
}

/* n images of a binary problem with overlapping scores. */
static void make_binary(size_t n, unsigned seed, double *prob, int *truth)
{
	srand(seed);
	for (size_t i = 0; i < n; i++) {
		truth[i] = rand() % 3 == 0;
		double s = (rand() % 50) / 50.0 * 0.8 + (truth[i] ? 0.2 : 0);
		prob[i * 2] = 1 - s;
		prob[i * 2 + 1] = s;
	}
	truth[0] = 1;
	truth[1] = 0;
}

static void test_bootstrap_determinism(void **state)
{
	(void)state;
	enum { N = 120 };
	double prob[2 * N], lo1, hi1, lo2, hi2, lo3, hi3, auc;
	int truth[N], valid;
	make_binary(N, 3, prob, truth);
	assert_int_equal(usv_auc_stat(prob, truth, N, 2, NULL, &auc), 0);
	assert_int_equal(
	    usv_auc_bootstrap(prob, truth, NULL, N, 2, 0, 500, 1, 0.95, &lo1, &hi1, &valid), 0);
	assert_int_equal(valid, 500);
	assert_int_equal(
	    usv_auc_bootstrap(prob, truth, NULL, N, 2, 0, 500, 1, 0.95, &lo2, &hi2, NULL), 0);
	assert_memory_equal(&lo1, &lo2, sizeof lo1);
	assert_memory_equal(&hi1, &hi2, sizeof hi1);
	assert_int_equal(
	    usv_auc_bootstrap(prob, truth, NULL, N, 2, 0, 500, 2, 0.95, &lo3, &hi3, NULL), 0);
	assert_true(lo3 != lo1 || hi3 != hi1);
	assert_true(lo1 < auc && auc < hi1);
	assert_true(lo1 > 0.3 && hi1 < 1.0);
	/* a wider level gives a wider interval */
	assert_int_equal(
	    usv_auc_bootstrap(prob, truth, NULL, N, 2, 0, 500, 1, 0.99, &lo2, &hi2, NULL), 0);
	assert_true(lo2 <= lo1 && hi2 >= hi1);
	assert_int_equal(
	    usv_auc_bootstrap(prob, truth, NULL, N, 2, 0, 0, 1, 0.95, &lo2, &hi2, NULL), -EINVAL);
	int unit[N];
	for (int i = 0; i < N; i++)
		unit[i] = i % 7;
	unit[5] = 7; /* out of range */
	assert_int_equal(
	    usv_auc_bootstrap(prob, truth, unit, N, 2, 7, 10, 1, 0.95, &lo2, &hi2, NULL), -EINVAL);
}

static uint64_t sm64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void test_bootstrap_grouped(void **state)
{
	(void)state;
	enum { N = 60, K = 3, NC = 3, B = 200 };
	/* three classes, N base images, each repeated K times as one group */
	double base[N * NC], dup[N * K * NC];
	int tb[N], td[N * K], unit[N * K];
	srand(8);
	for (int i = 0; i < N; i++) {
		tb[i] = i % NC;
		double sum = 0;
		for (int c = 0; c < NC; c++) {
			base[i * NC + c] = (rand() % 20) / 20.0 + (c == tb[i] ? 0.4 : 0.05);
			sum += base[i * NC + c];
		}
		for (int c = 0; c < NC; c++)
			base[i * NC + c] /= sum;
		for (int k = 0; k < K; k++) {
			memcpy(dup + (i * K + k) * NC, base + i * NC, NC * sizeof(double));
			td[i * K + k] = tb[i];
			unit[i * K + k] = i;
		}
	}
	double lo, hi, glo, ghi, ilo, ihi;
	assert_int_equal(usv_auc_bootstrap(base, tb, NULL, N, NC, 0, B, 7, 0.95, &lo, &hi, NULL),
	                 0);
	/* whole groups of identical copies: exactly the image bootstrap of the base */
	assert_int_equal(
	    usv_auc_bootstrap(dup, td, unit, N * K, NC, N, B, 7, 0.95, &glo, &ghi, NULL), 0);
	assert_memory_equal(&lo, &glo, sizeof lo);
	assert_memory_equal(&hi, &ghi, sizeof hi);
	/* ignoring the groups pretends K times the data: a narrower interval */
	assert_int_equal(
	    usv_auc_bootstrap(dup, td, NULL, N * K, NC, 0, B, 7, 0.95, &ilo, &ihi, NULL), 0);
	assert_true(ihi - ilo < 0.8 * (ghi - glo));

	/* the replicates rebuilt here: draw the groups as documented, repeat
	 * their images, usv_auc_stat (rank form) on the repeated set */
	double rep[B];
	int m = 0;
	uint64_t x = 7;
	for (int b = 0; b < B; b++) {
		int cnt[N] = {0};
		for (int u = 0; u < N; u++)
			cnt[((sm64(&x) >> 32) * (uint64_t)N) >> 32]++;
		size_t nn = 0; /* at most N * K images per draw, N draws */
		double *pp = malloc((size_t)N * K * N * NC * sizeof(double));
		int *tt = malloc((size_t)N * K * N * sizeof(int));
		assert_non_null(pp);
		assert_non_null(tt);
		for (int i = 0; i < N * K; i++)
			for (int c = 0; c < cnt[unit[i]]; c++) {
				memcpy(pp + nn * NC, dup + i * NC, NC * sizeof(double));
				tt[nn++] = td[i];
			}
		double a, pc[NC];
		int ok = !usv_auc_stat(pp, tt, nn, NC, pc, &a);
		for (int c = 0; c < NC; c++)
			ok = ok && !isnan(pc[c]);
		if (ok)
			rep[m++] = a;
		free(pp);
		free(tt);
	}
	assert_true(m >= B / 2);
	qsort(rep, (size_t)m, sizeof *rep, cmp_d);
	double h = (m - 1) * 0.025, h2 = (m - 1) * 0.975;
	int f = (int)floor(h), f2 = (int)floor(h2);
	double rlo = rep[f] + (h - f) * (rep[f + 1] - rep[f]);
	double rhi = rep[f2] + (h2 - f2) * (rep[f2 + 1] - rep[f2]);
	NEAR(glo, rlo, 1e-12);
	NEAR(ghi, rhi, 1e-12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_delong_hand),           cmocka_unit_test(test_delong_degenerate),
	    cmocka_unit_test(test_delong_random),         cmocka_unit_test(test_auc_stat),
	    cmocka_unit_test(test_bootstrap_determinism), cmocka_unit_test(test_bootstrap_grouped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
