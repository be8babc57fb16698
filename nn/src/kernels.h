/*
 * NAME
 *	kernels.h - layer kernels and the compiled-model representation
 *	(internal)
 *
 * DESCRIPTION
 *	A compiled layer (usv_mlayer) carries its definition, resolved
 *	geometry, weight pointers and an implementation (usv_impl): a kernel
 *	function plus a scratch-size function. usv__choose_impl() picks the
 *	implementation once when the model is built; faster kernels (Winograd,
 *	blocked direct convolution, bf16) are added as further usv_impl rows
 *	and a rule in usv__choose_impl(), without touching the session code.
 *
 *	Kernel contract: in[k] points to input k ([n, C, H, W] of that input),
 *	out to the output ([n, c, h, w]); out may equal in[0] for element-wise
 *	layers that the session runs in place. scratch holds at least
 *	scratch_floats(L, max_batch) floats. act overrides the layer's own
 *	fused activation (the session may fuse a following ReLU). Kernels do
 *	not allocate.
 */
#ifndef USV_NN_KERNELS_H
#define USV_NN_KERNELS_H

#include "nn_internal.h"

typedef struct usv_mlayer usv_mlayer;

typedef void (*usv_kernel_fn)(const usv_mlayer *L, usv_act act, const float *const *in, float *out,
                              int n, float *scratch);

typedef struct usv_impl {
	const char *name;
	usv_kernel_fn run;
	size_t (*scratch_floats)(const usv_mlayer *L, int max_batch); /* NULL = none */
} usv_impl;

struct usv_mlayer {
	usv_layer_def def;
	usv_geom g;
	const float *weight; /* NULL when the layer has none */
	const float *bias;   /* NULL when has_bias == 0 */
	const usv_impl *impl;
};

/* Picks the implementation of a layer (geometry and weights already set). */
const usv_impl *usv__choose_impl(const usv_mlayer *L);

/* In-place activation of n floats. */
void usv__act(float *x, size_t n, usv_act act);

#endif
