/*
 * NAME
 *	tsne.h - PCA and exact t-SNE for the feature map of usview report
 *
 * DESCRIPTION
 *	usv_pca() projects n rows of dimension d onto their first k principal
 *	components (centred data; randomised subspace iteration with four
 *	power steps, then a Jacobi eigen-decomposition of the small k' x k'
 *	problem; seeded). With d <= k the centred data are copied.
 *
 *	usv_tsne() is exact t-SNE (van der Maaten & Hinton 2008): Gaussian
 *	affinities with a per-point bandwidth found by bisection to the
 *	given perplexity, symmetrised; Student-t similarities in 2-D;
 *	gradient descent with momentum 0.5 then 0.8, early exaggeration 12
 *	for the first 250 iterations, learning rate max(n / 48, 50),
 *	adaptive gains.
 *	O(n^2) memory and time per iteration: meant for n <= 2000.
 *	The usual recipe of the paper's figures: PCA to 50, then t-SNE.
 *
 * DIAGNOSTICS
 *	0, -EINVAL (bad sizes, n > USV_TSNE_MAX) or -ENOMEM.
 */
#ifndef USV_CLI_TSNE_H
#define USV_CLI_TSNE_H

#include <stdint.h>

#define USV_TSNE_MAX 5000

/* x[n][d] -> out[n][min(k, d)] (caller allocates); *k_out = columns. */
int usv_pca(const float *x, int n, int d, int k, uint64_t seed, double *out, int *k_out);
/* x[n][d] -> y[n][2]. */
int usv_tsne(const double *x, int n, int d, double perplexity, int iterations, uint64_t seed,
             double *y);

#endif
