/*
 * NAME
 *	tsne.c - PCA by subspace iteration and exact t-SNE
 *
 * DESCRIPTION
 *	See tsne.h. Everything in double precision; plain loops (n <= a few
 *	thousand, d up to 25088 for the PCA).
 */
#include "tsne.h"

#include "usv/train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Orthonormalise the k columns of q[n][k] (modified Gram-Schmidt). */
static void orthonormalise(double *q, int n, int k)
{
	for (int j = 0; j < k; j++) {
		for (int i = 0; i < j; i++) {
			double dot = 0;
			for (int r = 0; r < n; r++)
				dot += q[(size_t)r * k + i] * q[(size_t)r * k + j];
			for (int r = 0; r < n; r++)
				q[(size_t)r * k + j] -= dot * q[(size_t)r * k + i];
		}
		double nn = 0;
		for (int r = 0; r < n; r++)
			nn += q[(size_t)r * k + j] * q[(size_t)r * k + j];
		nn = sqrt(nn);
		for (int r = 0; r < n; r++)
			q[(size_t)r * k + j] = nn > 1e-300 ? q[(size_t)r * k + j] / nn : 0;
	}
}

/* Cyclic Jacobi: a[k][k] symmetric -> eigenvalues w, eigenvectors v (columns). */
static void jacobi(double *a, int k, double *w, double *v)
{
	for (int i = 0; i < k; i++)
		for (int j = 0; j < k; j++)
			v[i * k + j] = i == j;
	for (int sweep = 0; sweep < 100; sweep++) {
		double off = 0;
		for (int i = 0; i < k; i++)
			for (int j = i + 1; j < k; j++)
				off += a[i * k + j] * a[i * k + j];
		if (off < 1e-22)
			break;
		for (int p = 0; p < k; p++)
			for (int q = p + 1; q < k; q++) {
				double apq = a[p * k + q];
				if (fabs(apq) < 1e-300)
					continue;
				double theta = (a[q * k + q] - a[p * k + p]) / (2 * apq);
				double t =
				    (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
				double c = 1 / sqrt(t * t + 1), s = t * c;
				for (int r = 0; r < k; r++) {
					double arp = a[r * k + p], arq = a[r * k + q];
					a[r * k + p] = c * arp - s * arq;
					a[r * k + q] = s * arp + c * arq;
				}
				for (int r = 0; r < k; r++) {
					double apr = a[p * k + r], aqr = a[q * k + r];
					a[p * k + r] = c * apr - s * aqr;
					a[q * k + r] = s * apr + c * aqr;
				}
				for (int r = 0; r < k; r++) {
					double vrp = v[r * k + p], vrq = v[r * k + q];
					v[r * k + p] = c * vrp - s * vrq;
					v[r * k + q] = s * vrp + c * vrq;
				}
			}
	}
	for (int i = 0; i < k; i++)
		w[i] = a[i * k + i];
}

int usv_pca(const float *x, int n, int d, int k, uint64_t seed, double *out, int *k_out)
{
	if (!x || !out || n < 2 || d < 1 || k < 1 || n > USV_TSNE_MAX)
		return -EINVAL;
	double *mean = calloc((size_t)d, sizeof(double));
	double *xc = malloc((size_t)n * d * sizeof(double));
	if (!mean || !xc) {
		free(mean);
		free(xc);
		return -ENOMEM;
	}
	for (int r = 0; r < n; r++)
		for (int c = 0; c < d; c++)
			mean[c] += x[(size_t)r * d + c];
	for (int c = 0; c < d; c++)
		mean[c] /= n;
	for (int r = 0; r < n; r++)
		for (int c = 0; c < d; c++)
			xc[(size_t)r * d + c] = x[(size_t)r * d + c] - mean[c];
	free(mean);
	if (d <= k) {
		memcpy(out, xc, (size_t)n * d * sizeof(double));
		*k_out = d;
		free(xc);
		return 0;
	}
	int kk = k + 10 < d ? k + 10 : d;
	if (kk > n)
		kk = n;
	if (k > kk)
		k = kk;
	double *q = malloc((size_t)n * kk * sizeof(double));
	double *t = malloc((size_t)d * kk * sizeof(double));
	double *b = malloc((size_t)kk * kk * sizeof(double));
	double *w = malloc((size_t)kk * sizeof(double)),
	       *v = malloc((size_t)kk * kk * sizeof(double));
	if (!q || !t || !b || !w || !v) {
		free(xc);
		free(q);
		free(t);
		free(b);
		free(w);
		free(v);
		return -ENOMEM;
	}
	usv_rng rng;
	usv_rng_seed(&rng, seed ^ 0x706361ULL);
	/* Q = X * Omega */
	double *om = t; /* d x kk random */
	for (size_t i = 0; i < (size_t)d * kk; i++)
		om[i] = usv_rng_normal(&rng);
	for (int it = 0; it <= 4; it++) {
		/* q = xc * om  (n x kk) */
		for (int r = 0; r < n; r++)
			for (int j = 0; j < kk; j++) {
				double s = 0;
				const double *xr = xc + (size_t)r * d;
				for (int c = 0; c < d; c++)
					s += xr[c] * om[(size_t)c * kk + j];
				q[(size_t)r * kk + j] = s;
			}
		orthonormalise(q, n, kk);
		/* om = xc^T q  (d x kk) */
		memset(om, 0, (size_t)d * kk * sizeof(double));
		for (int r = 0; r < n; r++) {
			const double *xr = xc + (size_t)r * d;
			for (int c = 0; c < d; c++) {
				double xv = xr[c];
				if (xv == 0)
					continue;
				for (int j = 0; j < kk; j++)
					om[(size_t)c * kk + j] += xv * q[(size_t)r * kk + j];
			}
		}
	}
	/* B = om^T om = (Q^T X)(Q^T X)^T, eigenvectors V: scores = Q * (Q^T X X^T Q) V ... *
	 * simpler: the projection of X on the principal directions is Q U S, where
	 * (Q^T X)(Q^T X)^T = U S^2 U^T. */
	for (int i = 0; i < kk; i++)
		for (int j = 0; j < kk; j++) {
			double s = 0;
			for (int c = 0; c < d; c++)
				s += om[(size_t)c * kk + i] * om[(size_t)c * kk + j];
			b[i * kk + j] = s;
		}
	jacobi(b, kk, w, v);
	/* order by eigenvalue, descending */
	int *ord = malloc((size_t)kk * sizeof(int));
	if (!ord) {
		free(xc);
		free(q);
		free(t);
		free(b);
		free(w);
		free(v);
		return -ENOMEM;
	}
	for (int i = 0; i < kk; i++)
		ord[i] = i;
	for (int i = 0; i < kk; i++)
		for (int j = i + 1; j < kk; j++)
			if (w[ord[j]] > w[ord[i]]) {
				int tt = ord[i];
				ord[i] = ord[j];
				ord[j] = tt;
			}
	/* scores = Q U S: column j = Q u_j * sqrt(w_j) */
	for (int r = 0; r < n; r++)
		for (int j = 0; j < k; j++) {
			int e = ord[j];
			double s = 0;
			for (int i = 0; i < kk; i++)
				s += q[(size_t)r * kk + i] * v[i * kk + e];
			out[(size_t)r * k + j] = s * sqrt(w[e] > 0 ? w[e] : 0);
		}
	*k_out = k;
	free(ord);
	free(xc);
	free(q);
	free(t);
	free(b);
	free(w);
	free(v);
	return 0;
}

int usv_tsne(const double *x, int n, int d, double perplexity, int iterations, uint64_t seed,
             double *y)
{
	if (!x || !y || n < 4 || n > USV_TSNE_MAX || d < 1 || perplexity <= 0)
		return -EINVAL;
	if (perplexity > (n - 1) / 3.0)
		perplexity = (n - 1) / 3.0;
	size_t nn = (size_t)n * n;
	double *P = malloc(nn * sizeof(double)), *D = malloc(nn * sizeof(double));
	double *Q = malloc(nn * sizeof(double));
	double *g = calloc((size_t)n * 2, sizeof(double)),
	       *vel = calloc((size_t)n * 2, sizeof(double));
	double *gain = malloc((size_t)n * 2 * sizeof(double));
	if (!P || !D || !Q || !g || !vel || !gain) {
		free(P);
		free(D);
		free(Q);
		free(g);
		free(vel);
		free(gain);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++) {
			double s = 0;
			for (int c = 0; c < d; c++) {
				double t = x[(size_t)i * d + c] - x[(size_t)j * d + c];
				s += t * t;
			}
			D[(size_t)i * n + j] = D[(size_t)j * n + i] = s;
		}
	/* conditional affinities by bisection on beta = 1 / (2 sigma^2) */
	double target = log(perplexity);
	for (int i = 0; i < n; i++) {
		double beta = 1, lo = 0, hi = INFINITY;
		double *pr = P + (size_t)i * n;
		const double *dr = D + (size_t)i * n;
		double dmin = INFINITY;
		for (int j = 0; j < n; j++)
			if (j != i && dr[j] < dmin)
				dmin = dr[j];
		for (int it = 0; it < 100; it++) {
			double sum = 0, hsum = 0;
			for (int j = 0; j < n; j++) {
				pr[j] = j == i ? 0 : exp(-beta * (dr[j] - dmin));
				sum += pr[j];
			}
			for (int j = 0; j < n; j++)
				hsum += pr[j] * (dr[j] - dmin);
			double h = log(sum) + beta * hsum / sum; /* entropy in nats */
			for (int j = 0; j < n; j++)
				pr[j] /= sum;
			if (fabs(h - target) < 1e-5)
				break;
			if (h > target) {
				lo = beta;
				beta = isinf(hi) ? beta * 2 : (beta + hi) / 2;
			} else {
				hi = beta;
				beta = (beta + lo) / 2;
			}
		}
	}
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++) {
			double s = (P[(size_t)i * n + j] + P[(size_t)j * n + i]) / (2.0 * n);
			s = s < 1e-12 ? 1e-12 : s;
			P[(size_t)i * n + j] = P[(size_t)j * n + i] = s;
		}
	for (int i = 0; i < n; i++)
		P[(size_t)i * n + i] = 0;
	usv_rng rng;
	usv_rng_seed(&rng, seed ^ 0x74736e65ULL);
	for (int i = 0; i < 2 * n; i++) {
		y[i] = 1e-4 * usv_rng_normal(&rng);
		gain[i] = 1;
	}
	/* learning rate max(n / 12 / 4, 50) (a large fixed rate throws
	 * isolated points of small maps far out) */
	double lr = n / 48.0 > 50 ? n / 48.0 : 50;
	for (int it = 0; it < iterations; it++) {
		double exag = it < 250 ? 12.0 : 1.0, mom = it < 250 ? 0.5 : 0.8;
		double qsum = 0;
		for (int i = 0; i < n; i++)
			for (int j = i + 1; j < n; j++) {
				double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
				double q = 1.0 / (1.0 + dx * dx + dy * dy);
				Q[(size_t)i * n + j] = Q[(size_t)j * n + i] = q;
				qsum += 2 * q;
			}
		for (int i = 0; i < n; i++) {
			double gx = 0, gy = 0;
			for (int j = 0; j < n; j++) {
				if (j == i)
					continue;
				double q = Q[(size_t)i * n + j];
				double m = (exag * P[(size_t)i * n + j] - q / qsum) * q;
				gx += m * (y[2 * i] - y[2 * j]);
				gy += m * (y[2 * i + 1] - y[2 * j + 1]);
			}
			g[2 * i] = 4 * gx;
			g[2 * i + 1] = 4 * gy;
		}
		for (int i = 0; i < 2 * n; i++) {
			gain[i] = (g[i] > 0) != (vel[i] > 0) ? gain[i] + 0.2 : gain[i] * 0.8;
			if (gain[i] < 0.01)
				gain[i] = 0.01;
			vel[i] = mom * vel[i] - lr * gain[i] * g[i];
			y[i] += vel[i];
		}
		/* keep the map centred */
		double mx = 0, my = 0;
		for (int i = 0; i < n; i++) {
			mx += y[2 * i];
			my += y[2 * i + 1];
		}
		for (int i = 0; i < n; i++) {
			y[2 * i] -= mx / n;
			y[2 * i + 1] -= my / n;
		}
	}
	free(P);
	free(D);
	free(Q);
	free(g);
	free(vel);
	free(gain);
	return 0;
}
