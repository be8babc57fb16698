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
 * DIAGNOSTICS
 *	0 or -EINVAL (negative counts, empty margins, no positive or no
 *	negative example).
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

#endif
