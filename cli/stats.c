/*
 * NAME
 *	stats.c - chi-square, McNemar and ROC AUC for usview eval/compare
 *
 * DESCRIPTION
 *	See stats.h. The formulas follow R's chisq.test and mcnemar.test so
 *	that results can be checked against published R output.
 */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

double usv_chi2_sf1(double x)
{
	if (!(x > 0))
		return 1.0;
	return erfc(sqrt(x / 2.0));
}

int usv_chisq_2x2(const double t[4], int yates, double *chi2, double *p)
{
	double r[2] = {t[0] + t[1], t[2] + t[3]}, c[2] = {t[0] + t[2], t[1] + t[3]};
	double n = r[0] + r[1];
	for (int i = 0; i < 4; i++)
		if (t[i] < 0 || !isfinite(t[i]))
			return -EINVAL;
	if (r[0] <= 0 || r[1] <= 0 || c[0] <= 0 || c[1] <= 0)
		return -EINVAL;
	double e[4] = {r[0] * c[0] / n, r[0] * c[1] / n, r[1] * c[0] / n, r[1] * c[1] / n};
	/* R: YATES <- min(0.5, abs(x - E)) (one scalar over all cells) */
	double corr = 0;
	if (yates) {
		corr = 0.5;
		for (int i = 0; i < 4; i++)
			if (fabs(t[i] - e[i]) < corr)
				corr = fabs(t[i] - e[i]);
	}
	double s = 0;
	for (int i = 0; i < 4; i++) {
		double d = fabs(t[i] - e[i]) - corr;
		s += d * d / e[i];
	}
	*chi2 = s;
	*p = usv_chi2_sf1(s);
	return 0;
}

int usv_mcnemar(double b, double c, int correct, double *chi2, double *p)
{
	if (b < 0 || c < 0 || !isfinite(b) || !isfinite(c))
		return -EINVAL;
	if (b + c == 0) {
		*chi2 = 0;
		*p = 1;
		return 0;
	}
	double d = fabs(b - c) - (correct ? 1.0 : 0.0);
	*chi2 = d * d / (b + c);
	*p = usv_chi2_sf1(*chi2);
	return 0;
}

typedef struct sp {
	double s;
	int pos;
} sp;

static int cmp_sp(const void *a, const void *b)
{
	double x = ((const sp *)a)->s, y = ((const sp *)b)->s;
	return (x > y) - (x < y);
}

int usv_auc(const double *score, const int *pos, size_t n, double *auc)
{
	size_t np = 0;
	for (size_t i = 0; i < n; i++)
		np += pos[i] != 0;
	if (np == 0 || np == n)
		return -EINVAL;
	sp *v = malloc(n * sizeof *v);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].s = score[i];
		v[i].pos = pos[i] != 0;
	}
	qsort(v, n, sizeof *v, cmp_sp);
	double rsum = 0; /* sum of the positives' ranks (1-based, ties averaged) */
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && v[j].s == v[i].s)
			j++;
		double rank = (double)(i + 1 + j) / 2.0;
		for (size_t k = i; k < j; k++)
			if (v[k].pos)
				rsum += rank;
		i = j;
	}
	free(v);
	double nn = (double)(n - np);
	*auc = (rsum - (double)np * (np + 1) / 2.0) / ((double)np * nn);
	return 0;
}

int usv_calibration(const float *prob, const int *truth, size_t n, int nc, int n_bins,
                    struct usv_calib_bin *bins, double *ece, double *mce)
{
	if (!prob || !truth || !bins || !ece || n < 1 || nc < 1 || n_bins < 1 ||
	    n_bins > USV_CALIB_MAX_BINS)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (truth[i] < 0 || truth[i] >= nc)
			return -EINVAL;
	double *sconf = calloc((size_t)n_bins, sizeof *sconf);
	long *ncorr = calloc((size_t)n_bins, sizeof *ncorr),
	     *cnt = calloc((size_t)n_bins, sizeof *cnt);
	if (!sconf || !ncorr || !cnt) {
		free(sconf);
		free(ncorr);
		free(cnt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const float *p = prob + i * (size_t)nc;
		int top = 0;
		for (int k = 1; k < nc; k++)
			if (p[k] > p[top])
				top = k;
		double c = p[top];
		c = c < 0 ? 0 : c > 1 ? 1 : c;
		/* (b / B, (b + 1) / B]: ceil(c B) - 1, and 0 for c = 0 */
		int b = (int)ceil(c * n_bins) - 1;
		b = b < 0 ? 0 : b >= n_bins ? n_bins - 1 : b;
		cnt[b]++;
		sconf[b] += c;
		ncorr[b] += top == truth[i];
	}
	double e = 0, m = 0;
	for (int b = 0; b < n_bins; b++) {
		struct usv_calib_bin *o = &bins[b];
		o->lo = (double)b / n_bins;
		o->hi = (double)(b + 1) / n_bins;
		o->n = cnt[b];
		o->conf = cnt[b] ? sconf[b] / cnt[b] : 0;
		o->acc = cnt[b] ? (double)ncorr[b] / cnt[b] : 0;
		double gap = fabs(o->acc - o->conf);
		e += (double)cnt[b] / (double)n * gap;
		if (cnt[b] && gap > m)
			m = gap;
	}
	free(sconf);
	free(ncorr);
	free(cnt);
	*ece = e;
	if (mce)
		*mce = m;
	return 0;
}

int usv_nll(const float *prob, const int *truth, size_t n, int nc, double *nll)
{
	if (!prob || !truth || !nll || n < 1 || nc < 1)
		return -EINVAL;
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		if (truth[i] < 0 || truth[i] >= nc)
			return -EINVAL;
		double p = prob[i * (size_t)nc + truth[i]];
		s -= log(p > 1e-12 ? p : 1e-12);
	}
	*nll = s / (double)n;
	return 0;
}
