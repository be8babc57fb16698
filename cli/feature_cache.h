/*
 * NAME
 *	feature_cache.h - frozen-backbone features of a dataset, cached on disk
 *
 * DESCRIPTION
 *	With the convolutional layers frozen, the feature vector of every
 *	(image, crop, mirror) is fixed, so usview train computes it once.
 *	Views: the image is resized to meta.resize_w x resize_h and cut into
 *	input_w x input_h crops; view v uses crop v / 2 (0 centre, 1 top-left,
 *	2 top-right, 3 bottom-left, 4 bottom-right) and mirrors when v is odd.
 *	So n_views = 1 is the centre crop, 2 adds its mirror and 10 is Caffe's
 *	5 canonical crops x mirror - the fixed set of crops that stands in for
 *	Caffe's random 227 / 224 crops (the trainer picks one of the views
 *	at random per sample). View 0 is always the centre crop.
 *
 *	Cache: one file per image, <cache_dir>/<sha256>.f32, where the
 *	SHA-256 covers the caller's key (which must identify the backbone
 *	weights, the cut layer, the preprocessing, e.g. the mean image, and
 *	the kernel choice, e.g. BF16), the image file's SHA-256, n_views and
 *	spec.threads. The file is a 16-byte header ("USVF", dim, n_views, 0
 *	as little-endian int32) and the floats. Written through a temporary
 *	file and rename(), so a crash never leaves a partial entry.
 *
 *	Reproducibility: an image's features are a function of the model,
 *	its kernels, the session's thread count (the engine's kernels split
 *	their work by it, and the split moves the last bits of a sum) and
 *	the machine (CPU, OpenBLAS core); not of the batch the image was
 *	run in, nor of how much of the cache was filled before. So a cache
 *	entry replays exactly what a cold run computes, as long as the cache
 *	directory is not shared between machines of different CPU types.
 *
 *	Pipeline: a loader thread does the cache look-ups, decodes (unless
 *	spec.pixels has the image) and preprocesses the views of the next
 *	batch into one of two input buffers while the calling thread runs
 *	the engine session (spec.threads threads, batch x n_views inputs per
 *	run) on the other and writes the new cache entries.
 */
#ifndef USV_CLI_FEATURES_H
#define USV_CLI_FEATURES_H

#include "dataset.h"
#include "usv/nn.h"

typedef struct usv_feat_spec {
	const usv_model *model; /* preprocessing from its meta */
	const char *cut;        /* layer whose output is the feature */
	int n_views;            /* 1..10 */
	const char *cache_dir;  /* NULL = no cache */
	const char *key;        /* identifies model + preprocessing */
	int batch;              /* images per forward (each with n_views inputs); fewer when
	                         * their activations would take more than 1 GiB (VGG16) */
	/* NULL, or per image its RGB8 pixels at resize_w x resize_h (from
	 * usv_mean_image()); images without them are decoded */
	const uint8_t *const *pixels;
	int threads;
	int (*progress)(void *ctx, int done, int total, int cached);
	void *progress_ctx;
} usv_feat_spec;

/* Computes [d->n][n_views][*dim] floats into *out (caller frees). */
int usv_features_compute(const usv_feat_spec *s, const usv_dataset *d, float **out, int *dim,
                         char *errbuf, size_t errlen);

/* A simple progress line on stderr when it is a terminal: label, bar,
 * count, rate, and an extra text (e.g. the loss). */
void usv_progress_line(const char *label, int done, int total, double t0, const char *extra);
double usv_now(void);

#endif
