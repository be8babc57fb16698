/*
 * NAME
 *	caffe_import.c - Caffe prototxt + caffemodel to usv_netdef
 *
 * DESCRIPTION
 *	See usv/import.h. Field numbers (from caffe.proto):
 *	  NetParameter: name 1, layers 2 (V1LayerParameter), input 3,
 *	    input_dim 4, input_shape 8 (BlobShape), layer 100 (LayerParameter)
 *	  LayerParameter: name 1, type 2 (string), bottom 3, top 4, blobs 7,
 *	    include 8, exclude 9, concat 104, convolution 106, dropout 108,
 *	    eltwise 110, inner_product 117, lrn 118, pooling 121, relu 123,
 *	    softmax 125, flatten 135, input 143
 *	  V1LayerParameter: bottom 2, top 3, name 4, type 5 (enum), blobs 6,
 *	    concat 9, convolution 10, dropout 12, inner_product 17, lrn 18,
 *	    pooling 19, eltwise 24, relu 30, softmax 39, include 32, exclude 33
 *	  BlobProto: num 1, channels 2, height 3, width 4, data 5, diff 6,
 *	    shape 7, double_data 8; BlobShape: dim 1
 *	  ConvolutionParameter: num_output 1, bias_term 2, pad 3,
 *	    kernel_size 4, group 5, stride 6, pad_h 9, pad_w 10, kernel_h 11,
 *	    kernel_w 12, stride_h 13, stride_w 14, dilation 18
 *	  PoolingParameter: pool 1, kernel_size 2, stride 3, pad 4, kernel_h 5,
 *	    kernel_w 6, stride_h 7, stride_w 8, pad_h 9, pad_w 10,
 *	    global_pooling 12
 *	  LRNParameter: local_size 1, alpha 2, beta 3, norm_region 4, k 5
 *	  InnerProductParameter: num_output 1, bias_term 2, axis 5, transpose 6
 *	  DropoutParameter: dropout_ratio 1; ConcatParameter: concat_dim 1,
 *	    axis 2; EltwiseParameter: operation 1, coeff 2; ReLUParameter:
 *	    negative_slope 1; SoftmaxParameter: axis 2; FlattenParameter:
 *	    axis 1, end_axis 2; InputParameter: shape 1; NetStateRule: phase 1
 *
 *	The network structure comes from the prototxt; only the blobs are read
 *	from the caffemodel, matched by layer name. Shapes are inferred while
 *	building, so every weight blob's size is checked against the layer.
 */
#include "usv/import.h"

#include "caffe_proto.h"
#include "import_util.h"
#include "window.h"
#include "usv/err.h"
#include "usv/npy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BLOBS 2048
#define BLOBNAME_MAX 256
#define MAX_PROTOTXT ((size_t)16 << 20)

/* V1LayerParameter.LayerType values we map. */
enum {
	V1_CONCAT = 3,
	V1_CONVOLUTION = 4,
	V1_DATA = 5,
	V1_DROPOUT = 6,
	V1_FLATTEN = 8,
	V1_INNER_PRODUCT = 14,
	V1_LRN = 15,
	V1_POOLING = 17,
	V1_RELU = 18,
	V1_SOFTMAX = 20,
	V1_SPLIT = 22,
	V1_ELTWISE = 25,
};

static const char *const v1_names[] = {"NONE",
                                       "ACCURACY",
                                       "BNLL",
                                       "CONCAT",
                                       "CONVOLUTION",
                                       "DATA",
                                       "DROPOUT",
                                       "EUCLIDEAN_LOSS",
                                       "FLATTEN",
                                       "HDF5_DATA",
                                       "HDF5_OUTPUT",
                                       "IM2COL",
                                       "IMAGE_DATA",
                                       "INFOGAIN_LOSS",
                                       "INNER_PRODUCT",
                                       "LRN",
                                       "MULTINOMIAL_LOGISTIC_LOSS",
                                       "POOLING",
                                       "RELU",
                                       "SIGMOID",
                                       "SOFTMAX",
                                       "SOFTMAX_LOSS",
                                       "SPLIT",
                                       "TANH",
                                       "WINDOW_DATA",
                                       "ELTWISE",
                                       "POWER",
                                       "SIGMOID_CROSS_ENTROPY_LOSS",
                                       "HINGE_LOSS",
                                       "MEMORY_DATA",
                                       "ARGMAX",
                                       "THRESHOLD",
                                       "DUMMY_DATA",
                                       "SLICE",
                                       "MVN",
                                       "ABSVAL",
                                       "SILENCE",
                                       "CONTRASTIVE_LOSS",
                                       "EXP",
                                       "DECONVOLUTION"};
static const int v1_vals[] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13,
                              14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                              28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39};

/* V1 enum -> the V2 type string. */
static const char *v1_to_type(int t)
{
	switch (t) {
	case V1_CONCAT:
		return "Concat";
	case V1_CONVOLUTION:
		return "Convolution";
	case V1_DATA:
		return "Data";
	case V1_DROPOUT:
		return "Dropout";
	case V1_FLATTEN:
		return "Flatten";
	case V1_INNER_PRODUCT:
		return "InnerProduct";
	case V1_LRN:
		return "LRN";
	case V1_POOLING:
		return "Pooling";
	case V1_RELU:
		return "ReLU";
	case V1_SOFTMAX:
		return "Softmax";
	case V1_SPLIT:
		return "Split";
	case V1_ELTWISE:
		return "Eltwise";
	}
	if (t >= 0 && t < (int)(sizeof v1_names / sizeof v1_names[0]))
		return v1_names[t];
	return "unknown";
}

/* A blob of the network during the build: its producer and shape. */
typedef struct blob {
	char name[BLOBNAME_MAX];
	char layer[USV_NAME_MAX]; /* producing usv layer ("data" for the input) */
	int c, h, w;
} blob;

/* A weight-carrying layer of the caffemodel. */
typedef struct wlayer {
	char name[USV_NAME_MAX];
	cp_msg msg;
	int v1;
} wlayer;

typedef struct ctx {
	const char *proto_path, *model_path;
	char *err;
	size_t errlen;
	blob *blobs;
	int nblobs;
	wlayer *wl;
	int nwl;
	usv_netdef *def;
	char last_layer[USV_NAME_MAX];
	int last_is_softmax;
} ctx;

static blob *find_blob(ctx *c, const char *name)
{
	for (int i = c->nblobs - 1; i >= 0; i--)
		if (!strcmp(c->blobs[i].name, name))
			return &c->blobs[i];
	return NULL;
}

/* Sets (adds or replaces) the producer of a Caffe blob. */
static int set_blob(ctx *c, const char *name, const char *layer, int ch, int h, int w)
{
	blob *b = find_blob(c, name);
	if (!b) {
		if (c->nblobs >= MAX_BLOBS)
			return usv_seterr(c->err, c->errlen, -USV_ERR_LIMIT,
			                  "%s: more than %d blobs", c->proto_path, MAX_BLOBS);
		b = &c->blobs[c->nblobs++];
		snprintf(b->name, sizeof b->name, "%s", name);
	}
	snprintf(b->layer, sizeof b->layer, "%s", layer);
	b->c = ch;
	b->h = h;
	b->w = w;
	return 0;
}

/* ---------------- caffemodel blobs ---------------- */

/* Reads a BlobProto: shape (4 dims, leading ones padded) and count. With
 * data != NULL, fills it (cap elements). */
static int blob_read(const cp_msg *b, int64_t shape[4], int *ndim, float *data, size_t cap,
                     size_t *count)
{
	int64_t dims[8];
	int nd = 0, rc;
	cp_msg sh;
	rc = cp_get_msg(b, 7, "shape", 0, &sh);
	if (rc == 0) {
		rc = cp_get_ints(&sh, 1, "dim", dims, 8, &nd);
		if (rc < 0)
			return rc;
	} else if (rc == -ENOENT) {
		static const int nums[4] = {1, 2, 3, 4};
		static const char *const names[4] = {"num", "channels", "height", "width"};
		for (int i = 0; i < 4; i++) {
			int64_t v = 1;
			rc = cp_get_int(b, nums[i], names[i], &v);
			if (rc < 0 && rc != -ENOENT)
				return rc;
			dims[i] = rc == -ENOENT ? 1 : v;
		}
		nd = 4;
	} else {
		return rc;
	}
	if (nd > 4) {
		/* leading ones may be dropped */
		int k = 0;
		while (nd - k > 4 && dims[k] == 1)
			k++;
		if (nd - k > 4)
			return -USV_ERR_UNSUPPORTED;
		memmove(dims, dims + k, (size_t)(nd - k) * sizeof dims[0]);
		nd -= k;
	}
	int64_t tot = 1;
	for (int i = 0; i < nd; i++) {
		if (dims[i] < 0 || dims[i] > ((int64_t)1 << 31))
			return -USV_ERR_FORMAT;
		tot *= dims[i];
		if (tot > ((int64_t)1 << 31))
			return -USV_ERR_LIMIT;
	}
	for (int i = 0; i < 4; i++)
		shape[i] = i < nd ? dims[i] : 1;
	*ndim = nd;
	size_t n;
	rc = cp_get_floats(b, 5, 8, "data", data, cap, &n);
	if (rc < 0)
		return rc;
	if ((int64_t)n != tot)
		return -USV_ERR_FORMAT;
	*count = n;
	return 0;
}

static const wlayer *find_wlayer(const ctx *c, const char *name)
{
	for (int i = 0; i < c->nwl; i++)
		if (!strcmp(c->wl[i].name, name))
			return &c->wl[i];
	return NULL;
}

/* Reads blob idx of a weight layer into a new float array. */
static int load_blob(ctx *c, const wlayer *w, int idx, float **out, size_t *n, int64_t shape[4],
                     int *ndim)
{
	cp_msg b;
	*out = NULL;
	int rc = cp_get_msg(&w->msg, w->v1 ? 6 : 7, "blobs", idx, &b);
	if (rc == -ENOENT)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: layer '%s' has no blob %d", c->model_path, w->name, idx);
	if (rc < 0)
		goto bad;
	size_t cnt;
	rc = blob_read(&b, shape, ndim, NULL, 0, &cnt);
	if (rc < 0)
		goto bad;
	float *d = malloc((cnt ? cnt : 1) * sizeof *d);
	if (!d)
		return usv_seterr(c->err, c->errlen, -ENOMEM, "%s: out of memory", c->model_path);
	rc = blob_read(&b, shape, ndim, d, cnt, &cnt);
	if (rc < 0) {
		free(d);
		goto bad;
	}
	for (size_t i = 0; i < cnt; i++)
		if (!isfinite(d[i])) {
			free(d);
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: layer '%s' blob %d: non-finite value", c->model_path,
			                  w->name, idx);
		}
	*out = d;
	*n = cnt;
	return 0;
bad:
	return usv_seterr(c->err, c->errlen, rc, "%s: layer '%s' blob %d: %s", c->model_path,
	                  w->name, idx,
	                  rc == -USV_ERR_FORMAT ? "malformed or truncated blob" : usv_strerror(rc));
}

/* Indexes the caffemodel's layers (V2 and V1) by name. */
static int index_model(ctx *c, const uint8_t *buf, size_t len)
{
	size_t pos = 0;
	cp_wfield f;
	int rc, cap = 0;
	while ((rc = cp_next(buf, len, &pos, &f)) > 0) {
		if (f.num != 100 && f.num != 2)
			continue;
		if (f.wire != CP_WIRE_LEN)
			return usv_seterr(
			    c->err, c->errlen, -USV_ERR_FORMAT,
			    "%s: malformed NetParameter (layer field of wire type %d)",
			    c->model_path, f.wire);
		if (c->nwl >= USV_MAX_LAYERS * 4)
			return usv_seterr(c->err, c->errlen, -USV_ERR_LIMIT, "%s: too many layers",
			                  c->model_path);
		if (c->nwl == cap) {
			cap = cap ? cap * 2 : 64;
			wlayer *n = realloc(c->wl, (size_t)cap * sizeof *n);
			if (!n)
				return -ENOMEM;
			c->wl = n;
		}
		wlayer *w = &c->wl[c->nwl];
		memset(w, 0, sizeof *w);
		w->msg = cp_msg_bin(f.data, f.len);
		w->v1 = f.num == 2;
		rc = cp_check(f.data, f.len);
		if (rc < 0)
			return usv_seterr(c->err, c->errlen, rc,
			                  "%s: malformed or truncated layer message #%d",
			                  c->model_path, c->nwl + 1);
		rc = cp_get_str(&w->msg, w->v1 ? 4 : 1, "name", 0, w->name, sizeof w->name);
		if (rc == -ENOENT)
			continue; /* unnamed layers cannot be matched */
		if (rc < 0)
			return usv_seterr(c->err, c->errlen, rc,
			                  "%s: layer #%d: bad or too long name", c->model_path,
			                  c->nwl + 1);
		c->nwl++;
	}
	if (rc < 0)
		return usv_seterr(
		    c->err, c->errlen, rc,
		    "%s: malformed or truncated caffemodel (protobuf error at byte %zu)",
		    c->model_path, pos);
	return 0;
}

/* ---------------- prototxt layers ---------------- */

typedef struct player {
	cp_msg m;
	int v1;
	char name[USV_NAME_MAX];
	char type[64];
	int nbottom, ntop;
	char bottom[USV_MAX_INPUTS][BLOBNAME_MAX];
	char top[BLOBNAME_MAX];
} player;

static int perr(ctx *c, int code, const player *L, const char *fmt, const char *what)
{
	return usv_seterr(c->err, c->errlen, code, "%s: layer '%s' (%s): %s%s", c->proto_path,
	                  L->name, L->type, fmt, what ? what : "");
}

/* Param sub-message (V2 number, V1 number, name); absent -> empty. */
static cp_msg param(const player *L, int n2, int n1, const char *name)
{
	cp_msg p;
	if (cp_get_msg(&L->m, L->v1 ? n1 : n2, name, 0, &p) < 0)
		p = cp_msg_bin((const uint8_t *)"", 0);
	return p;
}

static int opt_int(const cp_msg *m, int num, const char *name, int64_t def, int64_t *v)
{
	int rc = cp_get_int(m, num, name, v);
	if (rc == -ENOENT) {
		*v = def;
		return 0;
	}
	return rc;
}

static int opt_float(const cp_msg *m, int num, const char *name, float def, float *v)
{
	int rc = cp_get_float(m, num, name, v);
	if (rc == -ENOENT) {
		*v = def;
		return 0;
	}
	return rc;
}

/* kernel / stride / pad: repeated value (1 or 2) or _h/_w fields. */
static int hw_param(const cp_msg *p, int nrep, const char *rep, int nh, const char *hn, int nw,
                    const char *wn, int64_t def, int64_t *h, int64_t *w)
{
	int64_t v[4];
	int n, rc;
	rc = cp_get_ints(p, nrep, rep, v, 4, &n);
	if (rc < 0)
		return rc;
	if (n == 1) {
		*h = *w = v[0];
	} else if (n == 2) {
		*h = v[0];
		*w = v[1];
	} else if (n == 0) {
		*h = *w = def;
	} else {
		return -USV_ERR_UNSUPPORTED;
	}
	if ((rc = opt_int(p, nh, hn, *h, h)) < 0 || (rc = opt_int(p, nw, wn, *w, w)) < 0)
		return rc;
	return 0;
}

static int read_player(ctx *c, const cp_msg *m, int v1, player *L)
{
	memset(L, 0, sizeof *L);
	L->m = *m;
	L->v1 = v1;
	int rc = cp_get_str(m, v1 ? 4 : 1, "name", 0, L->name, sizeof L->name);
	if (rc < 0)
		return usv_seterr(c->err, c->errlen, rc == -ENOENT ? -USV_ERR_FORMAT : rc,
		                  "%s: a layer has %s", c->proto_path,
		                  rc == -ENOENT ? "no name" : "a bad or too long name");
	if (v1) {
		int t;
		rc = cp_get_enum(m, 5, "type", v1_names, v1_vals,
		                 (int)(sizeof v1_vals / sizeof v1_vals[0]), &t);
		if (rc < 0)
			return usv_seterr(c->err, c->errlen,
			                  rc == -ENOENT ? -USV_ERR_FORMAT : -USV_ERR_UNSUPPORTED,
			                  "%s: layer '%s': missing or unknown layer type",
			                  c->proto_path, L->name);
		snprintf(L->type, sizeof L->type, "%s", v1_to_type(t));
	} else {
		rc = cp_get_str(m, 2, "type", 0, L->type, sizeof L->type);
		if (rc < 0)
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: layer '%s': missing or bad type", c->proto_path,
			                  L->name);
	}
	int nb = cp_count(m, v1 ? 2 : 3, "bottom");
	int nt = cp_count(m, v1 ? 3 : 4, "top");
	if (nb < 0 || nt < 0)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT, "%s: layer '%s': malformed",
		                  c->proto_path, L->name);
	if (nb > USV_MAX_INPUTS)
		return perr(c, -USV_ERR_LIMIT, L, "too many bottoms", NULL);
	if (nt > 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "more than one top", NULL);
	for (int i = 0; i < nb; i++)
		if ((rc = cp_get_str(m, v1 ? 2 : 3, "bottom", i, L->bottom[i], BLOBNAME_MAX)) < 0)
			return perr(c, -USV_ERR_FORMAT, L, "bad bottom name", NULL);
	if (nt == 1 && (rc = cp_get_str(m, v1 ? 3 : 4, "top", 0, L->top, BLOBNAME_MAX)) < 0)
		return perr(c, -USV_ERR_FORMAT, L, "bad top name", NULL);
	L->nbottom = nb;
	L->ntop = nt;
	return 0;
}

/* 1 if the layer is excluded from the TEST phase. */
static int excluded_from_test(const player *L)
{
	static const char *const ph[] = {"TRAIN", "TEST"};
	static const int phv[] = {0, 1};
	cp_msg r;
	int phase;
	int n_inc = cp_count(&L->m, L->v1 ? 32 : 8, "include");
	for (int i = 0; i < n_inc; i++)
		if (cp_get_msg(&L->m, L->v1 ? 32 : 8, "include", i, &r) == 0 &&
		    cp_get_enum(&r, 1, "phase", ph, phv, 2, &phase) == 0 && phase == 0)
			return 1;
	int n_exc = cp_count(&L->m, L->v1 ? 33 : 9, "exclude");
	for (int i = 0; i < n_exc; i++)
		if (cp_get_msg(&L->m, L->v1 ? 33 : 9, "exclude", i, &r) == 0 &&
		    cp_get_enum(&r, 1, "phase", ph, phv, 2, &phase) == 0 && phase == 1)
			return 1;
	return 0;
}

/* Copies a weight blob into the netdef after checking its size. */
static int put_weights(ctx *c, const player *L, int idx, const char *suffix, int64_t want, int ndim,
                       const int64_t *shape)
{
	const wlayer *w = find_wlayer(c, L->name);
	if (!w)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: no weights for layer '%s' in the caffemodel", c->model_path,
		                  L->name);
	float *d;
	size_t n;
	int64_t bs[4];
	int bnd;
	int rc = load_blob(c, w, idx, &d, &n, bs, &bnd);
	if (rc < 0)
		return rc;
	if ((int64_t)n != want) {
		free(d);
		return usv_seterr(
		    c->err, c->errlen, -USV_ERR_FORMAT,
		    "%s: layer '%s' blob %d has %zu values, the prototxt implies %lld",
		    c->model_path, L->name, idx, n, (long long)want);
	}
	char tn[USV_NAME_MAX + 8];
	snprintf(tn, sizeof tn, "%s.%s", L->name, suffix);
	rc = usv_netdef_add_tensor(c->def, tn, ndim, shape, d);
	free(d);
	if (rc < 0)
		return usv_seterr(c->err, c->errlen, rc, "%s: layer '%s': cannot add tensor: %s",
		                  c->model_path, L->name, usv_strerror(rc));
	return 0;
}

/* Output extent with a symmetric pad p: Caffe's rule (window.h). */
static int out_dim(int64_t in, int64_t k, int64_t s, int64_t p, int ceil_mode)
{
	return (int)usv__window_out(in, k, s, p, p, ceil_mode);
}

static int add_layer(ctx *c, const player *L, usv_layer_def *d, int ch, int h, int w)
{
	int rc = usv_netdef_add_layer(c->def, d);
	if (rc < 0)
		return perr(c, rc, L, "rejected by the engine: ", usv_strerror(rc));
	snprintf(c->last_layer, sizeof c->last_layer, "%s", d->name);
	c->last_is_softmax = d->type == USV_LAYER_SOFTMAX;
	return set_blob(c, L->ntop ? L->top : L->name, d->name, ch, h, w);
}

/*
 * What a layer builder starts from: the layer, its definition so far
 * (name, inputs, group 1) and its bottom blobs, in[0] being C x H x W.
 */
typedef struct lbuild {
	ctx *c;
	const player *L;
	usv_layer_def d;
	const blob *in[USV_MAX_INPUTS];
	int C, H, W;
} lbuild;

/* Caffe type Convolution. */
static int build_conv(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 106, 10, "convolution_param");
	int64_t no, bias, kh, kw, sh, sw, ph, pw, g;
	int64_t dil[4];
	int ndil;
	if ((rc = opt_int(&p, 1, "num_output", 0, &no)) < 0 ||
	    (rc = opt_int(&p, 2, "bias_term", 1, &bias)) < 0 ||
	    (rc = opt_int(&p, 5, "group", 1, &g)) < 0 ||
	    (rc = hw_param(&p, 4, "kernel_size", 11, "kernel_h", 12, "kernel_w", 0, &kh, &kw)) <
	        0 ||
	    (rc = hw_param(&p, 6, "stride", 13, "stride_h", 14, "stride_w", 1, &sh, &sw)) < 0 ||
	    (rc = hw_param(&p, 3, "pad", 9, "pad_h", 10, "pad_w", 0, &ph, &pw)) < 0 ||
	    (rc = cp_get_ints(&p, 18, "dilation", dil, 4, &ndil)) < 0)
		return perr(c, rc, L, "bad convolution_param", NULL);
	for (int i = 0; i < ndil; i++)
		if (dil[i] != 1)
			return perr(c, -USV_ERR_UNSUPPORTED, L, "dilation is not supported", NULL);
	if (no < 1 || no > 65536 || kh < 1 || kw < 1 || kh > 1024 || kw > 1024 || sh < 1 ||
	    sw < 1 || sh > 1024 || sw > 1024 || ph < 0 || pw < 0 || ph > 1024 || pw > 1024 ||
	    g < 1 || C % g || no % g)
		return perr(c, -USV_ERR_FORMAT, L, "bad convolution parameters", NULL);
	int oh = out_dim(H, kh, sh, ph, 0), ow = out_dim(W, kw, sw, pw, 0);
	if (oh < 1 || ow < 1)
		return perr(c, -USV_ERR_FORMAT, L, "kernel larger than the padded input", NULL);
	d.type = USV_LAYER_CONV;
	d.num_output = (int)no;
	d.kernel_h = (int)kh;
	d.kernel_w = (int)kw;
	d.stride_h = (int)sh;
	d.stride_w = (int)sw;
	d.pad_t = d.pad_b = (int)ph;
	d.pad_l = d.pad_r = (int)pw;
	d.pad_mode = USV_PAD_EXPLICIT;
	d.group = (int)g;
	d.has_bias = bias != 0;
	int64_t ws[4] = {no, C / g, kh, kw};
	if ((rc = put_weights(c, L, 0, "weight", no * (C / g) * kh * kw, 4, ws)) < 0)
		return rc;
	if (d.has_bias) {
		int64_t bs[1] = {no};
		if ((rc = put_weights(c, L, 1, "bias", no, 1, bs)) < 0)
			return rc;
	}
	return add_layer(c, L, &d, (int)no, oh, ow);
}

/* Caffe type InnerProduct. */
static int build_inner_product(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 117, 17, "inner_product_param");
	int64_t no, bias, axis, tr;
	if ((rc = opt_int(&p, 1, "num_output", 0, &no)) < 0 ||
	    (rc = opt_int(&p, 2, "bias_term", 1, &bias)) < 0 ||
	    (rc = opt_int(&p, 5, "axis", 1, &axis)) < 0 ||
	    (rc = opt_int(&p, 6, "transpose", 0, &tr)) < 0)
		return perr(c, rc, L, "bad inner_product_param", NULL);
	if (axis != 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "axis other than 1", NULL);
	if (tr)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "transpose is not supported", NULL);
	if (no < 1 || no > (1 << 20))
		return perr(c, -USV_ERR_FORMAT, L, "bad num_output", NULL);
	int64_t nin = (int64_t)C * H * W;
	d.type = USV_LAYER_FC;
	d.num_output = (int)no;
	d.has_bias = bias != 0;
	int64_t ws[2] = {no, nin};
	if ((rc = put_weights(c, L, 0, "weight", no * nin, 2, ws)) < 0)
		return rc;
	if (d.has_bias) {
		int64_t bs[1] = {no};
		if ((rc = put_weights(c, L, 1, "bias", no, 1, bs)) < 0)
			return rc;
	}
	return add_layer(c, L, &d, (int)no, 1, 1);
}

/* Caffe type Pooling. */
static int build_pooling(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	static const char *const pn[] = {"MAX", "AVE", "STOCHASTIC"};
	static const int pv[] = {0, 1, 2};
	cp_msg p = param(L, 121, 19, "pooling_param");
	int pool = 0;
	int64_t kh, kw, sh, sw, ph, pw, glob;
	rc = cp_get_enum(&p, 1, "pool", pn, pv, 3, &pool);
	if (rc < 0 && rc != -ENOENT)
		return perr(c, rc, L, "bad pooling method", NULL);
	if ((rc = hw_param(&p, 2, "kernel_size", 5, "kernel_h", 6, "kernel_w", 0, &kh, &kw)) < 0 ||
	    (rc = hw_param(&p, 3, "stride", 7, "stride_h", 8, "stride_w", 1, &sh, &sw)) < 0 ||
	    (rc = hw_param(&p, 4, "pad", 9, "pad_h", 10, "pad_w", 0, &ph, &pw)) < 0 ||
	    (rc = opt_int(&p, 12, "global_pooling", 0, &glob)) < 0)
		return perr(c, rc, L, "bad pooling_param", NULL);
	if (pool != 0 && pool != 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "only MAX and AVE pooling", NULL);
	if (glob) {
		if (pool != 1 && !(H == 1 && W == 1))
			return perr(c, -USV_ERR_UNSUPPORTED, L,
			            "global MAX pooling is not supported", NULL);
		d.type = USV_LAYER_GLOBAL_AVEPOOL;
		return add_layer(c, L, &d, C, 1, 1);
	}
	if (kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 || pw < 0 || kh > 1024 || kw > 1024 ||
	    sh > 1024 || sw > 1024 || ph >= kh || pw >= kw)
		return perr(c, -USV_ERR_FORMAT, L, "bad pooling parameters", NULL);
	int oh = out_dim(H, kh, sh, ph, 1), ow = out_dim(W, kw, sw, pw, 1);
	if (oh < 1 || ow < 1)
		return perr(c, -USV_ERR_FORMAT, L, "kernel larger than the padded input", NULL);
	d.type = pool == 0 ? USV_LAYER_MAXPOOL : USV_LAYER_AVEPOOL;
	d.kernel_h = (int)kh;
	d.kernel_w = (int)kw;
	d.stride_h = (int)sh;
	d.stride_w = (int)sw;
	d.pad_t = d.pad_b = (int)ph;
	d.pad_l = d.pad_r = (int)pw;
	d.ceil_mode = 1;
	return add_layer(c, L, &d, C, oh, ow);
}

/* Caffe type ReLU. */
static int build_relu(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 123, 30, "relu_param");
	float slope;
	if ((rc = opt_float(&p, 1, "negative_slope", 0, &slope)) < 0)
		return perr(c, rc, L, "bad relu_param", NULL);
	if (slope != 0)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "leaky ReLU is not supported", NULL);
	d.type = USV_LAYER_RELU;
	return add_layer(c, L, &d, C, H, W);
}

/* Caffe type LRN. */
static int build_lrn(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	static const char *const rn[] = {"ACROSS_CHANNELS", "WITHIN_CHANNEL"};
	static const int rv[] = {0, 1};
	cp_msg p = param(L, 118, 18, "lrn_param");
	int64_t ls;
	float a, b, k;
	int region = 0;
	if ((rc = opt_int(&p, 1, "local_size", 5, &ls)) < 0 ||
	    (rc = opt_float(&p, 2, "alpha", 1, &a)) < 0 ||
	    (rc = opt_float(&p, 3, "beta", 0.75f, &b)) < 0 ||
	    (rc = opt_float(&p, 5, "k", 1, &k)) < 0)
		return perr(c, rc, L, "bad lrn_param", NULL);
	rc = cp_get_enum(&p, 4, "norm_region", rn, rv, 2, &region);
	if (rc < 0 && rc != -ENOENT)
		return perr(c, rc, L, "bad norm_region", NULL);
	if (ls < 1 || ls > 255 || !(ls & 1))
		return perr(c, -USV_ERR_FORMAT, L, "local_size must be odd", NULL);
	if (region != 0) {
		d.type = USV_LAYER_LRN_WITHIN;
	} else {
		d.type = USV_LAYER_LRN;
	}
	d.local_size = (int)ls;
	d.alpha = a;
	d.beta = b;
	d.k = k;
	return add_layer(c, L, &d, C, H, W);
}

/* Caffe type Softmax. */
static int build_softmax(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 125, 39, "softmax_param");
	int64_t axis;
	if ((rc = opt_int(&p, 2, "axis", 1, &axis)) < 0)
		return perr(c, rc, L, "bad softmax_param", NULL);
	if (axis != 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "axis other than 1", NULL);
	d.type = USV_LAYER_SOFTMAX;
	return add_layer(c, L, &d, C, H, W);
}

/* Caffe type Dropout. */
static int build_dropout(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 108, 12, "dropout_param");
	float r;
	if ((rc = opt_float(&p, 1, "dropout_ratio", 0.5f, &r)) < 0)
		return perr(c, rc, L, "bad dropout_param", NULL);
	d.type = USV_LAYER_DROPOUT;
	d.dropout_ratio = r;
	return add_layer(c, L, &d, C, H, W);
}

/* Caffe type Flatten. */
static int build_flatten(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 135, 0, "flatten_param");
	int64_t a, e;
	if ((rc = opt_int(&p, 1, "axis", 1, &a)) < 0 ||
	    (rc = opt_int(&p, 2, "end_axis", -1, &e)) < 0)
		return perr(c, rc, L, "bad flatten_param", NULL);
	if (a != 1 || (e != -1 && e != 3))
		return perr(c, -USV_ERR_UNSUPPORTED, L, "only axis 1 to the end", NULL);
	d.type = USV_LAYER_FLATTEN;
	return add_layer(c, L, &d, C * H * W, 1, 1);
}

/* Caffe type Concat. */
static int build_concat(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	const blob *const *in = lb->in;
	int H = lb->H, W = lb->W;
	int rc;
	cp_msg p = param(L, 104, 9, "concat_param");
	int64_t axis, cd;
	if ((rc = opt_int(&p, 1, "concat_dim", 1, &cd)) < 0 ||
	    (rc = opt_int(&p, 2, "axis", cd, &axis)) < 0)
		return perr(c, rc, L, "bad concat_param", NULL);
	if (axis != 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "only axis 1 (channels)", NULL);
	int tc = 0;
	for (int i = 0; i < L->nbottom; i++) {
		if (in[i]->h != H || in[i]->w != W)
			return perr(c, -USV_ERR_FORMAT, L, "inputs differ in size", NULL);
		tc += in[i]->c;
	}
	d.type = USV_LAYER_CONCAT;
	return add_layer(c, L, &d, tc, H, W);
}

/* Caffe type Eltwise. */
static int build_eltwise(lbuild *lb)
{
	ctx *c = lb->c;
	const player *L = lb->L;
	usv_layer_def d = lb->d;
	const blob *const *in = lb->in;
	int C = lb->C, H = lb->H, W = lb->W;
	int rc;
	static const char *const on[] = {"PROD", "SUM", "MAX"};
	static const int ov[] = {0, 1, 2};
	cp_msg p = param(L, 110, 24, "eltwise_param");
	int op = 1;
	rc = cp_get_enum(&p, 1, "operation", on, ov, 3, &op);
	if (rc < 0 && rc != -ENOENT)
		return perr(c, rc, L, "bad eltwise operation", NULL);
	if (op != 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "only Eltwise SUM", NULL);
	float coeff[USV_MAX_INPUTS];
	size_t nco;
	rc = cp_get_floats(&p, 2, 0, "coeff", coeff, USV_MAX_INPUTS, &nco);
	if (rc < 0)
		return perr(c, rc, L, "bad coeff", NULL);
	for (size_t i = 0; i < nco; i++)
		if (coeff[i] != 1.0f)
			return perr(c, -USV_ERR_UNSUPPORTED, L, "coefficients other than 1", NULL);
	for (int i = 0; i < L->nbottom; i++)
		if (in[i]->c != C || in[i]->h != H || in[i]->w != W)
			return perr(c, -USV_ERR_FORMAT, L, "inputs differ in shape", NULL);
	d.type = USV_LAYER_ADD;
	return add_layer(c, L, &d, C, H, W);
}

static const struct {
	const char *type;
	int (*build)(lbuild *lb);
} builders[] = {
    {"Convolution", build_conv}, {"InnerProduct", build_inner_product},
    {"Pooling", build_pooling},  {"ReLU", build_relu},
    {"LRN", build_lrn},          {"Softmax", build_softmax},
    {"Dropout", build_dropout},  {"Flatten", build_flatten},
    {"Concat", build_concat},    {"Eltwise", build_eltwise},
};

/* One layer: its bottoms, then the builder of its type. */
static int build_layer(ctx *c, const player *L)
{
	lbuild b;
	memset(&b, 0, sizeof b);
	b.c = c;
	b.L = L;
	snprintf(b.d.name, sizeof b.d.name, "%s", L->name);
	b.d.group = 1;
	for (int i = 0; i < L->nbottom; i++) {
		b.in[i] = find_blob(c, L->bottom[i]);
		if (!b.in[i])
			return perr(c, -USV_ERR_FORMAT, L, "unknown bottom blob ", L->bottom[i]);
		snprintf(b.d.inputs[i], sizeof b.d.inputs[i], "%s", b.in[i]->layer);
	}
	b.d.n_inputs = L->nbottom;
	if (L->nbottom < 1)
		return perr(c, -USV_ERR_FORMAT, L, "no bottom", NULL);
	if (strcmp(L->type, "Concat") && strcmp(L->type, "Eltwise") && L->nbottom != 1)
		return perr(c, -USV_ERR_UNSUPPORTED, L, "more than one bottom", NULL);
	b.C = b.in[0]->c;
	b.H = b.in[0]->h;
	b.W = b.in[0]->w;
	for (size_t i = 0; i < sizeof builders / sizeof builders[0]; i++)
		if (!strcmp(L->type, builders[i].type))
			return builders[i].build(&b);
	return perr(c, -USV_ERR_UNSUPPORTED, L, "unsupported layer type", NULL);
}

/* Network input: `input` + `input_shape` / `input_dim`. */
static int net_input(ctx *c, const cp_msg *net, int64_t dims[4], char *name, int *found)
{
	*found = 0;
	int ni = cp_count(net, 3, "input");
	if (ni <= 0)
		return 0;
	if (ni > 1)
		return usv_seterr(c->err, c->errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: more than one network input", c->proto_path);
	if (cp_get_str(net, 3, "input", 0, name, BLOBNAME_MAX) < 0)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT, "%s: bad input name",
		                  c->proto_path);
	int n = 0, rc;
	cp_msg sh;
	if (cp_get_msg(net, 8, "input_shape", 0, &sh) == 0)
		rc = cp_get_ints(&sh, 1, "dim", dims, 4, &n);
	else
		rc = cp_get_ints(net, 4, "input_dim", dims, 4, &n);
	if (rc < 0 || n != 4)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: input needs 4 dimensions (input_shape or input_dim)",
		                  c->proto_path);
	*found = 1;
	return 0;
}

static int check_dims(ctx *c, const int64_t dims[4])
{
	if (dims[1] < 1 || dims[1] > 64 || dims[2] < 1 || dims[2] > 4096 || dims[3] < 1 ||
	    dims[3] > 4096)
		return usv_seterr(c->err, c->errlen, -USV_ERR_LIMIT,
		                  "%s: input shape %lldx%lldx%lld out of range", c->proto_path,
		                  (long long)dims[1], (long long)dims[2], (long long)dims[3]);
	return 0;
}

/* Reads the mean: .npy or BlobProto; [C,H,W] float into *mean. */
static int read_mean(ctx *c, const char *path, int want_c, float **mean, int *h, int *w)
{
	*mean = NULL;
	size_t pl = strlen(path);
	if (pl >= 4 && !strcmp(path + pl - 4, ".npy")) {
		float *d;
		int nd;
		int64_t sh[USV_NPY_MAX_DIMS];
		int rc = usv_npy_read(path, &d, &nd, sh, c->err, c->errlen);
		if (rc < 0)
			return rc;
		if (nd == 4 && sh[0] == 1) {
			memmove(sh, sh + 1, 3 * sizeof sh[0]);
			nd = 3;
		}
		if (nd != 3 || sh[0] != want_c || sh[1] < 1 || sh[2] < 1 || sh[1] > 4096 ||
		    sh[2] > 4096) {
			free(d);
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: mean must be [%d, H, W]", path, want_c);
		}
		*mean = d;
		*h = (int)sh[1];
		*w = (int)sh[2];
		return 0;
	}
	uint8_t *buf;
	size_t len;
	int rc = imp_read_file(path, (size_t)256 << 20, &buf, &len, c->err, c->errlen);
	if (rc < 0)
		return rc;
	cp_msg b = cp_msg_bin(buf, len);
	int64_t shape[4];
	int nd;
	size_t n;
	rc = cp_check(buf, len);
	if (rc == 0)
		rc = blob_read(&b, shape, &nd, NULL, 0, &n);
	if (rc == 0 && (shape[0] != 1 || shape[1] != want_c || shape[2] > 4096 || shape[3] > 4096))
		rc = -USV_ERR_FORMAT;
	float *d = NULL;
	if (rc == 0) {
		d = malloc(n * sizeof *d);
		if (!d)
			rc = -ENOMEM;
	}
	if (rc == 0)
		rc = blob_read(&b, shape, &nd, d, n, &n);
	free(buf);
	if (rc < 0) {
		free(d);
		return usv_seterr(c->err, c->errlen, rc,
		                  "%s: not a BlobProto mean of shape [1, %d, H, W] (%s)", path,
		                  want_c, usv_strerror(rc));
	}
	*mean = d;
	*h = (int)shape[2];
	*w = (int)shape[3];
	return 0;
}

/* --arch: fill the built-in network with the caffemodel's blobs. */
static int fill_builtin(ctx *c, const char *arch)
{
	const wlayer *fc8 = find_wlayer(c, "fc8");
	if (!fc8)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: no layer 'fc8' (needed for --arch %s)", c->model_path, arch);
	float *d;
	size_t n;
	int64_t sh[4];
	int nd;
	int rc = load_blob(c, fc8, 0, &d, &n, sh, &nd);
	if (rc < 0)
		return rc;
	free(d);
	/* [classes, in] (V2) or [1, 1, classes, in] (V1) */
	int64_t ncls = nd >= 2 ? sh[nd - 2] : 0;
	if (ncls < 1 || ncls > USV_MAX_LABELS)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: fc8 weights of unexpected shape", c->model_path);
	rc = usv_netdef_builtin(arch, (int)ncls, 1, &c->def);
	if (rc < 0)
		return usv_seterr(c->err, c->errlen, rc, "unknown or unavailable --arch '%s': %s",
		                  arch, usv_strerror(rc));
	int filled = 0;
	for (int i = 0; i < c->nwl; i++) {
		const wlayer *w = &c->wl[i];
		int nb = cp_count(&w->msg, w->v1 ? 6 : 7, "blobs");
		if (nb <= 0)
			continue;
		if (nb > 2)
			return usv_seterr(c->err, c->errlen, -USV_ERR_UNSUPPORTED,
			                  "%s: layer '%s' has %d blobs", c->model_path, w->name,
			                  nb);
		for (int b = 0; b < nb; b++) {
			char tn[USV_NAME_MAX + 8];
			snprintf(tn, sizeof tn, "%s.%s", w->name, b ? "bias" : "weight");
			int tnd;
			int64_t tsh[4];
			if (!usv_netdef_tensor(c->def, tn, &tnd, tsh))
				return usv_seterr(
				    c->err, c->errlen, -USV_ERR_FORMAT,
				    "%s: layer '%s' does not exist in the built-in %s",
				    c->model_path, w->name, arch);
			int64_t want = 1;
			for (int k = 0; k < tnd; k++)
				want *= tsh[k];
			if ((rc = load_blob(c, w, b, &d, &n, sh, &nd)) < 0)
				return rc;
			if ((int64_t)n != want) {
				free(d);
				return usv_seterr(
				    c->err, c->errlen, -USV_ERR_FORMAT,
				    "%s: layer '%s' blob %d has %zu values, %s has %lld",
				    c->model_path, w->name, b, n, arch, (long long)want);
			}
			rc = usv_netdef_add_tensor(c->def, tn, tnd, tsh, d);
			free(d);
			if (rc < 0)
				return usv_seterr(c->err, c->errlen, rc, "%s: %s: %s",
				                  c->model_path, tn, usv_strerror(rc));
			filled++;
		}
	}
	if (!filled)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT, "%s: no weights found",
		                  c->model_path);
	/* every weighted layer of the built-in must have been filled */
	for (int i = 0; i < usv_netdef_n_layers(c->def); i++) {
		const usv_layer_def *l = usv_netdef_layer(c->def, i);
		if (l->type != USV_LAYER_CONV && l->type != USV_LAYER_FC)
			continue;
		const wlayer *w = find_wlayer(c, l->name);
		if (!w || cp_count(&w->msg, w->v1 ? 6 : 7, "blobs") < 1 + (l->has_bias != 0))
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: no weights for layer '%s' of the built-in %s",
			                  c->model_path, l->name, arch);
	}
	return 0;
}

int usv_import_caffe(const char *prototxt, const char *caffemodel, const char *arch,
                     const char *mean_path, usv_netdef **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	ctx c = {.proto_path = prototxt, .model_path = caffemodel, .err = errbuf, .errlen = errlen};
	uint8_t *ptxt = NULL, *model = NULL;
	size_t plen, mlen;
	cp_text_msg *net_t = NULL;
	float *mean = NULL;
	int rc;

	c.blobs = calloc(MAX_BLOBS, sizeof *c.blobs);
	if (!c.blobs)
		return usv_seterr(errbuf, errlen, -ENOMEM, "out of memory");
	if ((rc = imp_read_file(prototxt, MAX_PROTOTXT, &ptxt, &plen, errbuf, errlen)) < 0)
		goto done;
	char perr_[USV_ERRBUF];
	rc = cp_text_parse((const char *)ptxt, plen, &net_t, perr_, sizeof perr_);
	if (rc < 0) {
		usv_seterr(errbuf, errlen, rc, "%s: %s", prototxt, perr_);
		goto done;
	}
	if ((rc = imp_read_file(caffemodel, USV_IMPORT_MAX_FILE, &model, &mlen, errbuf, errlen)) <
	    0)
		goto done;
	if ((rc = index_model(&c, model, mlen)) < 0)
		goto done;
	if (c.nwl == 0) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no layers in the caffemodel",
		                caffemodel);
		goto done;
	}

	cp_msg net = cp_msg_text(net_t);
	int n2 = cp_count(&net, 100, "layer"), n1 = cp_count(&net, 2, "layers");
	if (n2 > 0 && n1 > 0) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: mixes 'layer' and 'layers'",
		                prototxt);
		goto done;
	}
	int v1 = n1 > 0, nl = v1 ? n1 : n2;
	if (nl <= 0 || nl > USV_MAX_LAYERS) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no layers (or too many)",
		                prototxt);
		goto done;
	}
	int64_t dims[4];
	char inname[BLOBNAME_MAX];
	int have_input;
	if ((rc = net_input(&c, &net, dims, inname, &have_input)) < 0)
		goto done;

	if (arch) {
		if ((rc = fill_builtin(&c, arch)) < 0)
			goto done;
	} else {
		if ((rc = usv_netdef_new(&c.def)) < 0) {
			usv_seterr(errbuf, errlen, rc, "out of memory");
			goto done;
		}
		if (have_input) {
			if ((rc = check_dims(&c, dims)) < 0 ||
			    (rc = set_blob(&c, inname, "data", (int)dims[1], (int)dims[2],
			                   (int)dims[3])) < 0)
				goto done;
		}
		for (int i = 0; i < nl; i++) {
			cp_msg lm;
			player L;
			if ((rc = cp_get_msg(&net, v1 ? 2 : 100, v1 ? "layers" : "layer", i, &lm)) <
			    0) {
				usv_seterr(errbuf, errlen, rc, "%s: layer #%d is not a message",
				           prototxt, i + 1);
				goto done;
			}
			if ((rc = read_player(&c, &lm, v1, &L)) < 0)
				goto done;
			if (excluded_from_test(&L))
				continue;
			if (!strcmp(L.type, "Input")) {
				cp_msg ip = param(&L, 143, 0, "input_param"), sh;
				int n = 0;
				if (have_input || L.ntop != 1 ||
				    cp_get_msg(&ip, 1, "shape", 0, &sh) < 0 ||
				    cp_get_ints(&sh, 1, "dim", dims, 4, &n) < 0 || n != 4) {
					rc = perr(&c, -USV_ERR_UNSUPPORTED, &L,
					          "need one input of 4 dimensions", NULL);
					goto done;
				}
				have_input = 1;
				if ((rc = check_dims(&c, dims)) < 0 ||
				    (rc = set_blob(&c, L.top, "data", (int)dims[1], (int)dims[2],
				                   (int)dims[3])) < 0)
					goto done;
				continue;
			}
			if (!have_input) {
				rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
				                "%s: no network input before layer '%s'", prototxt,
				                L.name);
				goto done;
			}
			if (!strcmp(L.name, "data")) {
				rc = perr(&c, -USV_ERR_UNSUPPORTED, &L,
				          "the name 'data' is reserved for the input", NULL);
				goto done;
			}
			if ((rc = build_layer(&c, &L)) < 0)
				goto done;
		}
		if (!c.last_layer[0]) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no layers", prototxt);
			goto done;
		}
	}

	usv_model_meta meta;
	const usv_model_meta *bm = usv_netdef_meta(c.def);
	if (arch && bm)
		meta = *bm;
	else
		memset(&meta, 0, sizeof meta);
	snprintf(meta.arch, sizeof meta.arch, "%s", arch ? arch : "custom");
	if (!arch) {
		meta.input_c = (int)dims[1];
		meta.input_h = (int)dims[2];
		meta.input_w = (int)dims[3];
		meta.resize_h = meta.input_h;
		meta.resize_w = meta.input_w;
		meta.output_layer = c.last_layer;
		meta.output_is_prob = c.last_is_softmax;
		snprintf(meta.name, sizeof meta.name, "Caffe import");
		meta.mean_rgb[0] = meta.mean_rgb[1] = meta.mean_rgb[2] = 0;
	} else if (have_input && (dims[1] != meta.input_c || dims[2] != meta.input_h ||
	                          dims[3] != meta.input_w)) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                "%s: input %lldx%lldx%lld differs from the built-in %s (%dx%dx%d)",
		                prototxt, (long long)dims[1], (long long)dims[2],
		                (long long)dims[3], arch, meta.input_c, meta.input_h, meta.input_w);
		goto done;
	}
	/* Caffe conventions; a built-in keeps its per-channel mean unless a
	 * mean image is given */
	meta.channel_order = USV_BGR;
	meta.scale = 1.0f;
	meta.mean_image = NULL;
	meta.n_labels = 0;
	meta.labels = NULL;
	meta.provenance_json = NULL;
	if (mean_path) {
		int mh = 0, mw = 0;
		if ((rc = read_mean(&c, mean_path, meta.input_c ? meta.input_c : 3, &mean, &mh,
		                    &mw)) < 0)
			goto done;
		if (mh < meta.input_h || mw < meta.input_w) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                "%s: mean %dx%d smaller than the input %dx%d", mean_path,
			                mh, mw, meta.input_h, meta.input_w);
			goto done;
		}
		meta.mean_image = mean;
		meta.resize_h = mh;
		meta.resize_w = mw;
	}
	if ((rc = usv_netdef_set_meta(c.def, &meta)) < 0) {
		usv_seterr(errbuf, errlen, rc, "%s: cannot set metadata: %s", prototxt,
		           usv_strerror(rc));
		goto done;
	}
	char verr[USV_ERRBUF];
	if ((rc = usv_netdef_validate(c.def, verr, sizeof verr)) < 0) {
		usv_seterr(errbuf, errlen, rc, "%s: %s", prototxt, verr);
		goto done;
	}
	*out = c.def;
	c.def = NULL;
	rc = 0;
done:
	usv_netdef_free(c.def);
	free(mean);
	cp_text_free(net_t);
	free(ptxt);
	free(model);
	free(c.wl);
	free(c.blobs);
	return rc;
}
