/*
 * NAME
 *	train.c - SGD training of a fully connected head on fixed features
 *
 * DESCRIPTION
 *	See usv/train.h. Layer l computes Z = A W^T + b over a batch of rows
 *	(one cblas_sgemm), hidden layers apply ReLU and a dropout mask. The
 *	backward pass is the textbook one for softmax cross-entropy:
 *	dZ_L = (softmax(Z_L) - onehot(y)) / n, dW = dZ^T A, db = sum dZ,
 *	dA = dZ W, dZ_{l-1} = dA * mask * [Z_{l-1} > 0].
 *
 *	A workspace sized for the largest batch is allocated once per
 *	training run; an iteration allocates nothing.
 */
#include "usv/train.h"
#include "usv/err.h"
#include "usv/nn.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- PRNG ---------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void usv_rng_seed(usv_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t usv_rng_next(usv_rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

double usv_rng_uniform(usv_rng *r)
{
	return (double)(usv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint32_t usv_rng_below(usv_rng *r, uint32_t n)
{
	/* 64x32 multiply-shift; the bias is below 2^-32 and irrelevant here */
	return (uint32_t)(((usv_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double usv_rng_normal(usv_rng *r)
{
	double u1 = usv_rng_uniform(r), u2 = usv_rng_uniform(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---------------- head ---------------- */

int usv_head_new(int n_layers, const int *dims, usv_head **out)
{
	if (n_layers < 1 || n_layers > USV_HEAD_MAX_LAYERS || !dims || !out)
		return -EINVAL;
	for (int l = 0; l <= n_layers; l++)
		if (dims[l] < 1 || dims[l] > USV_HEAD_MAX_DIM)
			return -USV_ERR_LIMIT;
	usv_head *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->n_layers = n_layers;
	memcpy(h->dims, dims, (size_t)(n_layers + 1) * sizeof *dims);
	for (int l = 0; l < n_layers; l++) {
		h->w[l] = calloc((size_t)dims[l + 1] * (size_t)dims[l], sizeof(float));
		h->b[l] = calloc((size_t)dims[l + 1], sizeof(float));
		h->lr[l] = 0.001f;
		if (!h->w[l] || !h->b[l]) {
			usv_head_free(h);
			return -ENOMEM;
		}
	}
	*out = h;
	return 0;
}

void usv_head_free(usv_head *h)
{
	if (!h)
		return;
	for (int l = 0; l < h->n_layers; l++) {
		free(h->w[l]);
		free(h->b[l]);
	}
	free(h);
}

void usv_head_init_layer(usv_head *h, int l, float std, usv_rng *rng)
{
	size_t nw = (size_t)h->dims[l + 1] * (size_t)h->dims[l];
	double s = std > 0 ? std : sqrt(2.0 / h->dims[l]);
	for (size_t i = 0; i < nw; i++)
		h->w[l][i] = (float)(s * usv_rng_normal(rng));
	memset(h->b[l], 0, (size_t)h->dims[l + 1] * sizeof(float));
}

/* Workspace for n rows: per layer output Z (pre-activation for the last,
 * post-ReLU for hidden ones), A (after dropout), and two delta buffers. */
typedef struct ws {
	int cap;
	float *z[USV_HEAD_MAX_LAYERS];
	float *a[USV_HEAD_MAX_LAYERS];
	float *d0, *d1;
} ws;

static void ws_free(ws *w)
{
	for (int l = 0; l < USV_HEAD_MAX_LAYERS; l++) {
		free(w->z[l]);
		free(w->a[l]);
	}
	free(w->d0);
	free(w->d1);
	memset(w, 0, sizeof *w);
}

static int ws_init(ws *w, const usv_head *h, int n)
{
	memset(w, 0, sizeof *w);
	int maxd = 0;
	for (int l = 0; l <= h->n_layers; l++)
		if (h->dims[l] > maxd)
			maxd = h->dims[l];
	for (int l = 0; l < h->n_layers; l++) {
		w->z[l] = malloc((size_t)n * (size_t)h->dims[l + 1] * sizeof(float));
		w->a[l] = malloc((size_t)n * (size_t)h->dims[l + 1] * sizeof(float));
		if (!w->z[l] || !w->a[l])
			goto fail;
	}
	w->d0 = malloc((size_t)n * (size_t)maxd * sizeof(float));
	w->d1 = malloc((size_t)n * (size_t)maxd * sizeof(float));
	if (!w->d0 || !w->d1)
		goto fail;
	w->cap = n;
	return 0;
fail:
	ws_free(w);
	return -ENOMEM;
}

/* Forward of n rows; the last layer's logits end in w->z[L-1]. */
static void forward(const usv_head *h, ws *w, const float *x, int n, float *const *masks)
{
	const float *in = x;
	int L = h->n_layers;
	for (int l = 0; l < L; l++) {
		int din = h->dims[l], dout = h->dims[l + 1];
		float *z = w->z[l];
		for (int i = 0; i < n; i++)
			memcpy(z + (size_t)i * dout, h->b[l], (size_t)dout * sizeof(float));
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, dout, din, 1.0f, in, din,
		            h->w[l], din, 1.0f, z, dout);
		if (l == L - 1)
			break;
		size_t cnt = (size_t)n * dout;
		float *a = w->a[l];
		const float *m = masks ? masks[l] : NULL;
		for (size_t i = 0; i < cnt; i++) {
			if (z[i] < 0)
				z[i] = 0;
			a[i] = m ? z[i] * m[i] : z[i];
		}
		in = a;
	}
}

int usv_head_forward(const usv_head *h, const float *x, int n, int softmax, float *out)
{
	if (!h || !x || !out || n < 0)
		return -EINVAL;
	int L = h->n_layers, nc = h->dims[L];
	const int chunk = 256;
	ws w;
	int rc = ws_init(&w, h, n < chunk ? (n > 0 ? n : 1) : chunk);
	if (rc)
		return rc;
	for (int i0 = 0; i0 < n; i0 += chunk) {
		int m = n - i0 < chunk ? n - i0 : chunk;
		forward(h, &w, x + (size_t)i0 * h->dims[0], m, NULL);
		memcpy(out + (size_t)i0 * nc, w.z[L - 1], (size_t)m * nc * sizeof(float));
		if (softmax)
			for (int i = 0; i < m; i++)
				usv_softmax(out + (size_t)(i0 + i) * nc, nc);
	}
	ws_free(&w);
	return 0;
}

/* Mean cross-entropy of the logits in w->z[L-1]; turns them into dZ. */
static double ce_and_delta(const usv_head *h, ws *w, const int *y, int n, int want_delta)
{
	int L = h->n_layers, nc = h->dims[L];
	double loss = 0;
	for (int i = 0; i < n; i++) {
		float *z = w->z[L - 1] + (size_t)i * nc;
		float mx = z[0];
		for (int c = 1; c < nc; c++)
			if (z[c] > mx)
				mx = z[c];
		double s = 0;
		for (int c = 0; c < nc; c++)
			s += exp((double)z[c] - mx);
		double lse = mx + log(s);
		loss += lse - z[y[i]];
		if (want_delta) {
			for (int c = 0; c < nc; c++)
				z[c] = (float)((exp((double)z[c] - lse) - (c == y[i])) / n);
		}
	}
	return loss / n;
}

static void backward(const usv_head *h, ws *w, const float *x, int n, float *const *masks,
                     float **gw, float **gb)
{
	int L = h->n_layers;
	/* delta of the current layer's pre-activation */
	float *dz = w->z[L - 1];
	float *spare[2] = {w->d0, w->d1};
	int which = 0;
	for (int l = L - 1; l >= 0; l--) {
		int din = h->dims[l], dout = h->dims[l + 1];
		const float *ain = l == 0 ? x : w->a[l - 1];
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, dout, din, n, 1.0f, dz, dout,
		            ain, din, 0.0f, gw[l], din);
		for (int o = 0; o < dout; o++)
			gb[l][o] = 0;
		for (int i = 0; i < n; i++) {
			const float *r = dz + (size_t)i * dout;
			for (int o = 0; o < dout; o++)
				gb[l][o] += r[o];
		}
		if (l == 0)
			break;
		float *da = spare[which];
		which ^= 1;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, din, dout, 1.0f, dz, dout,
		            h->w[l], din, 0.0f, da, din);
		const float *zp = w->z[l - 1]; /* post-ReLU of layer l-1 */
		const float *m = masks ? masks[l - 1] : NULL;
		size_t cnt = (size_t)n * din;
		for (size_t i = 0; i < cnt; i++) {
			float g = zp[i] > 0 ? da[i] : 0.0f;
			da[i] = m ? g * m[i] : g;
		}
		dz = da;
	}
}

int usv_head_loss_grad(const usv_head *h, const float *x, const int *y, int n, float *const *masks,
                       float **grad_w, float **grad_b, double *loss)
{
	if (!h || !x || !y || n < 1 || !loss)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (y[i] < 0 || y[i] >= h->dims[h->n_layers])
			return -EINVAL;
	ws w;
	int rc = ws_init(&w, h, n);
	if (rc)
		return rc;
	forward(h, &w, x, n, masks);
	int want = grad_w && grad_b;
	*loss = ce_and_delta(h, &w, y, n, want);
	if (want)
		backward(h, &w, x, n, masks, grad_w, grad_b);
	ws_free(&w);
	return 0;
}

void usv_train_opts_default(usv_train_opts *o)
{
	memset(o, 0, sizeof *o);
	o->iterations = 1000;
	o->batch = 32;
	o->momentum = 0.9f;
	o->weight_decay = 5e-4f;
	o->seed = 1;
}

int usv_head_evaluate(const usv_head *h, const usv_train_data *d, double *loss, double *acc)
{
	if (!h || !d || d->n < 1 || d->dim != h->dims[0])
		return -EINVAL;
	int L = h->n_layers, nc = h->dims[L];
	const int chunk = 256;
	ws w;
	int rc = ws_init(&w, h, d->n < chunk ? d->n : chunk);
	if (rc)
		return rc;
	float *xb = malloc((size_t)w.cap * d->dim * sizeof(float));
	if (!xb) {
		ws_free(&w);
		return -ENOMEM;
	}
	double tl = 0;
	long correct = 0;
	for (int i0 = 0; i0 < d->n; i0 += chunk) {
		int m = d->n - i0 < chunk ? d->n - i0 : chunk;
		for (int i = 0; i < m; i++)
			memcpy(xb + (size_t)i * d->dim,
			       d->x + ((size_t)(i0 + i) * d->n_views) * d->dim,
			       (size_t)d->dim * sizeof(float));
		forward(h, &w, xb, m, NULL);
		for (int i = 0; i < m; i++) {
			const float *z = w.z[L - 1] + (size_t)i * nc;
			int best = 0;
			for (int c = 1; c < nc; c++)
				if (z[c] > z[best])
					best = c;
			correct += best == d->y[i0 + i];
		}
		tl += ce_and_delta(h, &w, d->y + i0, m, 0) * m;
	}
	free(xb);
	ws_free(&w);
	*loss = tl / d->n;
	*acc = (double)correct / d->n;
	return 0;
}

static int check_data(const usv_head *h, const usv_train_data *d)
{
	if (!d->x || !d->y || d->n < 1 || d->n_views < 1 || d->dim != h->dims[0])
		return -EINVAL;
	for (int i = 0; i < d->n; i++)
		if (d->y[i] < 0 || d->y[i] >= h->dims[h->n_layers])
			return -EINVAL;
	return 0;
}

int usv_head_train(usv_head *h, const usv_train_data *train, const usv_train_data *val,
                   const usv_train_opts *o, usv_curve_point **curve, int *n_curve)
{
	if (!h || !train || !o || !curve || !n_curve || o->iterations < 1 || o->batch < 1 ||
	    o->batch > 65536)
		return -EINVAL;
	int rc = check_data(h, train);
	if (!rc && val)
		rc = check_data(h, val);
	if (rc)
		return rc;
	int L = h->n_layers, B = o->batch, dim = h->dims[0];
	int every = o->eval_every > 0 ? o->eval_every : (o->iterations + 9) / 10;
	int max_pts = o->iterations / every + 2;
	usv_curve_point *pts = calloc((size_t)max_pts, sizeof *pts);
	float *xb = malloc((size_t)B * dim * sizeof(float));
	int *yb = malloc((size_t)B * sizeof(int));
	int *perm = malloc((size_t)train->n * sizeof(int));
	float *gw[USV_HEAD_MAX_LAYERS] = {0}, *gb[USV_HEAD_MAX_LAYERS] = {0};
	float *vw[USV_HEAD_MAX_LAYERS] = {0}, *vb[USV_HEAD_MAX_LAYERS] = {0};
	float *masks[USV_HEAD_MAX_LAYERS] = {0};
	ws w = {0};
	rc = -ENOMEM;
	if (!pts || !xb || !yb || !perm)
		goto out;
	for (int l = 0; l < L; l++) {
		size_t nw = (size_t)h->dims[l + 1] * h->dims[l], nb = (size_t)h->dims[l + 1];
		gw[l] = malloc(nw * sizeof(float));
		gb[l] = malloc(nb * sizeof(float));
		vw[l] = calloc(nw, sizeof(float));
		vb[l] = calloc(nb, sizeof(float));
		if (!gw[l] || !gb[l] || !vw[l] || !vb[l])
			goto out;
		if (l < L - 1 && h->dropout[l] > 0) {
			masks[l] = malloc((size_t)B * h->dims[l + 1] * sizeof(float));
			if (!masks[l])
				goto out;
		}
	}
	if (ws_init(&w, h, B))
		goto out;

	usv_rng rng;
	usv_rng_seed(&rng, o->seed ^ 0x7472616e5f686561ULL);
	for (int i = 0; i < train->n; i++)
		perm[i] = i;
	int pos = train->n; /* forces a shuffle first */
	int npts = 0;
	double acc_loss = 0;
	int acc_n = 0;
	rc = 0;
	for (int it = 1; it <= o->iterations; it++) {
		for (int i = 0; i < B; i++) {
			if (pos >= train->n) {
				for (int k = train->n - 1; k > 0; k--) {
					int j = (int)usv_rng_below(&rng, (uint32_t)k + 1);
					int t = perm[k];
					perm[k] = perm[j];
					perm[j] = t;
				}
				pos = 0;
			}
			int img = perm[pos++];
			int view = train->n_views > 1
			               ? (int)usv_rng_below(&rng, (uint32_t)train->n_views)
			               : 0;
			memcpy(xb + (size_t)i * dim,
			       train->x + ((size_t)img * train->n_views + view) * dim,
			       (size_t)dim * sizeof(float));
			yb[i] = train->y[img];
		}
		for (int l = 0; l < L - 1; l++) {
			if (!masks[l])
				continue;
			float p = h->dropout[l], keep = 1.0f / (1.0f - p);
			size_t cnt = (size_t)B * h->dims[l + 1];
			for (size_t k = 0; k < cnt; k++)
				masks[l][k] = usv_rng_uniform(&rng) < p ? 0.0f : keep;
		}
		forward(h, &w, xb, B, masks);
		double loss = ce_and_delta(h, &w, yb, B, 1);
		backward(h, &w, xb, B, masks, gw, gb);
		for (int l = 0; l < L; l++) {
			size_t nw = (size_t)h->dims[l + 1] * h->dims[l],
			       nb = (size_t)h->dims[l + 1];
			float lr = h->lr[l], mom = o->momentum, wd = o->weight_decay;
			float *W = h->w[l], *V = vw[l], *G = gw[l];
			for (size_t k = 0; k < nw; k++) {
				V[k] = mom * V[k] + lr * (G[k] + wd * W[k]);
				W[k] -= V[k];
			}
			float *bb = h->b[l], *vbb = vb[l], *gbb = gb[l];
			for (size_t k = 0; k < nb; k++) {
				vbb[k] = mom * vbb[k] + 2.0f * lr * gbb[k];
				bb[k] -= vbb[k];
			}
		}
		if (!isfinite(loss)) {
			rc = -ERANGE;
			break;
		}
		acc_loss += loss;
		acc_n++;
		if (it % every == 0 || it == o->iterations) {
			usv_curve_point *p = &pts[npts++];
			p->iter = it;
			p->train_loss = (float)(acc_loss / acc_n);
			p->val_loss = p->val_acc = -1;
			if (val) {
				double vl, va;
				rc = usv_head_evaluate(h, val, &vl, &va);
				if (rc)
					break;
				p->val_loss = (float)vl;
				p->val_acc = (float)va;
			}
			acc_loss = 0;
			acc_n = 0;
		}
		if (o->progress && o->progress(o->progress_ctx, it, o->iterations, (float)loss)) {
			rc = -ECANCELED;
			break;
		}
	}
	if (!rc) {
		*curve = pts;
		*n_curve = npts;
		pts = NULL;
	}
out:
	for (int l = 0; l < L; l++) {
		free(gw[l]);
		free(gb[l]);
		free(vw[l]);
		free(vb[l]);
		free(masks[l]);
	}
	ws_free(&w);
	free(pts);
	free(xb);
	free(yb);
	free(perm);
	return rc;
}
