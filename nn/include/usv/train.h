/*
 * NAME
 *	train.h - training a fully connected head on fixed features
 *
 * SYNOPSIS
 *	#include "usv/train.h"
 *
 * DESCRIPTION
 *	Transfer learning as in Cheng & Malhi (2016): the convolutional part of
 *	a pretrained network is frozen, so every (image, crop, mirror) has a
 *	fixed feature vector (pool5 or an embedding). Only the fully connected
 *	layers on top are trained. A usv_head is that stack:
 *
 *	    x -> fc[0] -> ReLU -> dropout -> fc[1] -> ReLU -> dropout -> ...
 *	      -> fc[L-1] -> softmax
 *
 *	(Caffe's fc6/relu6/drop6/fc7/relu7/drop7/fc8). Dropout is "inverted"
 *	(kept units scaled by 1/(1-p) during training), which is what Caffe
 *	does, so inference needs no rescaling.
 *
 *	Solver: Caffe's SGD with momentum,
 *	    v = momentum * v + lr_l * (g + weight_decay * w);  w -= v
 *	with the loss being the mean softmax cross-entropy over the batch.
 *	Two options of the loss (usv_loss_opts, both off by default, and
 *	then the loss and its gradient are computed exactly as without
 *	them): class weights w_c and label smoothing e, K classes:
 *	    q_c  = (1 - e) [c = y] + e / K           (the target)
 *	    loss = 1/n sum_i w_{y_i} (logsumexp(z_i) - sum_c q_c z_ic)
 *	    dloss/dz_ic = w_{y_i} (softmax(z_i)_c - q_c) / n
 *	The sum is divided by n, not by the sum of the weights: with the
 *	balanced weights n / (K n_c) (usv_class_weights_balanced()) the
 *	mean weight of a training sample is 1, so the learning rates keep
 *	their meaning.
 *	Biases use 2 x lr_l and no weight decay (Caffe's usual lr_mult 1/2,
 *	decay_mult 1/0 for weights/biases). The learning rate is constant
 *	(the paper's 1000 / 8000 iterations are shorter than any step).
 *
 *	Data: features of n images with n_views views each (e.g. 10 = the 5
 *	canonical crops x mirror). Each training sample picks a random image
 *	(epoch-wise shuffling) and a random view of it; evaluation uses view
 *	0 (the centre crop by convention of the caller).
 *
 *	Threads: usv_head_train() runs on opts.threads threads (its own
 *	fork-join pool, the caller included). Every GEMM is cut into tasks of
 *	a fixed size (column blocks of the forward and input-gradient GEMMs,
 *	row blocks of the weight gradients), each one single-threaded
 *	OpenBLAS call (or BF16 GEMM), so no task waits on OpenBLAS's internal
 *	barriers (which stall on a busy machine), and OpenBLAS's
 *	core type (OPENBLAS_CORETYPE) matters less than for one large threaded
 *	call. A weight-gradient task makes its rows' gradient in blocks of
 *	1024 columns that stay in L2 and runs the SGD step of each block right
 *	after its GEMM, so no full-size gradient is stored and the weights and
 *	momenta are streamed once per iteration. OpenBLAS's own thread count
 *	is the process setting made by main() (usv_nn_set_threads(), 1
 *	expected); training never changes it.
 *	usv_head_forward(), usv_head_evaluate() and usv_head_loss_grad() run
 *	on the calling thread with OpenBLAS as it is set.
 *
 *	Early stopping: with opts.early_stopping = N > 0 and a validation
 *	set, training stops after N curve points in a row without a lower
 *	validation loss than the best so far (the plain mean cross-entropy
 *	of view 0, neither weighted nor smoothed, so that curves of runs
 *	with different loss options compare), and the head is left with the
 *	weights of the best point; opts.stop (may be NULL) says where. The
 *	iteration count is then a limit.
 *
 *	Precision: opts.precision = USV_TRAIN_BF16 runs the forward, input-
 *	and weight-gradient GEMMs on operands rounded to bfloat16 (round to
 *	nearest even) with FP32 accumulation (kern_fast.h usv__bgemm(), 2x the
 *	FP32 throughput with AVX512_BF16; a slow scalar loop elsewhere). The
 *	weights, momenta, biases, activations' ReLU/dropout, softmax and the
 *	SGD step stay FP32 (master weights); a BF16 copy of each block of
 *	weight rows is repacked right after its SGD step. Validation at the
 *	curve points is FP32. USV_TRAIN_FP32 (OpenBLAS sgemm) is the default
 *	and the reference.
 *
 *	Determinism: shuffling and view choice come from one xoshiro256**
 *	stream seeded with opts.seed; the dropout mask of each (iteration,
 *	layer, batch row) from a stream keyed by the seed and those indices.
 *	Because the task cut does not depend on the thread count, the head
 *	is bit-identical for a seed and data whatever opts.threads is. The
 *	guarantee holds on one machine: another CPU or OpenBLAS core type
 *	may round its GEMMs differently (and BF16 runs use vdpbf16ps only
 *	where the CPU has AVX512_BF16). usv_head_forward() and
 *	usv_head_evaluate() round as OpenBLAS's thread count makes them (its
 *	threaded sgemm sums in another order than one thread does); that
 *	count is main()'s process setting, never changed afterwards, so the
 *	final metrics of a head are as reproducible as its weights. (They
 *	were not while engine sessions changed it per layer: a run that
 *	computed features left OpenBLAS at 1 thread, a run that read them
 *	all from the cache left it at --threads, and the same weights gave
 *	metrics that differed in the seventh digit.)
 *
 * OWNERSHIP
 *	usv_head_new() returns a head owned by the caller (usv_head_free(),
 *	NULL-safe). Data passed in usv_train_data is borrowed.
 *
 * DIAGNOSTICS
 *	0 or a negative errno-style code.
 */
#ifndef USV_TRAIN_H
#define USV_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_HEAD_MAX_LAYERS 8
#define USV_HEAD_MAX_DIM (1 << 20)

/* A small seeded PRNG (xoshiro256**, seeded through splitmix64). */
typedef struct usv_rng {
	uint64_t s[4];
} usv_rng;

void usv_rng_seed(usv_rng *r, uint64_t seed);
uint64_t usv_rng_next(usv_rng *r);
/* Uniform in [0, 1). */
double usv_rng_uniform(usv_rng *r);
/* Uniform integer in [0, n), n >= 1. */
uint32_t usv_rng_below(usv_rng *r, uint32_t n);
/* Standard normal (Box-Muller). */
double usv_rng_normal(usv_rng *r);

typedef struct usv_head {
	int n_layers;                       /* 1..USV_HEAD_MAX_LAYERS */
	int dims[USV_HEAD_MAX_LAYERS + 1];  /* dims[0] = feature size, dims[L] = classes */
	float *w[USV_HEAD_MAX_LAYERS];      /* [dims[l+1], dims[l]] row-major (Caffe order) */
	float *b[USV_HEAD_MAX_LAYERS];      /* [dims[l+1]] */
	float dropout[USV_HEAD_MAX_LAYERS]; /* after layer l's ReLU (l < L-1); 0 = none */
	float lr[USV_HEAD_MAX_LAYERS];      /* base learning rate of layer l */
} usv_head;

/* Allocates a head with zero weights. dims has n_layers + 1 entries. */
int usv_head_new(int n_layers, const int *dims, usv_head **out);
void usv_head_free(usv_head *h);
/* Fills layer l with N(0, std^2) weights (std <= 0: He, sqrt(2 / fan_in))
 * and zero biases. */
void usv_head_init_layer(usv_head *h, int l, float std, usv_rng *rng);

/* Inference: logits (softmax = 0) or probabilities (softmax = 1) of n
 * feature rows x[n, dims[0]] into out[n, dims[L]]. Dropout is off. */
int usv_head_forward(const usv_head *h, const float *x, int n, int softmax, float *out);

/* Mean cross-entropy of n rows and, if grad_w/grad_b are not NULL, its
 * gradient with respect to every weight and bias (arrays shaped like the
 * head's). masks: NULL = no dropout; else masks[l] (for l < L-1, may be
 * NULL) multiplies the activations after layer l's ReLU elementwise
 * ([n, dims[l+1]], already including the 1/(1-p) scale). Used by
 * training and by gradient checks. */
int usv_head_loss_grad(const usv_head *h, const float *x, const int *y, int n, float *const *masks,
                       float **grad_w, float **grad_b, double *loss);

/* Options of the training loss (see the DESCRIPTION); all zero = the plain
 * mean cross-entropy. */
typedef struct usv_loss_opts {
	const float *class_weight; /* NULL (all 1) or [classes], each finite and >= 0 */
	float label_smoothing;     /* e in [0, 0.5] */
} usv_loss_opts;

/* usv_head_loss_grad() with the loss options lo (NULL = none). -EINVAL
 * also for a smoothing out of range or a bad weight. */
int usv_head_loss_grad_ex(const usv_head *h, const float *x, const int *y, int n,
                          float *const *masks, const usv_loss_opts *lo, float **grad_w,
                          float **grad_b, double *loss);

/* The balanced class weights n / (k n_c) of n labels y[i] in [0, k) into
 * w[k] (sklearn's class_weight="balanced"); a class without samples
 * gets 0. 0 or -EINVAL. */
int usv_class_weights_balanced(const int *y, int n, int k, float *w);

typedef struct usv_train_data {
	int n;          /* images */
	int n_views;    /* feature vectors per image (>= 1) */
	int dim;        /* feature size */
	const float *x; /* [n][n_views][dim] */
	const int *y;   /* [n] class index */
} usv_train_data;

/* One point of the learning curve. */
typedef struct usv_curve_point {
	int iter;
	float train_loss; /* mean over the iterations since the previous point */
	float val_loss;   /* -1 when there is no validation set */
	float val_acc;    /* -1 when there is no validation set */
} usv_curve_point;

/* Wall-clock seconds of the phases of a training run, summed over the
 * iterations. */
typedef struct usv_train_times {
	double batch;    /* drawing the samples, copying their features, dropout masks */
	double forward;  /* forward GEMMs, bias, ReLU, dropout */
	double backward; /* loss, backward GEMMs and the SGD step */
	double eval;     /* validation at the curve points */
} usv_train_times;

/* Where a training run with early stopping ended. */
typedef struct usv_train_stop {
	int iterations;      /* iterations run */
	int stopped_early;   /* 1 when the patience ran out before opts.iterations */
	int best_iter;       /* the curve point whose weights the head keeps */
	float best_val_loss; /* its validation loss */
} usv_train_stop;

/* Arithmetic of the training GEMMs. */
enum {
	USV_TRAIN_FP32 = 0, /* OpenBLAS sgemm: the reference and the default */
	USV_TRAIN_BF16 = 1, /* operands rounded to bfloat16, FP32 accumulation */
};

typedef struct usv_train_opts {
	int iterations;
	int batch;
	float momentum;     /* 0.9 */
	float weight_decay; /* 5e-4 */
	uint64_t seed;
	int eval_every;         /* curve point every N iterations (0 = 10 points) */
	int threads;            /* threads of the run, the caller's included (1..256) */
	usv_train_times *times; /* may be NULL: receives the phase times */
	int precision;          /* USV_TRAIN_FP32 or USV_TRAIN_BF16 */
	usv_loss_opts loss;     /* class weights, label smoothing: none by default */
	/* > 0: stop after this many curve points without a lower validation
	 * loss and keep the best weights (needs a validation set); 0: off */
	int early_stopping;
	usv_train_stop *stop; /* may be NULL: receives where training ended */
	/* Called after every iteration (may be NULL); a non-zero return stops
	 * training with -ECANCELED. */
	int (*progress)(void *ctx, int iter, int iterations, float loss);
	void *progress_ctx;
} usv_train_opts;

/* Sets the defaults above (momentum 0.9, weight decay 5e-4, batch 32,
 * 1000 iterations, seed 1, 1 thread). */
void usv_train_opts_default(usv_train_opts *o);

/* Trains h in place. val may be NULL. *curve (caller frees with free())
 * receives *n_curve points. */
int usv_head_train(usv_head *h, const usv_train_data *train, const usv_train_data *val,
                   const usv_train_opts *o, usv_curve_point **curve, int *n_curve);

/* Mean loss and top-1 accuracy of view 0 of every image of d. */
int usv_head_evaluate(const usv_head *h, const usv_train_data *d, double *loss, double *acc);

/* ---------------- temperature scaling (calibration) ----------------
 *
 * Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017):
 * one scalar T > 0 divides the logits, p = softmax(z / T). The argmax,
 * hence the accuracy, does not change; T > 1 softens over-confident
 * probabilities, T < 1 sharpens under-confident ones. T is fitted on
 * held-out data (never the training set, whose logits the head has
 * memorised) by minimising the mean negative log-likelihood
 *     NLL(T) = 1/n sum_i [ logsumexp(z_i / T) - z_iy / T ].
 * NLL is convex in b = 1/T (a log-sum-exp of functions linear in b, plus
 * a linear term), so it is unimodal in log T, and usv_temperature_fit()
 * runs a golden-section search on log T over [log USV_TEMPERATURE_MIN,
 * log USV_TEMPERATURE_MAX] until the bracket is narrower than 1e-7 (about
 * 90 evaluations of NLL, each O(n * nc), in double precision). When the
 * minimum lies outside the range (e.g. perfectly separated logits) the
 * nearest end is returned. */

/* NLL(t) of n rows of logits z[n][nc] with labels y[n] (each in [0, nc)),
 * in double precision; NAN on bad arguments (t <= 0, n < 1, nc < 1). */
double usv_temperature_nll(const float *z, const int *y, int n, int nc, double t);

/* The T in [USV_TEMPERATURE_MIN, USV_TEMPERATURE_MAX] (usv/nn.h) that
 * minimises usv_temperature_nll() into *t. 0, or -EINVAL (NULL pointers,
 * n < 1, nc < 2, a label out of range, a logit not finite); *t is
 * untouched on failure. */
int usv_temperature_fit(const float *z, const int *y, int n, int nc, double *t);

#ifdef __cplusplus
}
#endif
#endif
