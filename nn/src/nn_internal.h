/*
 * NAME
 *	nn_internal.h - shared internals of the nn module (not installed)
 *
 * DESCRIPTION
 *	The netdef representation, shape inference, the model-file parser and
 *	the layer kernels used by sessions. Nothing here is part of the
 *	public API; tests use usv/nn.h only.
 */
#ifndef USV_NN_INTERNAL_H
#define USV_NN_INTERNAL_H

#include "usv/nn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define USV_MAX_TENSORS (3 * USV_MAX_LAYERS + 1)
#define USV_MAX_DIM (1 << 24)               /* one dimension of a blob or tensor */
#define USV_MAX_BLOB ((int64_t)1 << 28)     /* floats per image in one blob */
#define USV_MAX_TENSOR ((int64_t)1 << 30)   /* floats in one weight tensor */
#define USV_MAX_HEADER (100u * 1024 * 1024) /* model-file JSON header */

typedef struct usv_tensor {
	char name[USV_NAME_MAX];
	int ndim;
	int64_t shape[4];
	size_t count;
	float *data;
	int owned; /* data is usv__aligned_alloc()ed and freed with the netdef */
} usv_tensor;

/* usv_model_meta plus the storage its pointers point into. */
typedef struct usv_meta_store {
	usv_model_meta m;
	char **labels;
	char *output_layer;
	char *provenance;
	float *mean;
} usv_meta_store;

struct usv_netdef {
	usv_layer_def *layers;
	int n_layers, cap_layers;
	usv_tensor *tensors;
	int n_tensors, cap_tensors;
	usv_meta_store meta;
};

/* Resolved geometry of one layer for the netdef's input size. */
typedef struct usv_geom {
	int in[USV_MAX_INPUTS];   /* producing layer index; -1 = network input */
	int in_c[USV_MAX_INPUTS]; /* channels of each input */
	int c, h, w;              /* output, per image */
	int ic, ih, iw;           /* first input, per image */
	int pt, pb, pl, pr;       /* padding after SAME/VALID resolution */
} usv_geom;

void *usv__aligned_alloc(size_t bytes); /* 64-byte aligned, free() releases */
int usv__meta_set(usv_meta_store *dst, const usv_model_meta *src);
void usv__meta_clear(usv_meta_store *s);
usv_tensor *usv__find_tensor(const usv_netdef *def, const char *name);
const char *usv__layer_type_name(usv_layer_type t);
int usv__layer_type_from_name(const char *s);
/* Validates the graph, its weights and infers every layer's geometry into
 * g[n_layers]. `file` names the source in messages (may be NULL). */
int usv__infer(const usv_netdef *def, usv_geom *g, const char *file, char *errbuf, size_t errlen);
/* Adds a tensor without copying: data is borrowed (owned = 0). */
int usv__netdef_add_borrowed(usv_netdef *def, const char *name, int ndim, const int64_t *shape,
                             float *data);
/* Parses a model file image (map, len). With borrow != 0 the netdef's
 * tensors point into map (which must outlive it), otherwise they are copied. */
int usv__parse_model(const char *path, const uint8_t *map, size_t len, int borrow, usv_netdef **out,
                     char *errbuf, size_t errlen);
/* Maps a regular file read-only (MAP_PRIVATE). *map is NULL for an empty
 * file; release with munmap(*map, *len). 0, -errno or -USV_ERR_FORMAT (not a
 * regular file), with one line naming the file in errbuf. */
int usv__map_file(const char *path, void **map, size_t *len, char *errbuf, size_t errlen);
/* Only for memory of a private read-only file mapping (usv__map_file()):
 * releases the pages covering [p, p + len), rounded outwards to pages. */
void usv__drop_pages(const void *p, size_t len);
int usv__write_atomic(const char *path, int (*fill)(FILE *f, void *ctx), void *ctx, char *errbuf,
                      size_t errlen);

#endif
