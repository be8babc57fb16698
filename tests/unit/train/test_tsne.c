/*
 * NAME
 *	test_tsne.c - unit tests of cli/tsne.c (PCA, exact t-SNE)
 *
 * DESCRIPTION
 *	PCA: data on a known 2-D plane embedded in 300-d plus small noise; the
 *	first two scores must carry the variance of the plane's axes (3^2
 *	and 1^2) and the rest only noise; scores are uncorrelated.
 *	t-SNE: three Gaussian clusters in 60-d; in the 2-D map each point's
 *	5 nearest neighbours must share its cluster (>= 98 %), and the same
 *	seed gives the same map.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tsne.h"
#include "usv/train.h"

static void test_pca_plane(void **state)
{
	(void)state;
	enum { N = 400, D = 300 };
	float *x = malloc(sizeof(float) * N * D);
	double *u = malloc(sizeof(double) * D), *v = malloc(sizeof(double) * D);
	usv_rng r;
	usv_rng_seed(&r, 9);
	/* two orthonormal directions */
	double nu = 0, nv = 0, dot = 0;
	for (int c = 0; c < D; c++) {
		u[c] = usv_rng_normal(&r);
		nu += u[c] * u[c];
	}
	for (int c = 0; c < D; c++)
		u[c] /= sqrt(nu);
	for (int c = 0; c < D; c++)
		v[c] = usv_rng_normal(&r);
	for (int c = 0; c < D; c++)
		dot += v[c] * u[c];
	for (int c = 0; c < D; c++)
		v[c] -= dot * u[c];
	for (int c = 0; c < D; c++)
		nv += v[c] * v[c];
	for (int c = 0; c < D; c++)
		v[c] /= sqrt(nv);
	for (int i = 0; i < N; i++) {
		double a = 3 * usv_rng_normal(&r), b = usv_rng_normal(&r);
		for (int c = 0; c < D; c++)
			x[(size_t)i * D + c] =
			    (float)(5 + a * u[c] + b * v[c] + 0.01 * usv_rng_normal(&r));
	}
	double *s = malloc(sizeof(double) * N * 50);
	int k = 0;
	assert_int_equal(usv_pca(x, N, D, 50, 1, s, &k), 0);
	assert_int_equal(k, 50);
	double var[3] = {0}, cov01 = 0;
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < 3; j++)
			var[j] += s[(size_t)i * 50 + j] * s[(size_t)i * 50 + j] / N;
		cov01 += s[(size_t)i * 50] * s[(size_t)i * 50 + 1] / N;
	}
	/* sample variances of a and b are near 9 and 1 */
	assert_true(var[0] > 7 && var[0] < 11);
	assert_true(var[1] > 0.8 && var[1] < 1.25);
	assert_true(var[2] < 0.01);
	assert_true(fabs(cov01) < 1e-6 * var[0]);
	free(x);
	free(u);
	free(v);
	free(s);
}

static void test_tsne_clusters(void **state)
{
	(void)state;
	enum { N = 150, D = 60 };
	float *x = malloc(sizeof(float) * N * D);
	int lab[N];
	usv_rng r;
	usv_rng_seed(&r, 4);
	for (int i = 0; i < N; i++) {
		lab[i] = i % 3;
		for (int c = 0; c < D; c++)
			x[(size_t)i * D + c] =
			    (float)((c % 3 == lab[i] ? 4.0 : 0.0) + usv_rng_normal(&r));
	}
	double *p = malloc(sizeof(double) * N * 50), *y = malloc(sizeof(double) * N * 2),
	       *y2 = malloc(sizeof(double) * N * 2);
	int k;
	assert_int_equal(usv_pca(x, N, D, 50, 2, p, &k), 0);
	assert_int_equal(usv_tsne(p, N, k, 30, 500, 7, y), 0);
	assert_int_equal(usv_tsne(p, N, k, 30, 500, 7, y2), 0);
	assert_memory_equal(y, y2, sizeof(double) * N * 2);
	int good = 0;
	for (int i = 0; i < N; i++) {
		/* 5 nearest neighbours in the map */
		double best[5];
		int bi[5];
		for (int t = 0; t < 5; t++)
			best[t] = INFINITY, bi[t] = -1;
		for (int j = 0; j < N; j++) {
			if (j == i)
				continue;
			double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
			double dd = dx * dx + dy * dy;
			for (int t = 0; t < 5; t++)
				if (dd < best[t]) {
					for (int u = 4; u > t; u--)
						best[u] = best[u - 1], bi[u] = bi[u - 1];
					best[t] = dd;
					bi[t] = j;
					break;
				}
		}
		for (int t = 0; t < 5; t++)
			good += lab[bi[t]] == lab[i];
	}
	assert_true(good >= 0.98 * 5 * N);
	free(x);
	free(p);
	free(y);
	free(y2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pca_plane),
	    cmocka_unit_test(test_tsne_clusters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
