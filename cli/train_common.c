/*
 * NAME
 *	train_common.c - presets, mean image and number parsing for usview train
 *
 * DESCRIPTION
 *	Presets (Cheng & Malhi 2016):
 *	caffenet  batch 256, 1000 iterations, lr fc6/fc7/fc8 0.001/0.001/0.01,
 *	          227 crops of the 256 image (+ mirror: 10 fixed views), the
 *	          training-set mean image, dropout 0.5, fc6/fc7 from the
 *	          pretrained network, fc8 random.
 *	vgg16     batch 32, 8000 iterations, the learning rates / 8, 224 crops.
 *	mobilenet a head F -> 256 -> N on the backbone's feature layer, found
 *	          from its structure (cut NULL: usview train's choose_cut()):
 *	          the global pooling before its classifier, F = 1024 for the
 *	          v1 embedding extractor (its last layer), 1280 for a whole
 *	          MobileNet v2 (view 0 = the image, view 1 its mirror),
 *	          dropout 0.5, same solver (momentum 0.9, weight decay 5e-4),
 *	          lr 0.01 / 0.01, batch 32, 1000 iterations; the backbone's own
 *	          (x - 128) / 128.
 */
#include "train_common.h"

#include "usv/err.h"
#include "usv/image.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const usv_train_preset presets[] = {
    {"caffenet",
     256,
     1000,
     2,
     {4096, 4096},
     {0.001f, 0.001f, 0.01f},
     0.5f,
     10,
     1,
     "pool5",
     {"fc6", "fc7", "fc8"},
     1},
    {"vgg16",
     32,
     8000,
     2,
     {4096, 4096},
     {0.001f / 8, 0.001f / 8, 0.01f / 8},
     0.5f,
     10,
     1,
     "pool5",
     {"fc6", "fc7", "fc8"},
     1},
    {"mobilenet",
     32,
     1000,
     1,
     {256},
     {0.01f, 0.01f},
     0.5f,
     2,
     0,
     NULL,
     {"head_fc1", "head_logits"},
     0},
};

const usv_train_preset *usv_train_preset_find(const char *name)
{
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
		if (!strcmp(presets[i].name, name))
			return &presets[i];
	return NULL;
}

/* ---------------- mean image ---------------- */

typedef struct mean_pass {
	const usv_dataset *d;
	const usv_model_meta *m;
	uint8_t **keep;
	size_t keep_max;
	atomic_size_t kept;
	atomic_int next;
	atomic_int rc;
	uint32_t *acc; /* [threads][3 * plane] */
	pthread_mutex_t mu;
	char *errbuf;
	size_t errlen;
} mean_pass;

typedef struct mean_worker {
	mean_pass *p;
	int id;
} mean_worker;

static void *mean_run(void *arg)
{
	mean_worker *w = arg;
	mean_pass *p = w->p;
	int R = p->m->resize_w;
	size_t plane = (size_t)R * R;
	uint32_t *acc = p->acc + (size_t)w->id * 3 * plane;
	int i;
	while (!atomic_load(&p->rc) && (i = atomic_fetch_add(&p->next, 1)) < p->d->n) {
		usv_image *im = NULL;
		char err[USV_ERRBUF] = "";
		int rc = usv_ds_load_image(p->d->items[i].path, R, &im, err, sizeof err);
		if (rc) {
			pthread_mutex_lock(&p->mu);
			if (!atomic_load(&p->rc)) {
				atomic_store(&p->rc, rc);
				snprintf(p->errbuf, p->errlen, "%s", err);
			}
			pthread_mutex_unlock(&p->mu);
			break;
		}
		for (int c = 0; c < 3; c++) {
			int src = p->m->channel_order == USV_BGR ? 2 - c : c;
			uint32_t *a = acc + c * plane;
			for (size_t q = 0; q < plane; q++)
				a[q] += im->px[q * 3 + src];
		}
		if (p->keep && atomic_fetch_add(&p->kept, 3 * plane) + 3 * plane <= p->keep_max) {
			p->keep[i] = malloc(3 * plane);
			if (p->keep[i])
				memcpy(p->keep[i], im->px, 3 * plane);
		}
		usv_image_free(im);
	}
	return NULL;
}

int usv_mean_image(const usv_dataset *d, const usv_model_meta *m, int threads, uint8_t **keep,
                   size_t keep_max, float **out, char *errbuf, size_t errlen)
{
	if (d->n < 1 || d->n > (int)(UINT32_MAX / 255))
		return -USV_ERR_LIMIT;
	if (threads < 1)
		threads = 1;
	if (threads > d->n)
		threads = d->n;
	int R = m->resize_w;
	size_t plane = (size_t)R * R;
	mean_pass p = {
	    .d = d, .m = m, .keep = keep, .keep_max = keep_max, .errbuf = errbuf, .errlen = errlen};
	atomic_init(&p.kept, 0);
	atomic_init(&p.next, 0);
	atomic_init(&p.rc, 0);
	if (keep)
		memset(keep, 0, (size_t)d->n * sizeof *keep);
	p.acc = calloc((size_t)threads * 3 * plane, sizeof(uint32_t));
	mean_worker *w = calloc((size_t)threads, sizeof *w);
	pthread_t *th = calloc((size_t)threads, sizeof *th);
	float *mean = malloc(3 * plane * sizeof(float));
	int rc = -ENOMEM;
	if (!p.acc || !w || !th || !mean)
		goto out;
	pthread_mutex_init(&p.mu, NULL);
	int started = 0;
	for (int t = 1; t < threads; t++) {
		w[t] = (mean_worker){&p, t};
		if (pthread_create(&th[t], NULL, mean_run, &w[t]))
			break;
		started = t;
	}
	w[0] = (mean_worker){&p, 0};
	mean_run(&w[0]);
	for (int t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&p.mu);
	rc = atomic_load(&p.rc);
	if (rc)
		goto out;
	/* exact integer sums: the mean does not depend on the thread count */
	for (size_t q = 0; q < 3 * plane; q++) {
		uint64_t sum = 0;
		for (int t = 0; t < threads; t++)
			sum += p.acc[(size_t)t * 3 * plane + q];
		mean[q] = (float)((double)sum / d->n);
	}
	*out = mean;
	mean = NULL;
out:
	if (rc && keep)
		for (int i = 0; i < d->n; i++) {
			free(keep[i]);
			keep[i] = NULL;
		}
	free(p.acc);
	free(w);
	free(th);
	free(mean);
	return rc;
}
