/*
 * NAME
 *	nn.h - usview CNN engine: network definitions, model files, inference
 *
 * SYNOPSIS
 *	#include "usv/nn.h"
 *
 * DESCRIPTION
 *	C11 + OpenBLAS. Knows nothing of DICOM or image files.
 *
 *	A usv_netdef is a mutable, in-memory description of a network: an
 *	ordered list of layers (a DAG by blob name, topologically sorted),
 *	named float32 tensors (weights) and metadata. Importers (Caffe, TFLite)
 *	and the built-in architectures produce a netdef; usv_netdef_write()
 *	stores it as a model file.
 *
 *	A usv_model is immutable once loaded and may be shared by any number
 *	of threads. Each thread runs inference through its own usv_session,
 *	whose buffers are planned once at creation: usv_session_run() does no
 *	allocation.
 *
 *	Tensors are float32 NCHW. Weights of a convolution are
 *	[out, in/group, kh, kw] (Caffe order); of an inner product [out, in].
 *
 *	Model file: the safetensors layout - 8-byte little-endian header
 *	length, a JSON header {name: {dtype, shape, data_offsets}, ...,
 *	"__metadata__": {string: string}}, then the tensor bytes, each tensor
 *	64-byte aligned in the file so the file can be mmap()ed. The metadata
 *	key "usview" holds a JSON document (as a string) with the format
 *	version, the layer list and the usv_model_meta fields; see
 *	docs/model-format.md.
 *
 * OWNERSHIP
 *	Objects returned through `**out` belong to the caller and are released
 *	with the matching _free(), which accepts NULL. Pointers returned by
 *	getters (usv_model_get_meta(), layer names) stay owned by the object and
 *	live as long as it does.
 *
 * DIAGNOSTICS
 *	0 or a negative errno-style code (see usv/err.h). Functions taking
 *	errbuf write one line naming the file and the reason.
 */
#ifndef USV_NN_H
#define USV_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_NAME_MAX 64  /* layer / blob / tensor names, including NUL */
#define USV_MAX_INPUTS 8 /* bottoms of one layer (concat) */
#define USV_MAX_LAYERS 1024
#define USV_MAX_LABELS 4096
#define USV_LABEL_MAX 128
#define USV_MODEL_FORMAT_VERSION 1
/* Accepted range of usv_model_meta.temperature (the file's meta.temperature). */
#define USV_TEMPERATURE_MIN 0.05f
#define USV_TEMPERATURE_MAX 100.0f

typedef enum usv_layer_type {
	USV_LAYER_CONV = 1, /* convolution; depthwise = group == channels */
	USV_LAYER_RELU,
	USV_LAYER_RELU6,
	USV_LAYER_LRN,     /* across channels, Caffe semantics */
	USV_LAYER_MAXPOOL, /* explicit pad + ceil_mode: Caffe rounding (the last window
	                    * starts inside input + leading pad) */
	USV_LAYER_AVEPOOL, /* explicit pad: Caffe (divide by the window clipped to the
	                    * padded extent); SAME/VALID: TF (valid taps only) */
	USV_LAYER_GLOBAL_AVEPOOL,
	USV_LAYER_FC,         /* inner product; flattens C*H*W of its input */
	USV_LAYER_SOFTMAX,    /* over channels */
	USV_LAYER_ADD,        /* element-wise sum of its inputs */
	USV_LAYER_DROPOUT,    /* identity at inference */
	USV_LAYER_CONCAT,     /* along channels */
	USV_LAYER_FLATTEN,    /* [N,C,H,W] -> [N,C*H*W,1,1] */
	USV_LAYER_LRN_WITHIN, /* LRN within each channel (Caffe WITHIN_CHANNEL):
	                       * y = x / (k + alpha/n^2 * sum of x^2 over the n x n
	                       * window centred on it, zero padded)^beta, n = local_size */
} usv_layer_type;

typedef enum usv_pad_mode {
	USV_PAD_EXPLICIT = 0, /* pad_t/b/l/r as given (Caffe) */
	USV_PAD_SAME,         /* TensorFlow SAME: out = ceil(in/stride) */
	USV_PAD_VALID,        /* TensorFlow VALID: no padding */
} usv_pad_mode;

typedef enum usv_act {
	USV_ACT_NONE = 0,
	USV_ACT_RELU,
	USV_ACT_RELU6,
} usv_act;

/* One layer. Weights live in the netdef's tensors, named "<layer>.weight"
 * and "<layer>.bias". Unused fields are zero. */
typedef struct usv_layer_def {
	char name[USV_NAME_MAX]; /* unique; also the name of its output blob */
	usv_layer_type type;
	int n_inputs;
	char inputs[USV_MAX_INPUTS][USV_NAME_MAX]; /* producing layers; "data" = network input */
	/* convolution, pooling */
	int num_output;
	int kernel_h, kernel_w, stride_h, stride_w;
	int pad_t, pad_b, pad_l, pad_r;
	usv_pad_mode pad_mode;
	int group; /* >= 1 */
	int has_bias;
	int ceil_mode; /* pooling: 1 = Caffe (ceil), 0 = floor */
	usv_act act;   /* activation fused after conv / fc / add */
	/* LRN: y = x / (k + alpha/size * sum x^2)^beta */
	int local_size;
	float alpha, beta, k;
	float dropout_ratio;
} usv_layer_def;

typedef enum usv_channel_order { USV_RGB = 0, USV_BGR = 1 } usv_channel_order;

/* Everything a user of a model needs to feed it. Preprocessing applied by
 * usv_preprocess(): resize to resize_w x resize_h (done by the caller),
 * centre crop input_w x input_h, per pixel: (x[c] - mean) * scale, where
 * mean is the mean image (if mean_image != NULL, [3, resize_h, resize_w]
 * cropped to the same window) or else mean_rgb[c]. */
typedef struct usv_model_meta {
	char arch[32];  /* "caffenet", "vgg16", "mobilenet_v1", "mobilenet_v2", "custom" */
	char name[128]; /* free text, e.g. "usview abdominal views (phantom demo)" */
	int input_c, input_h, input_w;   /* network input, e.g. 3x227x227 */
	int resize_h, resize_w;          /* image size before crop, e.g. 256 */
	usv_channel_order channel_order; /* order of the network's input channels */
	float scale;             /* multiplier after mean subtraction (1 for Caffe, 1/128 for TF) */
	float mean_rgb[3];       /* per channel, in channel_order order */
	const float *mean_image; /* NULL or [input_c, resize_h, resize_w], channel_order */
	int n_labels;
	const char *const *labels; /* n_labels strings */
	const char *output_layer;  /* layer whose output is the class scores / probabilities */
	int output_is_prob;        /* 1 if output_layer already applies softmax */
	/* Calibration temperature T: the class probabilities are
	 * softmax(logits / T). 1 (or 0 in a struct given to
	 * usv_netdef_set_meta(), meaning "unset") = plain softmax; otherwise
	 * in [USV_TEMPERATURE_MIN, USV_TEMPERATURE_MAX]. A model's own
	 * softmax output layer applies it; callers that apply
	 * usv_softmax() themselves (output_is_prob == 0) use
	 * usv_softmax_t(x, n, temperature). File key meta.temperature. */
	float temperature;
	/* Views averaged per image at test time (the paper's evaluation): 1 =
	 * the centre crop, 2 = it and its mirror, 10 = the centre and the four
	 * corners, each also mirrored (usv_preprocess_view()); the class
	 * probabilities are the mean of the views'. 0 in a struct given to
	 * usv_netdef_set_meta() = 1. File key meta.test_views (absent = 1). */
	int test_views;
	const char *provenance_json; /* JSON text: sources and their SHA-256, preset, metrics... */
	char sha256[65];             /* SHA-256 of the model file (set by usv_model_load) */
} usv_model_meta;

/* ---------------- network definitions (mutable) ---------------- */

typedef struct usv_netdef usv_netdef;

int usv_netdef_new(usv_netdef **out);
void usv_netdef_free(usv_netdef *def);
/* Appends a copy of *layer. -EEXIST on a duplicate name, -EINVAL on a bad field. */
int usv_netdef_add_layer(usv_netdef *def, const usv_layer_def *layer);
/* Adds (copies) a float32 tensor; ndim <= 4. Replaces an existing one of that name. */
int usv_netdef_add_tensor(usv_netdef *def, const char *name, int ndim, const int64_t *shape,
                          const float *data);
/* Borrowed pointer to a tensor's data (and shape), or NULL. */
float *usv_netdef_tensor(usv_netdef *def, const char *name, int *ndim, int64_t shape[4]);
int usv_netdef_n_layers(const usv_netdef *def);
usv_layer_def *usv_netdef_layer(usv_netdef *def, int i);
/* Metadata: the struct is copied (labels, mean image and strings too). */
int usv_netdef_set_meta(usv_netdef *def, const usv_model_meta *meta);
const usv_model_meta *usv_netdef_meta(const usv_netdef *def);
/* Removes every layer after `last` (inclusive cut point). */
int usv_netdef_truncate(usv_netdef *def, const char *last);
/* Checks the graph and infers shapes; errbuf says which layer is wrong. */
int usv_netdef_validate(const usv_netdef *def, char *errbuf, size_t errlen);
/* Writes a model file (atomically: tmp + fsync + rename). */
int usv_netdef_write(const usv_netdef *def, const char *path, char *errbuf, size_t errlen);
/* Reads a model file back into a mutable netdef (for editing / training). */
int usv_netdef_read(const char *path, usv_netdef **out, char *errbuf, size_t errlen);

/* Built-in architectures with random (seeded, He-scaled) weights.
 * arch: "caffenet", "vgg16", "mobilenet_v1", "mobilenet_v2". n_classes is
 * the size of the last FC layer (fc8 / logits). */
int usv_netdef_builtin(const char *arch, int n_classes, uint64_t seed, usv_netdef **out);

/* ---------------- models (immutable, shared) ---------------- */

typedef struct usv_model usv_model;

/* BF16 levels of usv_model_opts.bf16. */
enum {
	USV_BF16_OFF = 0, /* FP32 everywhere: the reference */
	USV_BF16_FC = 1,  /* inner products (and 1x1 convolutions of a 1x1 input) */
	USV_BF16_ALL = 2, /* also the other non-depthwise, non-Winograd convolutions */
};

/* How a model is built: the kernel choice belongs to the model, fixed when
 * it is built, and models built with different options may coexist.
 * winograd != 0 lets 3x3 stride-1 convolutions use Winograd (FP32) where
 * the CPU has AVX-512; bf16 is a USV_BF16_* level: those layers take BF16
 * operands with FP32 accumulation where the CPU has AVX512_BF16 (elsewhere
 * they stay FP32); out-of-range levels are clamped. The daemon's
 * model.precision bf16 is USV_BF16_FC. Start from usv_model_opts_default():
 * Winograd on, BF16 off. */
typedef struct usv_model_opts {
	int winograd;
	int bf16;
	/* 0: the file's meta.temperature; else (in [USV_TEMPERATURE_MIN,
	 * USV_TEMPERATURE_MAX], -EINVAL outside) it replaces it, e.g. 1 to
	 * evaluate a calibrated model uncalibrated. */
	float temperature;
} usv_model_opts;

usv_model_opts usv_model_opts_default(void);

/* Loads (mmap) and validates a model file: header/tensor size mismatches,
 * missing weights or an unknown layer are errors naming the file. opts
 * NULL: usv_model_opts_default(). */
int usv_model_load_ex(const char *path, const usv_model_opts *opts, usv_model **out, char *errbuf,
                      size_t errlen);
/* Builds a model from an in-memory netdef (copies what it needs). */
int usv_model_from_netdef_ex(const usv_netdef *def, const usv_model_opts *opts, usv_model **out,
                             char *errbuf, size_t errlen);
/* Same, but takes ownership of def (no copy of the weights); def is freed
 * by this call on failure and by usv_model_free() on success. */
int usv_model_from_netdef_take_ex(usv_netdef *def, const usv_model_opts *opts, usv_model **out,
                                  char *errbuf, size_t errlen);
/* The same three with the default options. */
int usv_model_load(const char *path, usv_model **out, char *errbuf, size_t errlen);
int usv_model_from_netdef(const usv_netdef *def, usv_model **out, char *errbuf, size_t errlen);
int usv_model_from_netdef_take(usv_netdef *def, usv_model **out, char *errbuf, size_t errlen);
void usv_model_free(usv_model *m);
const usv_model_meta *usv_model_get_meta(const usv_model *m);
/* The model's calibration temperature (meta.temperature; 1 when the file
 * has none). Its softmax output layer divides the logits by it; a caller
 * that applies the softmax itself uses usv_softmax_t(x, n, T). */
float usv_model_temperature(const usv_model *m);
int usv_model_n_layers(const usv_model *m);
const char *usv_model_layer_name(const usv_model *m, int i);
/* Definition of layer i (owned by the model), or NULL. */
const usv_layer_def *usv_model_layer(const usv_model *m, int i);
/* Name of the kernel chosen for layer i (e.g. "conv_im2col_sgemm"), or NULL. */
const char *usv_model_layer_impl(const usv_model *m, int i);
/* Output shape [C,H,W] of a named layer (per image). */
int usv_model_layer_shape(const usv_model *m, const char *layer, int chw[3]);

/* ---------------- sessions (one per thread) ---------------- */

typedef struct usv_session usv_session;

typedef struct usv_session_opts {
	int max_batch;         /* >= 1 */
	int threads;           /* threads of this session's runs; 0 = 1 (see below) */
	const char *end_layer; /* NULL = model's last layer; else stop after this layer */
	int keep_all;          /* 1: keep every layer's output for usv_session_blob() (no
	                        * buffer reuse, no ReLU fusion); 0: reuse buffers */
	int profile;           /* 1: time each layer (usv_session_layer_ms()) */
} usv_session_opts;

int usv_session_new(const usv_model *m, const usv_session_opts *opts, usv_session **out);
void usv_session_free(usv_session *s);
/* Runs n <= max_batch images. in: [n, C, H, W] network input (already
 * preprocessed). *out points into the session's buffer for the end layer,
 * valid until the next run; *out_chw receives its per-image size. */
int usv_session_run(usv_session *s, const float *in, int n, const float **out, int out_chw[3]);
/* Output of any layer computed by the last run ([n, C, H, W] of that run),
 * or NULL if unknown, not run, or its buffer was reused / a ReLU was fused
 * into it (always available for the end layer, and for every layer with
 * opts.keep_all). */
const float *usv_session_blob(const usv_session *s, const char *layer, int chw[3]);

/* Bytes of the activation buffers planned by usv_session_new() (without
 * the scratch) and their number (*nbufs may be NULL). */
size_t usv_session_memory(const usv_session *s, int *nbufs);

/* With opts.profile: milliseconds spent in layer i summed over all runs so
 * far (0 for layers fused into their producer); NULL without profiling. */
const double *usv_session_layer_ms(const usv_session *s);

/* Preprocess one RGB8 image of resize_w x resize_h (interleaved, rows top
 * down) into the network input [input_c, input_h, input_w]: centre crop at
 * (off_x, off_y) = -1,-1 for the centre, mirror if flip != 0. */
int usv_preprocess(const usv_model_meta *meta, const uint8_t *rgb, int off_x, int off_y, int flip,
                   float *dst);

/* Test-time and training views: view v (0 <= v < USV_MAX_VIEWS) crops at
 * (*off_x, *off_y) (-1, -1 = the centre) and mirrors when *flip: v / 2 is
 * the window (0 centre, 1 top left, 2 top right, 3 bottom left, 4 bottom
 * right), odd v are mirrored. usv_views_valid(n): n is 1, 2 or 10 (the
 * first n views). */
#define USV_MAX_VIEWS 10
void usv_preprocess_view(const usv_model_meta *meta, int v, int *off_x, int *off_y, int *flip);
int usv_views_valid(int n);

/* Softmax over n values in place (numerically stable). */
void usv_softmax(float *x, int n);
/* Softmax of x / t over n values in place (t > 0; t == 1 is usv_softmax()). */
void usv_softmax_t(float *x, int n, float t);
/* Indices of the k largest of n values, descending. */
void usv_topk(const float *x, int n, int k, int *idx);

/* Thread count of OpenBLAS in this process: a process setting, made once
 * by main() before any thread or session exists (the environment's
 * OPENBLAS_NUM_THREADS is overridden). The engine never changes it: not
 * usv_session_run(), not usv_head_train().
 *
 * The engine expects 1. Its parallelism is its own: with opts.threads =
 * T > 1 a session owns T - 1 worker threads (started by
 * usv_session_new(), sleeping between runs) and every kernel that calls
 * OpenBLAS splits its work over them (GEMMs by output rows or columns),
 * each thread calling OpenBLAS single-threaded, which scales better on
 * small GEMMs than OpenBLAS's own threading and lets sessions with
 * different thread counts run side by side. A larger value makes each of
 * those calls start OpenBLAS threads too (oversubscription); it exists for
 * benchmarks of OpenBLAS itself. The engine never sets OPENBLAS_CORETYPE:
 * OpenBLAS reads it when the library initialises, so it only works from
 * the environment of the process. */
void usv_nn_set_threads(int n);
/* The current OpenBLAS thread count (tests, diagnostics). */
int usv_nn_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
