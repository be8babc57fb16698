/*
 * NAME
 *	test_stats.c - unit tests of cli/stats.c (chi-square, McNemar, AUC)
 *
 * DESCRIPTION
 *	AUC against a brute-force count over all positive/negative pairs
 *	(ties = 1/2) on random scores with many ties; chi-square survival
 *	against known quantiles; McNemar and Yates against R's printed
 *	values; bad tables rejected.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "stats.h"

static void test_auc_bruteforce(void **state)
{
	(void)state;
	srand(5);
	for (int round = 0; round < 20; round++) {
		size_t n = 5 + (size_t)(rand() % 200);
		double *s = malloc(n * sizeof *s);
		int *p = malloc(n * sizeof *p);
		for (size_t i = 0; i < n; i++) {
			p[i] = rand() % 3 == 0;
			s[i] = (rand() % 7) / 7.0 + (p[i] ? 0.1 : 0); /* many ties */
		}
		p[0] = 1;
		p[1] = 0;
		double num = 0, den = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++)
				if (p[i] && !p[j]) {
					den++;
					num += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
				}
		double auc;
		assert_int_equal(usv_auc(s, p, n, &auc), 0);
		assert_true(fabs(auc - num / den) < 1e-12);
		free(s);
		free(p);
	}
	/* hand case: positives 0.9, 0.5; negatives 0.5, 0.1 -> (1 + 1 + 0.5 + 1) / 4 */
	double s[4] = {0.9, 0.5, 0.5, 0.1};
	int p[4] = {1, 1, 0, 0};
	double auc;
	assert_int_equal(usv_auc(s, p, 4, &auc), 0);
	assert_true(fabs(auc - 0.875) < 1e-15);
	int allpos[4] = {1, 1, 1, 1};
	assert_int_equal(usv_auc(s, allpos, 4, &auc), -EINVAL);
}

static void test_chi2(void **state)
{
	(void)state;
	/* 3.841459 is the 95% quantile of chi-square(1) */
	assert_true(fabs(usv_chi2_sf1(3.841458820694124) - 0.05) < 1e-12);
	assert_true(usv_chi2_sf1(0) == 1.0);
	double t[4] = {1100, 323, 1109, 314}, chi2, p;
	assert_int_equal(usv_chisq_2x2(t, 1, &chi2, &p), 0);
	/* R 4.2.2: chisq.test(matrix(c(1100, 1109, 323, 314), nrow = 2)) */
	assert_true(fabs(chi2 - 0.1294433433) < 1e-9);
	assert_true(fabs(p - 0.7190098991) < 1e-9);
	double bad[4] = {0, 0, 3, 4};
	assert_int_equal(usv_chisq_2x2(bad, 1, &chi2, &p), -EINVAL);
	/* R: mcnemar.test(matrix(c(794, 86, 150, 570), nrow = 2)) */
	assert_int_equal(usv_mcnemar(150, 86, 1, &chi2, &p), 0);
	assert_true(fabs(chi2 - 16.81779661) < 1e-7);
	assert_true(fabs(p - 4.114562281e-05) < 1e-12);
	assert_int_equal(usv_mcnemar(0, 0, 1, &chi2, &p), 0);
	assert_true(p == 1.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auc_bruteforce),
	    cmocka_unit_test(test_chi2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
