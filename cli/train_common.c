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
 *	mobilenet a head 1024 -> 256 -> N on the 1024-d embedding (view 0 =
 *	          the image, view 1 its mirror), dropout 0.5, same solver
 *	          (momentum 0.9, weight decay 5e-4), lr 0.01 / 0.01, batch 32,
 *	          1000 iterations; the backbone's own (x - 128) / 128.
 */
#include "train_common.h"

#include "usv/err.h"

#include <errno.h>
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
     "embedding",
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

int usv_mean_image(const usv_dataset *d, const usv_model_meta *m, float **out, char *errbuf,
                   size_t errlen)
{
	int R = m->resize_w;
	size_t plane = (size_t)R * R;
	double *acc = calloc(3 * plane, sizeof(double));
	float *mean = malloc(3 * plane * sizeof(float));
	if (!acc || !mean) {
		free(acc);
		free(mean);
		return -ENOMEM;
	}
	for (int i = 0; i < d->n; i++) {
		usv_image *im = NULL;
		int rc = usv_ds_load_image(d->items[i].path, R, &im, errbuf, errlen);
		if (rc) {
			free(acc);
			free(mean);
			return rc;
		}
		for (int c = 0; c < 3; c++) {
			int src = m->channel_order == USV_BGR ? 2 - c : c;
			double *a = acc + c * plane;
			for (size_t p = 0; p < plane; p++)
				a[p] += im->px[p * 3 + src];
		}
		usv_image_free(im);
	}
	for (size_t p = 0; p < 3 * plane; p++)
		mean[p] = (float)(acc[p] / d->n);
	free(acc);
	*out = mean;
	return 0;
}
