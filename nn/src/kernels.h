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
 *	not allocate. Kernels split their work into tasks run on ex->pool.
 */
#ifndef USV_NN_KERNELS_H
#define USV_NN_KERNELS_H

#include "nn_internal.h"
#include "pool.h"

typedef struct usv_mlayer usv_mlayer;

typedef void (*usv_kernel_fn)(const usv_mlayer *L, usv_act act, const float *const *in, float *out,
                              int n, float *scratch);

typedef struct usv_impl {
	const char *name;
	usv_kernel_fn run;
	size_t (*scratch_floats)(const usv_mlayer *L, int max_batch); /* NULL = none */
	/* 1: the kernel parallelises itself on the session's pool (usv__exec())
	 * and calls OpenBLAS single-threaded; 0: it runs on the calling thread
	 * only. A kernel that calls OpenBLAS must be pooled: sessions never
	 * change OpenBLAS's thread count (usv_nn_set_threads(), main's) */
	int pooled;
	size_t (*thread_scratch_floats)(const usv_mlayer *L); /* per thread; NULL = none */
	/* 1: run() also takes act | USV__ACT_MAXPOOL2 and then writes the 2x2
	 * stride-2 max pooling of its output (h and w even) instead */
	int fuse_maxpool2;
} usv_impl;

/* A flag on the activation passed to run() (see fuse_maxpool2). */
#define USV__ACT_MAXPOOL2 0x100
#define USV__ACT_MASK 0xff

/* 1 if impl parallelises itself on the session's pool (usv__exec()) and
 * calls OpenBLAS single-threaded; 0: it runs on the calling thread. */
int usv__impl_pooled(const usv_impl *impl);
/* Private scratch floats per thread that layer L's kernel needs. */
size_t usv__impl_thread_scratch(const usv_mlayer *L);

/* What pooled kernels may use besides their operands: the session's pool
 * (NULL = serial) and a private scratch area per thread. */
typedef struct usv_exec {
	usv_pool *pool;
	int nthreads;
	float *tscratch;        /* thread t: tscratch + t * tscratch_stride */
	size_t tscratch_stride; /* floats */
} usv_exec;

/* The execution context of the session running on this thread (set by
 * usv_session_run(); a serial context outside a run). Thread-local: a task
 * running on a pool worker must use the pointer its kernel captured. */
const usv_exec *usv__exec(void);
void usv__set_exec(const usv_exec *ex);

struct usv_mlayer {
	usv_layer_def def;
	usv_geom g;
	const float *weight; /* NULL when the layer has none */
	const float *bias;   /* NULL when has_bias == 0 */
	const usv_impl *impl;
	void
	    *packed; /* weights prepared by a fast kernel (kern_select.c); free()d with the model */
	/* 1: weight points into the model file's private read-only mapping, so
	 * a fast kernel that packed it may release its pages (usv__drop_pages) */
	int weight_mapped;
	/* softmax: divide the inputs by this (the model's calibration
	 * temperature on its output softmax); 0 or 1 = plain softmax */
	float temperature;
};

/* Picks the implementation of a layer (geometry and weights already set). */
const usv_impl *usv__choose_impl(const usv_mlayer *L);

/* Rows [r0, r1) of the im2col matrix of convolution L for one image x
 * ([ic, ih, iw]): row (c * kh + i) * kw + j holds the h * w input values
 * tap (i, j) of channel c meets (0 in the padding); row r goes to
 * col + (r - r0) * h * w. */
void usv__im2col_rows(const float *x, const usv_mlayer *L, int r0, int r1, float *col);
/* 1 if L is a 1x1 stride-1 unpadded convolution (its input is its im2col). */
int usv__conv_is_1x1(const usv_mlayer *L);

/* In-place activation of n floats. */
void usv__act(float *x, size_t n, usv_act act);

#endif
