/*
 * NAME
 *	stats.h - test statistics and classification metrics of usview eval/compare
 *
 * DESCRIPTION
 *	Pure functions, no I/O.
 *
 *	usv_chi2_sf1() is the survival function of the chi-square distribution
 *	with one degree of freedom, P(X > x) = erfc(sqrt(x / 2)).
 *
 *	usv_chisq_2x2() is Pearson's chi-square test of a 2x2 table with
 *	Yates' continuity correction computed as R's chisq.test(correct =
 *	TRUE) does: each |O - E| is reduced by min(0.5, |O - E|).
 *
 *	usv_mcnemar() is McNemar's test with continuity correction as R's
 *	mcnemar.test: (|b - c| - 1)^2 / (b + c) on the discordant counts
 *	b, c; df = 1. With b + c = 0 there is no evidence: statistic 0, p 1.
 *
 *	usv_auc() is the area under the ROC curve in its Mann-Whitney form:
 *	the probability that a random positive scores above a random
 *	negative, ties counting one half (average ranks).
 *
 *	usv_calibration() is the reliability of top-1 probabilities: the
 *	confidence of a prediction is its largest class probability (the
 *	first class on ties), correct when that class is the truth. Bins
 *	are n_bins equal-width intervals of confidence, bin b =
 *	(b / n_bins, (b + 1) / n_bins] (bin 0 also takes 0). Per bin: the
 *	count, the mean confidence and the accuracy; the expected
 *	calibration error (Naeini et al. 2015, Guo et al. 2017) is
 *	    ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|,
 *	and the maximum calibration error MCE = max over non-empty bins of
 *	|acc - conf|. ECE is 0 for a perfectly calibrated model and at most
 *	1; it does not say in which direction: bins with conf > acc are
 *	over-confident.
 *
 *	usv_nll() is the mean negative log-likelihood -1/n sum log p[i][y_i]
 *	of the probabilities of the true classes, each clamped to at least
 *	1e-12 (so one zero probability costs 27.6, not infinity).
 *
 * DIAGNOSTICS
 *	0 or -EINVAL (negative counts, empty margins, no positive or no
 *	negative example; for usv_calibration() and usv_nll() n < 1, nc < 1,
 *	n_bins outside [1, USV_CALIB_MAX_BINS] or a label outside [0, nc)).
 */
#ifndef USV_CLI_STATS_H
#define USV_CLI_STATS_H

#include <stddef.h>

double usv_chi2_sf1(double x);

/* t = {a, b, c, d} = rows (a b) and (c d). */
int usv_chisq_2x2(const double t[4], int yates, double *chi2, double *p);
int usv_mcnemar(double b, double c, int correct, double *chi2, double *p);
/* score[i] for label pos[i] (1 = positive, 0 = negative). */
int usv_auc(const double *score, const int *pos, size_t n, double *auc);

#define USV_CALIB_BINS 15 /* the bins of usview eval's ECE */
#define USV_CALIB_MAX_BINS 1000

/* One confidence bin of usv_calibration(). */
struct usv_calib_bin {
	double lo, hi; /* the interval (lo, hi] */
	long n;        /* predictions whose confidence falls in it */
	double conf;   /* their mean confidence (0 when n == 0) */
	double acc;    /* the share of them that are correct (0 when n == 0) */
};

/* Reliability of prob[n][nc] (rows of class probabilities) against the
 * labels truth[n]: bins[n_bins] (caller's array), *ece and, if not NULL,
 * *mce. */
int usv_calibration(const float *prob, const int *truth, size_t n, int nc, int n_bins,
                    struct usv_calib_bin *bins, double *ece, double *mce);
/* Mean negative log-likelihood of the true classes. */
int usv_nll(const float *prob, const int *truth, size_t n, int nc, double *nll);

#endif
