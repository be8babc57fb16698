/*
 * NAME
 *	features.c - batched feature extraction through the engine, with a cache
 *
 * DESCRIPTION
 *	See features.h.
 */
#include "feature_cache.h"

#include "usv/err.h"
#include "usv/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void usv_feature_view(const usv_model_meta *m, int v, int *off_x, int *off_y, int *flip)
{
	int dx = m->resize_w - m->input_w, dy = m->resize_h - m->input_h;
	int c = v / 2;
	*flip = v & 1;
	switch (c) {
	case 1:
		*off_x = 0, *off_y = 0;
		break;
	case 2:
		*off_x = dx, *off_y = 0;
		break;
	case 3:
		*off_x = 0, *off_y = dy;
		break;
	case 4:
		*off_x = dx, *off_y = dy;
		break;
	default:
		*off_x = -1, *off_y = -1;
	}
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
	char v[16];
	int n = snprintf(v, sizeof v, "|%d", s->n_views);
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
	size_t in_sz = (size_t)m->input_c * m->input_h * m->input_w;
	float *feat = malloc((size_t)d->n * V * fd * sizeof(float));
	float *inbuf = malloc((size_t)B * V * in_sz * sizeof(float));
	int *pending = malloc((size_t)B * sizeof(int));
	usv_session *ss = NULL;
	if (!feat || !inbuf || !pending) {
		rc = -ENOMEM;
		goto fail;
	}
	usv_session_opts so = {.max_batch = B * V, .threads = s->threads, .end_layer = s->cut};
	rc = usv_session_new(s->model, &so, &ss);
	if (rc) {
		usv_seterr(errbuf, errlen, rc, "cannot create a session: %s", usv_strerror(rc));
		goto fail;
	}
	int np = 0, cached = 0;
	for (int i = 0; i <= d->n; i++) {
		if (i < d->n) {
			const usv_ds_item *it = &d->items[i];
			char cp[4200];
			if (s->cache_dir) {
				cache_path(s, it, cp, sizeof cp);
				if (!cache_get(cp, feat + (size_t)i * V * fd, fd, V)) {
					cached++;
					if (s->progress)
						s->progress(s->progress_ctx, i + 1, d->n, cached);
					continue;
				}
			}
			usv_image *im = NULL;
			rc = usv_ds_load_image(it->path, m->resize_w, &im, errbuf, errlen);
			if (rc)
				goto fail;
			for (int v = 0; v < V; v++) {
				int ox, oy, fl;
				usv_feature_view(m, v, &ox, &oy, &fl);
				rc = usv_preprocess(m, im->px, ox, oy, fl,
				                    inbuf + ((size_t)np * V + v) * in_sz);
				if (rc) {
					usv_image_free(im);
					usv_seterr(errbuf, errlen, rc, "%s: preprocessing failed",
					           it->path);
					goto fail;
				}
			}
			usv_image_free(im);
			pending[np++] = i;
		}
		if (np == B || (i == d->n && np > 0)) {
			const float *o;
			int oc[3];
			rc = usv_session_run(ss, inbuf, np * V, &o, oc);
			if (rc) {
				usv_seterr(errbuf, errlen, rc, "forward failed: %s",
				           usv_strerror(rc));
				goto fail;
			}
			for (int k = 0; k < np; k++) {
				float *dst = feat + (size_t)pending[k] * V * fd;
				memcpy(dst, o + (size_t)k * V * fd, (size_t)V * fd * sizeof(float));
				if (s->cache_dir) {
					char cp[4200];
					cache_path(s, &d->items[pending[k]], cp, sizeof cp);
					cache_put(cp, dst, fd,
					          V); /* a failed put only costs time */
				}
			}
			if (s->progress)
				s->progress(s->progress_ctx, i < d->n ? i + 1 : d->n, d->n, cached);
			np = 0;
		}
	}
	usv_session_free(ss);
	free(inbuf);
	free(pending);
	*out = feat;
	*dim = fd;
	return 0;
fail:
	usv_session_free(ss);
	free(feat);
	free(inbuf);
	free(pending);
	return rc;
}
