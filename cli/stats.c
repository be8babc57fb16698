/*
 * NAME
 *	stats.c - chi-square, McNemar, ROC AUC, its bootstrap interval and
 *	DeLong's test for usview eval/compare
 *
 * DESCRIPTION
 *	See stats.h. The formulas follow R's chisq.test and mcnemar.test so
 *	that results can be checked against published R output.
 */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
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

/* Index sort of scores (ascending). */
typedef struct ix {
	double s;
	size_t i;
} ix;

static int cmp_ix(const void *a, const void *b)
{
	const ix *x = a, *y = b;
	if (x->s != y->s)
		return (x->s > y->s) - (x->s < y->s);
	return (x->i > y->i) - (x->i < y->i);
}

/* ord[n]: the indices of column k of prob[n][nc] in ascending score order. */
static int sort_column(const double *prob, size_t n, int nc, int k, size_t *ord)
{
	ix *v = malloc((n ? n : 1) * sizeof *v);
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		v[i].s = prob[i * (size_t)nc + k];
		v[i].i = i;
	}
	qsort(v, n, sizeof *v, cmp_ix);
	for (size_t i = 0; i < n; i++)
		ord[i] = v[i].i;
	free(v);
	return 0;
}

/* Weighted AUC of column k (positive: truth == k) in the order ord:
 * sum over positives p and negatives q of w_p w_q psi(s_p, s_q), divided
 * by W_pos W_neg; NAN when either weight sum is 0. Integer weights give
 * exact sums. */
static double wauc(const double *prob, const int *truth, const double *w, const size_t *ord,
                   size_t n, int nc, int k)
{
	double num = 0, below = 0, wp_all = 0;
	for (size_t a = 0; a < n;) {
		double s = prob[ord[a] * (size_t)nc + k], wp = 0, wn = 0;
		size_t b = a;
		for (; b < n && prob[ord[b] * (size_t)nc + k] == s; b++) {
			size_t i = ord[b];
			double wi = w ? w[i] : 1.0;
			if (truth[i] == k)
				wp += wi;
			else
				wn += wi;
		}
		num += wp * (below + 0.5 * wn);
		below += wn;
		wp_all += wp;
		a = b;
	}
	if (!(wp_all > 0) || !(below > 0))
		return NAN;
	return num / (wp_all * below);
}

int usv_auc_stat(const double *prob, const int *truth, size_t n, int nc, double *per_class,
                 double *auc)
{
	if (!prob || !truth || !auc || nc < 2)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (truth[i] < 0 || truth[i] >= nc)
			return -EINVAL;
	double *col = malloc((n ? n : 1) * sizeof *col);
	int *pos = malloc((n ? n : 1) * sizeof *pos);
	if (!col || !pos) {
		free(col);
		free(pos);
		return -ENOMEM;
	}
	double sum = 0;
	int nk = 0;
	for (int k = 0; k < nc; k++) {
		double a = NAN;
		for (size_t i = 0; i < n; i++) {
			col[i] = prob[i * (size_t)nc + k];
			pos[i] = truth[i] == k;
		}
		if (usv_auc(col, pos, n, &a))
			a = NAN;
		if (per_class)
			per_class[k] = a;
		if (!isnan(a) && (nc > 2 || k == 1)) {
			sum += a;
			nk++;
		}
	}
	free(col);
	free(pos);
	if (!nk)
		return -EINVAL;
	*auc = sum / nk;
	return 0;
}

/* SplitMix64 (see stats.h). */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The q quantile of sorted v[m], linear between order statistics. */
static double quantile(const double *v, int m, double q)
{
	double h = (m - 1) * q;
	int lo = (int)floor(h);
	if (lo >= m - 1)
		return v[m - 1];
	return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

int usv_auc_bootstrap(const double *prob, const int *truth, const int *unit, size_t n, int nc,
                      int n_units, int n_boot, unsigned long long seed, double level, double *lo,
                      double *hi, int *n_valid)
{
	if (!prob || !truth || !lo || !hi || nc < 2 || n < 1 || n_boot < 1 || !(level > 0) ||
	    !(level < 1))
		return -EINVAL;
	if (!unit)
		n_units = (int)n;
	if (n_units < 1 || (size_t)n_units > n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (truth[i] < 0 || truth[i] >= nc || (unit && (unit[i] < 0 || unit[i] >= n_units)))
			return -EINVAL;
	/* the classes that count: those with positives and negatives in the data */
	int *use = calloc((size_t)nc, sizeof *use);
	size_t *cnt = calloc((size_t)nc, sizeof *cnt);
	size_t *ord = malloc(n * (size_t)nc * sizeof *ord);
	double *w = malloc(n * sizeof *w), *draws = calloc((size_t)n_units, sizeof *draws);
	double *rep = malloc((size_t)n_boot * sizeof *rep);
	int rc = -ENOMEM, nuse = 0;
	if (!use || !cnt || !ord || !w || !draws || !rep)
		goto out;
	for (size_t i = 0; i < n; i++)
		cnt[truth[i]]++;
	for (int k = 0; k < nc; k++) {
		use[k] = cnt[k] > 0 && cnt[k] < n && (nc > 2 || k == 1);
		nuse += use[k];
		if (use[k] && (rc = sort_column(prob, n, nc, k, ord + (size_t)k * n)))
			goto out;
	}
	rc = -EINVAL;
	if (!nuse)
		goto out;
	uint64_t x = (uint64_t)seed;
	int m = 0;
	for (int b = 0; b < n_boot; b++) {
		for (int u = 0; u < n_units; u++)
			draws[u] = 0;
		for (int u = 0; u < n_units; u++)
			draws[((splitmix64(&x) >> 32) * (uint64_t)n_units) >> 32] += 1;
		for (size_t i = 0; i < n; i++)
			w[i] = draws[unit ? unit[i] : (int)i];
		double sum = 0;
		int ok = 1;
		for (int k = 0; k < nc && ok; k++) {
			if (!use[k])
				continue;
			double a = wauc(prob, truth, w, ord + (size_t)k * n, n, nc, k);
			if (isnan(a))
				ok = 0;
			sum += a;
		}
		if (ok)
			rep[m++] = sum / nuse;
	}
	if (n_valid)
		*n_valid = m;
	if (m < 1 || 2 * m < n_boot)
		goto out;
	qsort(rep, (size_t)m, sizeof *rep, cmp_double);
	*lo = quantile(rep, m, (1 - level) / 2);
	*hi = quantile(rep, m, (1 + level) / 2);
	rc = 0;
out:
	free(use);
	free(cnt);
	free(ord);
	free(w);
	free(draws);
	free(rep);
	return rc;
}

/* Midranks (1-based, ties averaged) of v[n] into r[n]. */
static int midranks(const double *v, size_t n, double *r)
{
	ix *t = malloc((n ? n : 1) * sizeof *t);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		t[i].s = v[i];
		t[i].i = i;
	}
	qsort(t, n, sizeof *t, cmp_ix);
	for (size_t a = 0; a < n;) {
		size_t b = a;
		while (b < n && t[b].s == t[a].s)
			b++;
		double mr = (double)(a + 1 + b) / 2.0;
		for (size_t k = a; k < b; k++)
			r[t[k].i] = mr;
		a = b;
	}
	free(t);
	return 0;
}

/* Placements of one classifier: v10[m] of the positives, v01[k] of the
 * negatives (in the order they appear in s) and the AUC. */
static int placements(const double *s, const int *pos, size_t n, size_t m, size_t k, double *v10,
                      double *v01, double *auc)
{
	double *all = malloc(n * sizeof *all), *x = malloc(m * sizeof *x),
	       *y = malloc(k * sizeof *y), *rx = malloc(m * sizeof *rx),
	       *ry = malloc(k * sizeof *ry);
	int rc = -ENOMEM;
	if (!all || !x || !y || !rx || !ry)
		goto out;
	size_t a = 0, b = 0;
	for (size_t i = 0; i < n; i++) {
		if (pos[i])
			x[a++] = s[i];
		else
			y[b++] = s[i];
	}
	if ((rc = midranks(s, n, all)) || (rc = midranks(x, m, rx)) || (rc = midranks(y, k, ry)))
		goto out;
	double sum = 0;
	a = b = 0;
	for (size_t i = 0; i < n; i++) {
		if (pos[i]) {
			v10[a] = (all[i] - rx[a]) / (double)k;
			sum += v10[a];
			a++;
		} else {
			v01[b] = 1.0 - (all[i] - ry[b]) / (double)m;
			b++;
		}
	}
	*auc = sum / (double)m;
out:
	free(all);
	free(x);
	free(y);
	free(rx);
	free(ry);
	return rc;
}

int usv_delong(const double *a, const double *b, const int *pos, size_t n, struct usv_delong *r)
{
	if (!a || !b || !pos || !r)
		return -EINVAL;
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(a[i]) || !isfinite(b[i]))
			return -EINVAL;
		m += pos[i] != 0;
	}
	size_t k = n - m;
	if (m < 2 || k < 2)
		return -EINVAL;
	int *p01 = malloc(n * sizeof *p01);
	double *xa = malloc(m * sizeof *xa), *xb = malloc(m * sizeof *xb),
	       *ya = malloc(k * sizeof *ya), *yb = malloc(k * sizeof *yb);
	int rc = -ENOMEM;
	if (!p01 || !xa || !xb || !ya || !yb)
		goto out;
	for (size_t i = 0; i < n; i++)
		p01[i] = pos[i] != 0;
	double auc_a, auc_b;
	if ((rc = placements(a, p01, n, m, k, xa, ya, &auc_a)) ||
	    (rc = placements(b, p01, n, m, k, xb, yb, &auc_b)))
		goto out;
	double s10[3] = {0, 0, 0}, s01[3] = {0, 0, 0}; /* aa, bb, ab */
	for (size_t i = 0; i < m; i++) {
		double da = xa[i] - auc_a, db = xb[i] - auc_b;
		s10[0] += da * da;
		s10[1] += db * db;
		s10[2] += da * db;
	}
	for (size_t j = 0; j < k; j++) {
		double da = ya[j] - auc_a, db = yb[j] - auc_b;
		s01[0] += da * da;
		s01[1] += db * db;
		s01[2] += da * db;
	}
	double S[3];
	for (int t = 0; t < 3; t++)
		S[t] = s10[t] / (double)(m - 1) / (double)m + s01[t] / (double)(k - 1) / (double)k;
	*r = (struct usv_delong){.auc_a = auc_a,
	                         .auc_b = auc_b,
	                         .var_a = S[0],
	                         .var_b = S[1],
	                         .cov = S[2],
	                         .diff = auc_a - auc_b,
	                         .n_pos = m,
	                         .n_neg = k};
	double var = S[0] + S[1] - 2 * S[2];
	r->se = var > 0 ? sqrt(var) : 0;
	if (var > 0) {
		r->z = r->diff / r->se;
		r->z_defined = 1;
		r->p = erfc(fabs(r->z) / sqrt(2.0));
	} else {
		r->z = NAN;
		r->z_defined = 0;
		r->p = r->diff == 0 ? 1.0 : 0.0;
	}
	rc = 0;
out:
	free(p01);
	free(xa);
	free(xb);
	free(ya);
	free(yb);
	return rc;
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
