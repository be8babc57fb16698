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
 *	usv_auc_stat() is the AUC that usview eval reports for nc classes:
 *	with two classes the AUC of the second class's probability, with
 *	more the mean of the one-vs-rest AUCs (class k's probability, class k
 *	positive, all others negative) over the classes that have both
 *	positive and negative examples; per_class[k] gets each one-vs-rest
 *	AUC (NAN where class k has no or only examples; with two classes
 *	per_class[0] is the AUC of the first class's probability).
 *
 *	usv_auc_bootstrap() is the 95 % (level) percentile bootstrap interval
 *	of usv_auc_stat(). A resampling unit is a group (unit[i] in [0,
 *	n_units) for image i; unit NULL: every image its own unit): each of
 *	n_boot replicates draws n_units units with replacement and takes all
 *	images of every drawn unit, as often as it was drawn (a cluster
 *	bootstrap; images of one patient are not independent). The AUC of a
 *	replicate is computed with these multiplicities as weights, which is
 *	the AUC of the replicate with the images repeated. A replicate in
 *	which a class that has examples in the data (with two classes:
 *	either class) has no positive or no negative example is left out
 *	(*n_valid counts the others; at least half must be valid). The
 *	bounds are the (1 - level) / 2 and (1 + level) / 2 quantiles of the
 *	valid replicate AUCs, interpolated linearly between order statistics
 *	v_0 <= ... <= v_{m-1} at h = (m - 1) q (numpy's default). Units are
 *	drawn with SplitMix64 (Steele et al. 2014) seeded with seed:
 *	    x += 0x9e3779b97f4a7c15; z = x;
 *	    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
 *	    z = (z ^ (z >> 27)) * 0x94d049bb133111eb; r = z ^ (z >> 31);
 *	    unit = ((r >> 32) * n_units) >> 32,
 *	so the interval is a function of (data, n_boot, seed) alone.
 *
 *	usv_delong() is DeLong, DeLong and Clarke-Pearson's (Biometrics
 *	44:837, 1988) test of two correlated AUCs, scores a[i] and b[i] of
 *	two classifiers for the same image i. With positives X_1..X_m,
 *	negatives Y_1..Y_n and psi(x, y) = 1 if x > y, 1/2 if x = y, else 0,
 *	for each classifier r:
 *	    AUC_r     = 1/(m n) sum_i sum_j psi(X_i^r, Y_j^r)
 *	    V10_r(i)  = 1/n sum_j psi(X_i^r, Y_j^r)   (placement of positive i)
 *	    V01_r(j)  = 1/m sum_i psi(X_i^r, Y_j^r)   (placement of negative j)
 *	    S10_rs    = 1/(m-1) sum_i (V10_r(i) - AUC_r)(V10_s(i) - AUC_s)
 *	    S01_rs    = 1/(n-1) sum_j (V01_r(j) - AUC_r)(V01_s(j) - AUC_s)
 *	    S_rs      = S10_rs / m + S01_rs / n
 *	    var(AUC_a - AUC_b) = S_aa + S_bb - 2 S_ab
 *	    z = (AUC_a - AUC_b) / sqrt(var),  p = 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2).
 *	The placements come from midranks (Sun and Xu, IEEE SPL 21:1389,
 *	2014): V10_r(i) = (R_i - Rx_i) / n with R_i the midrank of X_i^r among
 *	all m + n scores and Rx_i its midrank among the positives; V01_r(j) =
 *	1 - (R_j - Ry_j) / m likewise; O((m + n) log(m + n)). When var is 0
 *	(e.g. identical scores) z is NAN (z_defined 0) and p is 1 if the
 *	AUCs are equal, else 0.
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
 *	negative example (usv_auc_stat: no class with both; usv_delong: fewer
 *	than two of either; usv_auc_bootstrap: n_boot < 1, a unit out of
 *	range, fewer than half the replicates valid); for usv_calibration()
 *	and usv_nll() n < 1, nc < 1, n_bins outside [1, USV_CALIB_MAX_BINS]
 *	or a label outside [0, nc)).
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

/* prob[n][nc] (rows of class scores), truth[n] in [0, nc); per_class[nc]
 * may be NULL. */
int usv_auc_stat(const double *prob, const int *truth, size_t n, int nc, double *per_class,
                 double *auc);

/* The bootstrap interval of usv_auc_stat(); unit[n] in [0, n_units) or NULL;
 * n_valid may be NULL. */
int usv_auc_bootstrap(const double *prob, const int *truth, const int *unit, size_t n, int nc,
                      int n_units, int n_boot, unsigned long long seed, double level, double *lo,
                      double *hi, int *n_valid);

/* The result of usv_delong(). */
struct usv_delong {
	double auc_a, auc_b; /* the two AUCs */
	double var_a, var_b; /* S_aa, S_bb: their variances */
	double cov;          /* S_ab */
	double diff, se;     /* AUC_a - AUC_b and sqrt(var of the difference) */
	double z, p;         /* z is NAN when se is 0 (z_defined 0) */
	int z_defined;
	size_t n_pos, n_neg;
};

/* a[i], b[i]: the two classifiers' scores of image i, pos[i] its label
 * (1 = positive). */
int usv_delong(const double *a, const double *b, const int *pos, size_t n, struct usv_delong *r);

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
