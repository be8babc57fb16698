/*
 * NAME
 *	train_common.h - helpers shared by usview train, eval, report, bench
 *
 * DESCRIPTION
 *	usv_train_preset_find() returns the paper's protocol for a preset
 *	name. usv_mean_image() computes the training-set mean image (RGB8
 *	files resized to the model's resize size, averaged per pixel, in the
 *	model's channel order), decoding in parallel and optionally keeping
 *	the decoded pixels for the feature pass. (parse.h is included for
 *	the option parsers.)
 */
#ifndef USV_CLI_TRAIN_COMMON_H
#define USV_CLI_TRAIN_COMMON_H

#include "dataset.h"
#include "parse.h"
#include "usv/nn.h"

#include <stdint.h>

typedef struct usv_train_preset {
	const char *name;
	int batch, iterations;
	int n_hidden;           /* hidden FC layers on the feature */
	int hidden[4];          /* their sizes */
	float lr[5];            /* per FC layer, hidden ones first, the output last */
	float dropout;          /* after each hidden layer */
	int views;              /* feature views per training image */
	int mean_image;         /* subtract the training-set mean image */
	const char *cut;        /* feature layer; NULL: found from the backbone's structure */
	const char *names[5];   /* FC layer names (hidden..., output) */
	int init_from_backbone; /* hidden layers start from the backbone's weights */
} usv_train_preset;

const usv_train_preset *usv_train_preset_find(const char *name);

/* Decodes every image on `threads` threads (exact integer sums, so the
 * mean does not depend on the thread count). keep (NULL or d->n entries)
 * receives each image's RGB8 pixels (malloc'ed, caller frees; NULL past
 * keep_max bytes in all), so that the feature pass need not decode them
 * again. */
int usv_mean_image(const usv_dataset *d, const usv_model_meta *m, int threads, uint8_t **keep,
                   size_t keep_max, float **out, char *errbuf, size_t errlen);

#endif
