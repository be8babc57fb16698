/*
 * NAME
 *	features.c - batched feature extraction through the engine, with a cache
 *
 * DESCRIPTION
 *	See feature_cache.h.
 */
#include "feature_cache.h"

#include "usv/err.h"
#include "usv/sha256.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double usv_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void usv_progress_line(const char *label, int done, int total, double t0, const char *extra)
{
	static int tty = -1;
	if (tty < 0)
		tty = isatty(2);
	if (!tty)
		return;
	double el = usv_now() - t0;
	int width = 30, fill = total > 0 ? (int)((long)width * done / total) : width;
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	fprintf(stderr, "\r%-10s [%s] %d/%d  %.1f/s  %s\033[K", label, bar, done, total,
	        el > 0 ? done / el : 0.0, extra ? extra : "");
	if (done >= total)
		fputc('\n', stderr);
	fflush(stderr);
}

static void cache_path(const usv_feat_spec *s, const usv_ds_item *it, char *out, size_t len)
{
	usv_sha256 c;
	usv_sha256_init(&c);
	usv_sha256_update(&c, s->key, strlen(s->key));
	usv_sha256_update(&c, "|", 1);
	usv_sha256_update(&c, s->cut, strlen(s->cut));
	usv_sha256_update(&c, "|", 1);
	usv_sha256_update(&c, it->sha256, 64);
	/* the engine's kernels split their work by the session's thread
	 * count, and the features' last bits depend on that cut */
	char v[32];
	int n =
	    snprintf(v, sizeof v, "|%d|threads=%d", s->n_views, s->threads > 0 ? s->threads : 1);
	usv_sha256_update(&c, v, (size_t)n);
	uint8_t d[32];
	char hex[65];
	usv_sha256_final(&c, d);
	usv_sha256_hex(d, hex);
	snprintf(out, len, "%s/%s.f32", s->cache_dir, hex);
}

static int cache_get(const char *path, float *dst, int dim, int views)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -ENOENT;
	int32_t h[4];
	size_t cnt = (size_t)dim * views;
	int rc = -USV_ERR_FORMAT;
	if (fread(h, sizeof h, 1, f) == 1 && !memcmp(h, "USVF", 4) && h[1] == dim &&
	    h[2] == views && fread(dst, sizeof(float), cnt, f) == cnt)
		rc = 0;
	fclose(f);
	return rc;
}

static int cache_put(const char *path, const float *src, int dim, int views)
{
	char tmp[4300];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f)
		return -errno;
	int32_t h[4] = {0, dim, views, 0};
	memcpy(h, "USVF", 4);
	size_t cnt = (size_t)dim * views;
	int ok = fwrite(h, sizeof h, 1, f) == 1 && fwrite(src, sizeof(float), cnt, f) == cnt;
	if (fclose(f))
		ok = 0;
	if (!ok || rename(tmp, path)) {
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

/* ---------------- the feature pass ----------------
 *
 * A loader thread fills one of two input buffers (cache look-ups, decoding
 * unless the caller has the pixels, the views' preprocessing) while the
 * calling thread runs the session on the other, copies the features out
 * and writes the cache entries. */

#define FEAT_SESSION_BYTES ((size_t)1 << 30)

typedef struct slot {
	float *in;  /* [B * V] network inputs */
	int *idx;   /* [B] images of the batch */
	int n;      /* images in it (0: nothing to run) */
	int last;   /* the loader has finished after this slot */
	int upto;   /* images looked at so far (for progress) */
	int cached; /* cache hits so far */
	int ready;  /* filled, not yet consumed */
} slot;

typedef struct feat_pass {
	const usv_feat_spec *s;
	const usv_dataset *d;
	const usv_model_meta *m;
	float *feat;
	int fd, V, B;
	size_t in_sz;
	slot sl[2];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop; /* set by the consumer on an error */
	int rc;   /* the loader's error */
	char err[USV_ERRBUF];
} feat_pass;

/* Views of image i into dst (V inputs). */
static int load_views(feat_pass *p, int i, float *dst)
{
	const usv_ds_item *it = &p->d->items[i];
	const usv_model_meta *m = p->m;
	usv_image *im = NULL;
	const uint8_t *px = p->s->pixels ? p->s->pixels[i] : NULL;
	if (!px) {
		int rc = usv_ds_load_image(it->path, m->resize_w, &im, p->err, sizeof p->err);
		if (rc)
			return rc;
		px = im->px;
	}
	int rc = 0;
	for (int v = 0; v < p->V && !rc; v++) {
		int ox, oy, fl;
		usv_preprocess_view(m, v, &ox, &oy, &fl);
		rc = usv_preprocess(m, px, ox, oy, fl, dst + (size_t)v * p->in_sz);
		if (rc)
			usv_seterr(p->err, sizeof p->err, rc, "%s: preprocessing failed", it->path);
	}
	usv_image_free(im);
	return rc;
}

static void *loader(void *arg)
{
	feat_pass *p = arg;
	/* a third runnable thread on a 2-core machine preempts the session's
	 * threads in the middle of their barriers (OpenBLAS's own threads
	 * included): at nice 10 the loader takes about a tenth of a core when
	 * they are busy, enough for its share (decoding and cropping are a few
	 * per cent of a batch's forward). Not SCHED_IDLE: on a shared machine
	 * other processes would starve it. */
	setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	int next = 0, cached = 0, k = 0;
	for (;;) {
		slot *sl = &p->sl[k];
		pthread_mutex_lock(&p->mu);
		while (sl->ready && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		int stop = p->stop;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			return NULL;
		int n = 0, rc = 0;
		while (next < p->d->n && n < p->B && !rc) {
			int i = next++;
			if (p->s->cache_dir) {
				char cp[4200];
				cache_path(p->s, &p->d->items[i], cp, sizeof cp);
				if (!cache_get(cp, p->feat + (size_t)i * p->V * p->fd, p->fd,
				               p->V)) {
					cached++;
					continue;
				}
			}
			rc = load_views(p, i, sl->in + (size_t)n * p->V * p->in_sz);
			sl->idx[n++] = i;
		}
		pthread_mutex_lock(&p->mu);
		sl->n = rc ? 0 : n;
		sl->upto = next;
		sl->cached = cached;
		sl->last = rc || next >= p->d->n;
		sl->ready = 1;
		if (rc)
			p->rc = rc;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (sl->last)
			return NULL;
		k ^= 1;
	}
}

int usv_features_compute(const usv_feat_spec *s, const usv_dataset *d, float **out, int *dim,
                         char *errbuf, size_t errlen)
{
	const usv_model_meta *m = usv_model_get_meta(s->model);
	int chw[3];
	int rc = usv_model_layer_shape(s->model, s->cut, chw);
	if (rc)
		return usv_seterr(errbuf, errlen, rc, "model has no layer '%s'", s->cut);
	int fd = chw[0] * chw[1] * chw[2];
	int V = s->n_views, B = s->batch > 0 ? s->batch : 16;
	if (V < 1 || V > 10)
		return -EINVAL;
	if (m->resize_w < m->input_w || m->resize_h < m->input_h)
		return usv_seterr(errbuf, errlen, -EINVAL, "model resize %dx%d smaller than input",
		                  m->resize_w, m->resize_h);
	if (m->resize_w != m->resize_h)
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED, "non-square resize %dx%d",
		                  m->resize_w, m->resize_h);
	if (s->cache_dir)
		mkdir(s->cache_dir, 0755);
	feat_pass p;
	memset(&p, 0, sizeof p);
	p.s = s;
	p.d = d;
	p.m = m;
	p.fd = fd;
	p.V = V;
	p.B = B;
	p.in_sz = (size_t)m->input_c * m->input_h * m->input_w;
	p.feat = malloc((size_t)d->n * V * fd * sizeof(float));
	usv_session *ss = NULL;
	rc = -ENOMEM;
	if (!p.feat)
		goto fail;
	/* images per run: s->batch, fewer when that many inputs would need more
	 * than FEAT_SESSION_BYTES of activations (VGG16: about 0.4 GB per image
	 * of 10 views) */
	usv_session_opts so = {.max_batch = V, .threads = 1, .end_layer = s->cut};
	if (!usv_session_new(s->model, &so, &ss)) {
		size_t per = usv_session_memory(ss, NULL);
		if (per > 0 && (size_t)B * per > FEAT_SESSION_BYTES)
			B = FEAT_SESSION_BYTES / per > 0 ? (int)(FEAT_SESSION_BYTES / per) : 1;
		usv_session_free(ss);
		ss = NULL;
	}
	p.B = B;
	so = (usv_session_opts){.max_batch = B * V, .threads = s->threads, .end_layer = s->cut};
	rc = usv_session_new(s->model, &so, &ss);
	if (rc) {
		usv_seterr(errbuf, errlen, rc, "cannot create a session: %s", usv_strerror(rc));
		goto fail;
	}
	rc = -ENOMEM;
	for (int k = 0; k < 2; k++) {
		p.sl[k].in = malloc((size_t)B * V * p.in_sz * sizeof(float));
		p.sl[k].idx = malloc((size_t)B * sizeof(int));
		if (!p.sl[k].in || !p.sl[k].idx)
			goto fail;
	}
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	pthread_t th;
	if ((rc = -pthread_create(&th, NULL, loader, &p))) {
		pthread_cond_destroy(&p.cv);
		pthread_mutex_destroy(&p.mu);
		goto fail;
	}
	for (int k = 0;; k ^= 1) {
		slot *sl = &p.sl[k];
		pthread_mutex_lock(&p.mu);
		while (!sl->ready)
			pthread_cond_wait(&p.cv, &p.mu);
		pthread_mutex_unlock(&p.mu);
		if (p.rc) {
			rc = p.rc;
			usv_seterr(errbuf, errlen, rc, "%s", p.err);
			break;
		}
		if (sl->n > 0) {
			const float *o;
			int oc[3];
			rc = usv_session_run(ss, sl->in, sl->n * V, &o, oc);
			if (rc) {
				usv_seterr(errbuf, errlen, rc, "forward failed: %s",
				           usv_strerror(rc));
				break;
			}
			for (int j = 0; j < sl->n; j++) {
				float *dst = p.feat + (size_t)sl->idx[j] * V * fd;
				memcpy(dst, o + (size_t)j * V * fd, (size_t)V * fd * sizeof(float));
				if (s->cache_dir) {
					char cp[4200];
					cache_path(s, &d->items[sl->idx[j]], cp, sizeof cp);
					/* a failed put only costs time */
					cache_put(cp, dst, fd, V);
				}
			}
		}
		if (s->progress)
			s->progress(s->progress_ctx, sl->upto, d->n, sl->cached);
		int last = sl->last;
		pthread_mutex_lock(&p.mu);
		sl->ready = 0;
		pthread_cond_broadcast(&p.cv);
		pthread_mutex_unlock(&p.mu);
		if (last) {
			rc = 0;
			break;
		}
	}
	pthread_mutex_lock(&p.mu);
	p.stop = 1;
	pthread_cond_broadcast(&p.cv);
	pthread_mutex_unlock(&p.mu);
	pthread_join(th, NULL);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	if (rc)
		goto fail;
	usv_session_free(ss);
	for (int k = 0; k < 2; k++) {
		free(p.sl[k].in);
		free(p.sl[k].idx);
	}
	*out = p.feat;
	*dim = fd;
	return 0;
fail:
	usv_session_free(ss);
	free(p.feat);
	for (int k = 0; k < 2; k++) {
		free(p.sl[k].in);
		free(p.sl[k].idx);
	}
	return rc;
}
