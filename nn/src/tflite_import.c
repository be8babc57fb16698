/*
 * NAME
 *	tflite_import.c - TensorFlow Lite flatbuffer to usv_netdef
 *
 * DESCRIPTION
 *	See usv/import.h. Schema facts used (field ids in declaration order):
 *	  Model: version 0, operator_codes 1, subgraphs 2, description 3,
 *	    buffers 4
 *	  OperatorCode: deprecated_builtin_code 0 (int8), custom_code 1,
 *	    version 2, builtin_code 3 (int32); the op is the larger of the two
 *	  SubGraph: tensors 0, inputs 1, outputs 2, operators 3, name 4
 *	  Tensor: shape 0, type 1, buffer 2, name 3, quantization 4
 *	  QuantizationParameters: min 0, max 1, scale 2, zero_point 3 (int64),
 *	    details_type 4, details 5, quantized_dimension 6
 *	  Operator: opcode_index 0, inputs 1, outputs 2,
 *	    builtin_options_type 3, builtin_options 4
 *	  Buffer: data 0
 *	  Conv2DOptions: padding 0, stride_w 1, stride_h 2, activation 3,
 *	    dilation_w 4, dilation_h 5
 *	  DepthwiseConv2DOptions: padding 0, stride_w 1, stride_h 2,
 *	    depth_multiplier 3, activation 4, dilation_w 5, dilation_h 6
 *	  Pool2DOptions: padding 0, stride_w 1, stride_h 2, filter_width 3,
 *	    filter_height 4, activation 5
 *	  FullyConnectedOptions: activation 0; AddOptions: activation 0;
 *	  SoftmaxOptions: beta 0; ConcatenationOptions: axis 0, activation 1
 *	  TensorType: FLOAT32 0, INT32 2, UINT8 3, INT64 4, INT8 9
 *	  Padding: SAME 0, VALID 1; activation: NONE 0, RELU 1, RELU6 3
 *	Activations are NHWC; the engine is NCHW, so weights are transposed
 *	and a fully connected layer after a spatial map has its columns
 *	permuted from (h, w, c) to (c, h, w) order.
 */
#include "usv/import.h"

#include "import_util.h"
#include "tflite_fb.h"
#include "usv/err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	OP_ADD = 0,
	OP_AVERAGE_POOL_2D = 1,
	OP_CONCATENATION = 2,
	OP_CONV_2D = 3,
	OP_DEPTHWISE_CONV_2D = 4,
	OP_DEQUANTIZE = 6,
	OP_FULLY_CONNECTED = 9,
	OP_MAX_POOL_2D = 17,
	OP_RELU = 19,
	OP_RELU6 = 21,
	OP_RESHAPE = 22,
	OP_SOFTMAX = 25,
	OP_SQUEEZE = 43,
	OP_QUANTIZE = 114,
};

enum { TT_FLOAT32 = 0, TT_INT32 = 2, TT_UINT8 = 3, TT_INT64 = 4, TT_INT8 = 9 };

#define MAX_TENSORS 65536
#define MAX_OPS 4096
#define MAX_QPARAMS 65536
#define NAME_KEEP 48 /* layer names from tensor names: at most this long */

static const char *op_name(int op)
{
	static const struct {
		int op;
		const char *name;
	} t[] = {{0, "ADD"},
	         {1, "AVERAGE_POOL_2D"},
	         {2, "CONCATENATION"},
	         {3, "CONV_2D"},
	         {4, "DEPTHWISE_CONV_2D"},
	         {5, "DEPTH_TO_SPACE"},
	         {6, "DEQUANTIZE"},
	         {9, "FULLY_CONNECTED"},
	         {14, "LOGISTIC"},
	         {17, "MAX_POOL_2D"},
	         {18, "MUL"},
	         {19, "RELU"},
	         {21, "RELU6"},
	         {22, "RESHAPE"},
	         {23, "RESIZE_BILINEAR"},
	         {25, "SOFTMAX"},
	         {28, "TANH"},
	         {32, "CUSTOM"},
	         {34, "PAD"},
	         {40, "MEAN"},
	         {41, "SUB"},
	         {43, "SQUEEZE"},
	         {49, "SPLIT"},
	         {53, "CAST"},
	         {60, "PADV2"},
	         {114, "QUANTIZE"},
	         {117, "HARD_SWISH"}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (t[i].op == op)
			return t[i].name;
	return NULL;
}

/* One tensor of a subgraph, as far as we need it. */
typedef struct tens {
	int shape[4], ndim;
	int type;
	uint32_t buffer;
	char name[USV_NAME_MAX];
	/* quantization */
	const uint8_t *scale; /* float vector */
	uint32_t nscale;
	const uint8_t *zp; /* int64 vector */
	uint32_t nzp;
	int qdim;
	/* producer in the netdef: "" = none (constant), "data" = input */
	char layer[USV_NAME_MAX];
} tens;

typedef struct model {
	const char *path;
	uint8_t *data;
	size_t len;
	fb_buf f;
	fb_table root, sg;
	size_t codes, bufs, ops, tns;
	uint32_t ncodes, nbufs, nops, ntns;
	tens *t;
	int in_tensor, out_tensor;
} model;

typedef struct ctx {
	char *err;
	size_t errlen;
	usv_netdef *def;
	char last[USV_NAME_MAX];
	int last_softmax;
	int nlayers;
} ctx;

static int ferr(ctx *c, const model *m, int code, const char *what)
{
	return usv_seterr(c->err, c->errlen, code, "%s: %s", m->path, what);
}

static float rdf32(const uint8_t *p)
{
	uint32_t u = fb_u32(p);
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static int64_t rdi64(const uint8_t *p)
{
	uint64_t u = (uint64_t)fb_u32(p) | (uint64_t)fb_u32(p + 4) << 32;
	return (int64_t)u;
}

static int read_tensor(ctx *c, model *m, uint32_t i)
{
	fb_table t, q;
	tens *d = &m->t[i];
	memset(d, 0, sizeof *d);
	if (fb_vec_table(&m->f, m->tns, m->ntns, i, &t) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed tensor table");
	size_t st;
	uint32_t n;
	int rc = fb_vector(&t, 0, 4, &st, &n);
	if (rc == -ENOENT)
		n = 0;
	else if (rc < 0)
		return ferr(c, m, rc, "malformed tensor shape");
	if (n > 4)
		return ferr(c, m, -USV_ERR_UNSUPPORTED, "tensor of more than 4 dimensions");
	d->ndim = (int)n;
	for (uint32_t k = 0; k < n; k++) {
		int32_t v = (int32_t)fb_u32(m->f.b + st + 4 * k);
		if (v < 1 || v > (1 << 24))
			return ferr(c, m, -USV_ERR_FORMAT, "bad tensor dimension");
		d->shape[k] = v;
	}
	int8_t type = 0;
	uint32_t buf = 0;
	if (fb_scalar(&t, 1, 1, &type) < 0 || fb_scalar(&t, 2, 4, &buf) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed tensor fields");
	d->type = type;
	d->buffer = buf;
	const char *s;
	uint32_t sl;
	if (fb_string(&t, 3, &s, &sl) == 0) {
		/* the last ';'-separated name, leading scopes dropped until it
		 * fits: the tail is the distinctive part of TF scope names */
		for (uint32_t k = sl; k > 0; k--)
			if (s[k - 1] == ';') {
				s += k;
				sl -= k;
				break;
			}
		while (sl > NAME_KEEP) {
			const char *sl_ = memchr(s, '/', sl);
			if (!sl_ || (uint32_t)(sl_ - s) + 1 >= sl)
				break;
			sl -= (uint32_t)(sl_ - s) + 1;
			s = sl_ + 1;
		}
		uint32_t keep = sl > NAME_KEEP ? NAME_KEEP : sl;
		memcpy(d->name, s + sl - keep, keep);
		d->name[keep] = 0;
		for (char *p = d->name; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
				*p = '_';
	}
	rc = fb_table_field(&t, 4, &q);
	if (rc == 0) {
		rc = fb_vector(&q, 2, 4, &st, &d->nscale);
		if (rc == 0)
			d->scale = m->f.b + st;
		else if (rc != -ENOENT)
			return ferr(c, m, rc, "malformed quantization scale");
		rc = fb_vector(&q, 3, 8, &st, &d->nzp);
		if (rc == 0)
			d->zp = m->f.b + st;
		else if (rc != -ENOENT)
			return ferr(c, m, rc, "malformed quantization zero point");
		int32_t qd = 0;
		if (fb_scalar(&q, 6, 4, &qd) < 0)
			return ferr(c, m, -USV_ERR_FORMAT, "malformed quantization");
		d->qdim = qd;
		if (d->nscale > MAX_QPARAMS || d->nzp > MAX_QPARAMS)
			return ferr(c, m, -USV_ERR_LIMIT, "too many quantization parameters");
		for (uint32_t k = 0; k < d->nscale; k++)
			if (!isfinite(rdf32(d->scale + 4 * k)))
				return ferr(c, m, -USV_ERR_FORMAT, "non-finite quantization scale");
	} else if (rc != -ENOENT) {
		return ferr(c, m, rc, "malformed quantization table");
	}
	return 0;
}

static int open_model(ctx *c, model *m, const char *path)
{
	memset(m, 0, sizeof *m);
	m->path = path;
	int rc = imp_read_file(path, (size_t)512 << 20, &m->data, &m->len, c->err, c->errlen);
	if (rc < 0)
		return rc;
	m->f.b = m->data;
	m->f.n = m->len;
	if (m->len < 8 || memcmp(m->data + 4, "TFL3", 4))
		return ferr(c, m, -USV_ERR_FORMAT, "not a TFLite model (no TFL3 identifier)");
	if (fb_root(&m->f, &m->root) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed root table");
	uint32_t version = 0, nsg;
	size_t sgs;
	if (fb_scalar(&m->root, 0, 4, &version) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed model table");
	if (version != 3)
		return ferr(c, m, -USV_ERR_UNSUPPORTED, "schema version is not 3");
	if (fb_vector(&m->root, 1, 4, &m->codes, &m->ncodes) < 0 ||
	    fb_vector(&m->root, 2, 4, &sgs, &nsg) < 0 ||
	    fb_vector(&m->root, 4, 4, &m->bufs, &m->nbufs) < 0)
		return ferr(c, m, -USV_ERR_FORMAT,
		            "malformed model (operator codes, subgraphs, buffers)");
	if (nsg < 1 || fb_vec_table(&m->f, sgs, nsg, 0, &m->sg) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "no subgraph");
	if (fb_vector(&m->sg, 0, 4, &m->tns, &m->ntns) < 0 ||
	    fb_vector(&m->sg, 3, 4, &m->ops, &m->nops) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed subgraph");
	if (m->ntns > MAX_TENSORS || m->nops > MAX_OPS)
		return ferr(c, m, -USV_ERR_LIMIT, "too many tensors or operators");
	m->t = calloc(m->ntns ? m->ntns : 1, sizeof *m->t);
	if (!m->t)
		return ferr(c, m, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < m->ntns; i++)
		if ((rc = read_tensor(c, m, i)) < 0)
			return rc;
	size_t st;
	uint32_t n;
	if (fb_vector(&m->sg, 1, 4, &st, &n) < 0 || n != 1)
		return ferr(c, m, -USV_ERR_UNSUPPORTED, "the subgraph must have exactly one input");
	m->in_tensor = (int32_t)fb_u32(m->f.b + st);
	if (fb_vector(&m->sg, 2, 4, &st, &n) < 0 || n != 1)
		return ferr(c, m, -USV_ERR_UNSUPPORTED,
		            "the subgraph must have exactly one output");
	m->out_tensor = (int32_t)fb_u32(m->f.b + st);
	if (m->in_tensor < 0 || (uint32_t)m->in_tensor >= m->ntns || m->out_tensor < 0 ||
	    (uint32_t)m->out_tensor >= m->ntns)
		return ferr(c, m, -USV_ERR_FORMAT, "input / output tensor index out of range");
	return 0;
}

static void close_model(model *m)
{
	free(m->t);
	free(m->data);
	memset(m, 0, sizeof *m);
}

/* Constant data of tensor ti: pointer and byte length. */
static int tensor_data(ctx *c, const model *m, int ti, const uint8_t **p, size_t *len)
{
	const tens *t = &m->t[ti];
	fb_table b;
	size_t st;
	uint32_t n;
	if (t->buffer == 0 || t->buffer >= m->nbufs ||
	    fb_vec_table(&m->f, m->bufs, m->nbufs, t->buffer, &b) < 0 ||
	    fb_vector(&b, 0, 1, &st, &n) < 0)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: tensor '%s' has no constant data", m->path, t->name);
	*p = m->f.b + st;
	*len = n;
	return 0;
}

static int64_t tcount(const tens *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

static float qscale(const tens *t, int64_t ch)
{
	if (!t->nscale)
		return 1.0f;
	return rdf32(t->scale + 4 * (size_t)(t->nscale > 1 ? ch : 0));
}

static int64_t qzero(const tens *t, int64_t ch)
{
	if (!t->nzp)
		return 0;
	return rdi64(t->zp + 8 * (size_t)(t->nzp > 1 ? ch : 0));
}

/* Dequantized float copy of a constant tensor (malloc()ed). For INT32,
 * in_scale * weight scale[channel] is the scale (biases). */
static int tensor_floats(ctx *c, const model *m, int ti, const tens *wt, const tens *xin,
                         float **out)
{
	const tens *t = &m->t[ti];
	const uint8_t *p = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = tensor_data(c, m, ti, &p, &len);
	if (rc < 0)
		return rc;
	int64_t n = tcount(t);
	size_t esz = t->type == TT_FLOAT32 || t->type == TT_INT32 ? 4
	             : t->type == TT_UINT8 || t->type == TT_INT8  ? 1
	                                                          : 0;
	if (!esz)
		return usv_seterr(c->err, c->errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: tensor '%s': unsupported type %d", m->path, t->name,
		                  t->type);
	if ((uint64_t)n * esz != len)
		return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
		                  "%s: tensor '%s': %zu data bytes for %lld elements", m->path,
		                  t->name, len, (long long)n);
	/* per-channel parameters run along qdim */
	int64_t inner = 1, nch = 1;
	if (t->nscale > 1 || t->nzp > 1) {
		if (t->qdim < 0 || t->qdim >= t->ndim)
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: tensor '%s': bad quantized dimension", m->path,
			                  t->name);
		nch = t->shape[t->qdim];
		for (int k = t->qdim + 1; k < t->ndim; k++)
			inner *= t->shape[k];
		if ((t->nscale > 1 && t->nscale != nch) || (t->nzp > 1 && t->nzp != nch))
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: tensor '%s': quantization size mismatch", m->path,
			                  t->name);
	}
	float *d = malloc((size_t)(n ? n : 1) * sizeof *d);
	if (!d)
		return usv_seterr(c->err, c->errlen, -ENOMEM, "out of memory");
	for (int64_t i = 0; i < n; i++) {
		int64_t ch = (i / inner) % nch;
		switch (t->type) {
		case TT_FLOAT32:
			d[i] = rdf32(p + 4 * i);
			break;
		case TT_UINT8:
			d[i] = qscale(t, ch) * (float)((int64_t)p[i] - qzero(t, ch));
			break;
		case TT_INT8:
			d[i] = qscale(t, ch) * (float)((int64_t)(int8_t)p[i] - qzero(t, ch));
			break;
		case TT_INT32: {
			int32_t q = (int32_t)fb_u32(p + 4 * i);
			float s;
			if (wt && xin && wt->nscale > 1 && (uint64_t)i >= wt->nscale) {
				free(d);
				return usv_seterr(
				    c->err, c->errlen, -USV_ERR_FORMAT,
				    "%s: tensor '%s': fewer weight scales than biases", m->path,
				    t->name);
			}
			if (wt && xin && wt->nscale && xin->nscale)
				s = qscale(xin, 0) * qscale(wt, i);
			else
				s = qscale(t, ch);
			d[i] = s * (float)q;
			break;
		}
		}
		if (!isfinite(d[i])) {
			free(d);
			return usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                  "%s: tensor '%s': non-finite value", m->path, t->name);
		}
	}
	*out = d;
	return 0;
}

/* NHWC activation shape of a tensor as (h, w, c); 2-D [n, c] is 1x1xc. */
static int act_shape(const tens *t, int *h, int *w, int *ch)
{
	if (t->ndim == 4) {
		*h = t->shape[1], *w = t->shape[2], *ch = t->shape[3];
		return 0;
	}
	if (t->ndim == 2) {
		*h = *w = 1, *ch = t->shape[1];
		return 0;
	}
	return -1;
}

static int unique_name(ctx *c, const char *base, char out[USV_NAME_MAX])
{
	char b[USV_NAME_MAX];
	snprintf(b, sizeof b, "%s", base[0] ? base : "layer");
	if (!strcmp(b, "data"))
		snprintf(b, sizeof b, "data_");
	for (int k = 0; k < 100000; k++) {
		if (k == 0)
			snprintf(out, USV_NAME_MAX, "%s", b);
		else
			snprintf(out, USV_NAME_MAX, "%.*s_%d", USV_NAME_MAX - 9, b, k);
		int dup = 0;
		for (int i = 0; i < usv_netdef_n_layers(c->def) && !dup; i++)
			dup = !strcmp(usv_netdef_layer(c->def, i)->name, out);
		if (!dup)
			return 0;
	}
	return -USV_ERR_LIMIT;
}

static int set_act(usv_layer_def *d, int8_t a)
{
	if (a == 0)
		d->act = USV_ACT_NONE;
	else if (a == 1)
		d->act = USV_ACT_RELU;
	else if (a == 3)
		d->act = USV_ACT_RELU6;
	else
		return -1;
	return 0;
}

typedef struct opinfo {
	int code;
	int nin, nout;
	int in[8];
	int out;
	fb_table opt;
	int has_opt;
} opinfo;

static int add_tensor(ctx *c, const model *m, const char *layer, const char *suffix, int ndim,
                      const int64_t *shape, const float *d)
{
	char tn[USV_NAME_MAX + 8];
	snprintf(tn, sizeof tn, "%s.%s", layer, suffix);
	int rc = usv_netdef_add_tensor(c->def, tn, ndim, shape, d);
	if (rc < 0)
		return usv_seterr(c->err, c->errlen, rc, "%s: cannot add tensor %s: %s", m->path,
		                  tn, usv_strerror(rc));
	return 0;
}

static int emit(ctx *c, const model *m, usv_layer_def *d, int out_tensor, const char *opn)
{
	int rc = usv_netdef_add_layer(c->def, d);
	if (rc < 0)
		return usv_seterr(c->err, c->errlen, rc, "%s: %s '%s' rejected by the engine: %s",
		                  m->path, opn, d->name, usv_strerror(rc));
	snprintf(m->t[out_tensor].layer, USV_NAME_MAX, "%s", d->name);
	snprintf(c->last, sizeof c->last, "%s", d->name);
	c->last_softmax = d->type == USV_LAYER_SOFTMAX;
	c->nlayers++;
	return 0;
}

/* Weights and bias of a conv / depthwise / fc op. */
static int conv_weights(ctx *c, const model *m, const opinfo *o, usv_layer_def *d, int kind)
{
	const tens *x = &m->t[o->in[0]], *w = &m->t[o->in[1]];
	float *src = NULL, *dst = NULL, *bias = NULL;
	int rc = tensor_floats(c, m, o->in[1], NULL, NULL, &src);
	if (rc < 0)
		return rc;
	int64_t shape[4];
	int ndim;
	int ih = 0, iw = 0, ic = 1;
	act_shape(x, &ih, &iw, &ic);
	if (kind == OP_FULLY_CONNECTED) {
		int64_t O = w->shape[0], I = w->shape[1];
		dst = malloc((size_t)(O * I) * sizeof *dst);
		if (!dst) {
			rc = -ENOMEM;
			goto out;
		}
		/* columns: NHWC (h, w, c) order -> NCHW (c, h, w) */
		int64_t hw = (int64_t)ih * iw;
		for (int64_t oo = 0; oo < O; oo++)
			for (int64_t k = 0; k < I; k++) {
				int64_t cc = k % ic, s = k / ic; /* k = s * ic + cc */
				dst[oo * I + cc * hw + s] = src[oo * I + k];
			}
		shape[0] = O, shape[1] = I;
		ndim = 2;
	} else {
		/* conv: OHWI -> OIHW; depthwise: 1HWO -> O1HW */
		int64_t O = kind == OP_CONV_2D ? w->shape[0] : w->shape[3];
		int64_t KH = w->shape[1], KW = w->shape[2];
		int64_t I = kind == OP_CONV_2D ? w->shape[3] : 1;
		dst = malloc((size_t)(O * I * KH * KW) * sizeof *dst);
		if (!dst) {
			rc = -ENOMEM;
			goto out;
		}
		for (int64_t oo = 0; oo < O; oo++)
			for (int64_t i = 0; i < I; i++)
				for (int64_t y = 0; y < KH; y++)
					for (int64_t xx = 0; xx < KW; xx++) {
						int64_t s = kind == OP_CONV_2D
						                ? ((oo * KH + y) * KW + xx) * I + i
						                : (y * KW + xx) * O + oo;
						dst[((oo * I + i) * KH + y) * KW + xx] = src[s];
					}
		shape[0] = O, shape[1] = I, shape[2] = KH, shape[3] = KW;
		ndim = 4;
	}
	if ((rc = add_tensor(c, m, d->name, "weight", ndim, shape, dst)) < 0)
		goto out;
	if (o->nin >= 3 && o->in[2] >= 0) {
		const tens *b = &m->t[o->in[2]];
		if (b->ndim != 1 || b->shape[0] != shape[0]) {
			rc = usv_seterr(c->err, c->errlen, -USV_ERR_FORMAT,
			                "%s: bias of '%s' has the wrong size", m->path, d->name);
			goto out;
		}
		if ((rc = tensor_floats(c, m, o->in[2], w, x, &bias)) < 0)
			goto out;
		int64_t bs[1] = {shape[0]};
		if ((rc = add_tensor(c, m, d->name, "bias", 1, bs, bias)) < 0)
			goto out;
		d->has_bias = 1;
	}
out:
	if (rc == -ENOMEM)
		usv_seterr(c->err, c->errlen, rc, "out of memory");
	free(src);
	free(dst);
	free(bias);
	return rc;
}

static int opt_i32(const opinfo *o, int id, int32_t def)
{
	int32_t v = def;
	if (o->has_opt)
		fb_scalar(&o->opt, id, 4, &v);
	return v;
}

static int8_t opt_i8(const opinfo *o, int id, int8_t def)
{
	int8_t v = def;
	if (o->has_opt)
		fb_scalar(&o->opt, id, 1, &v);
	return v;
}

static int is_const(const model *m, int ti)
{
	return m->t[ti].buffer != 0 && !m->t[ti].layer[0];
}

static int do_op(ctx *c, model *m, uint32_t k)
{
	char what[256];
	fb_table op;
	opinfo o;
	memset(&o, 0, sizeof o);
	if (fb_vec_table(&m->f, m->ops, m->nops, k, &op) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed operator table");
	uint32_t oi = 0;
	if (fb_scalar(&op, 0, 4, &oi) < 0 || oi >= m->ncodes)
		return ferr(c, m, -USV_ERR_FORMAT, "operator code index out of range");
	fb_table code;
	if (fb_vec_table(&m->f, m->codes, m->ncodes, oi, &code) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed operator code");
	int8_t dep = 0;
	int32_t bc = 0;
	if (fb_scalar(&code, 0, 1, &dep) < 0 || fb_scalar(&code, 3, 4, &bc) < 0)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed operator code");
	o.code = bc > dep ? bc : dep;
	size_t st;
	uint32_t n;
	if (fb_vector(&op, 1, 4, &st, &n) < 0 || n > 8)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed operator inputs");
	o.nin = (int)n;
	for (uint32_t i = 0; i < n; i++) {
		o.in[i] = (int32_t)fb_u32(m->f.b + st + 4 * i);
		if (o.in[i] < -1 || o.in[i] >= (int)m->ntns)
			return ferr(c, m, -USV_ERR_FORMAT, "operator input index out of range");
	}
	if (fb_vector(&op, 2, 4, &st, &n) < 0 || n != 1)
		return ferr(c, m, -USV_ERR_UNSUPPORTED, "operator without exactly one output");
	o.out = (int32_t)fb_u32(m->f.b + st);
	if (o.out < 0 || o.out >= (int)m->ntns)
		return ferr(c, m, -USV_ERR_FORMAT, "operator output index out of range");
	int rc = fb_table_field(&op, 4, &o.opt);
	if (rc == 0)
		o.has_opt = 1;
	else if (rc != -ENOENT)
		return ferr(c, m, -USV_ERR_FORMAT, "malformed operator options");

	const char *opn = op_name(o.code);
	char opbuf[32];
	if (!opn) {
		snprintf(opbuf, sizeof opbuf, "builtin op %d", o.code);
		opn = opbuf;
	}
	if (o.nin < 1 || o.in[0] < 0) {
		snprintf(what, sizeof what, "op #%u (%s) has no input", k, opn);
		return ferr(c, m, -USV_ERR_FORMAT, what);
	}
	const tens *x = &m->t[o.in[0]], *y = &m->t[o.out];
	if (!x->layer[0]) {
		snprintf(what, sizeof what,
		         "op #%u (%s): input '%s' is not computed by an earlier op", k, opn,
		         x->name);
		return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
	}
	usv_layer_def d;
	memset(&d, 0, sizeof d);
	d.group = 1;
	d.n_inputs = 1;
	snprintf(d.inputs[0], USV_NAME_MAX, "%s", x->layer);
	if (unique_name(c, y->name, d.name) < 0)
		return ferr(c, m, -USV_ERR_LIMIT, "cannot make a unique layer name");
	int ih = 0, iw = 0, ic = 0, oh = 0, ow = 0, oc = 0;
	if (act_shape(x, &ih, &iw, &ic) < 0 || act_shape(y, &oh, &ow, &oc) < 0) {
		if (o.code != OP_RESHAPE && o.code != OP_SQUEEZE) {
			snprintf(what, sizeof what, "op #%u (%s): tensors must be 2-D or 4-D", k,
			         opn);
			return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
		}
	}

	switch (o.code) {
	case OP_CONV_2D:
	case OP_DEPTHWISE_CONV_2D: {
		int dw = o.code == OP_DEPTHWISE_CONV_2D;
		if (o.nin < 2 || o.in[1] < 0 || !is_const(m, o.in[1]) ||
		    (o.nin >= 3 && o.in[2] >= 0 && !is_const(m, o.in[2])))
			break;
		const tens *w = &m->t[o.in[1]];
		if (w->ndim != 4 || (dw && (w->shape[0] != 1 || w->shape[3] != oc)) ||
		    (!dw && (w->shape[0] != oc || w->shape[3] != ic)) || (dw && oc % ic))
			return ferr(c, m, -USV_ERR_FORMAT,
			            "convolution weights of the wrong shape");
		int pad = opt_i8(&o, 0, 0);
		int sw = opt_i32(&o, 1, 1), sh = opt_i32(&o, 2, 1);
		int8_t act = opt_i8(&o, dw ? 4 : 3, 0);
		int dlw = opt_i32(&o, dw ? 5 : 4, 1), dlh = opt_i32(&o, dw ? 6 : 5, 1);
		if (dlw != 1 || dlh != 1) {
			snprintf(what, sizeof what, "op #%u (%s): dilation is not supported", k,
			         opn);
			return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
		}
		if (set_act(&d, act) < 0) {
			snprintf(what, sizeof what, "op #%u (%s): unsupported fused activation %d",
			         k, opn, act);
			return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
		}
		if (sw < 1 || sh < 1 || sw > 1024 || sh > 1024 || (pad != 0 && pad != 1))
			return ferr(c, m, -USV_ERR_FORMAT, "bad convolution options");
		d.type = USV_LAYER_CONV;
		d.num_output = oc;
		d.kernel_h = w->shape[1];
		d.kernel_w = w->shape[2];
		d.stride_h = sh;
		d.stride_w = sw;
		d.pad_mode = pad == 0 ? USV_PAD_SAME : USV_PAD_VALID;
		d.group = dw ? ic : 1;
		if ((rc = conv_weights(c, m, &o, &d, o.code)) < 0)
			return rc;
		return emit(c, m, &d, o.out, opn);
	}
	case OP_FULLY_CONNECTED: {
		if (o.nin < 2 || o.in[1] < 0 || !is_const(m, o.in[1]) ||
		    (o.nin >= 3 && o.in[2] >= 0 && !is_const(m, o.in[2])))
			break;
		const tens *w = &m->t[o.in[1]];
		if (w->ndim != 2 || (int64_t)w->shape[1] != (int64_t)ih * iw * ic)
			return ferr(c, m, -USV_ERR_FORMAT,
			            "fully connected weights of the wrong shape");
		if (set_act(&d, opt_i8(&o, 0, 0)) < 0) {
			snprintf(what, sizeof what, "op #%u (%s): unsupported fused activation", k,
			         opn);
			return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
		}
		d.type = USV_LAYER_FC;
		d.num_output = w->shape[0];
		if ((rc = conv_weights(c, m, &o, &d, o.code)) < 0)
			return rc;
		return emit(c, m, &d, o.out, opn);
	}
	case OP_AVERAGE_POOL_2D:
	case OP_MAX_POOL_2D: {
		int pad = opt_i8(&o, 0, 0);
		int sw = opt_i32(&o, 1, 1), sh = opt_i32(&o, 2, 1);
		int fw = opt_i32(&o, 3, 1), fh = opt_i32(&o, 4, 1);
		int8_t act = opt_i8(&o, 5, 0);
		if (act != 0) {
			snprintf(what, sizeof what, "op #%u (%s): fused activation on pooling", k,
			         opn);
			return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
		}
		if (sw < 1 || sh < 1 || fw < 1 || fh < 1 || sw > 1024 || sh > 1024 || fw > 1024 ||
		    fh > 1024 || (pad != 0 && pad != 1))
			return ferr(c, m, -USV_ERR_FORMAT, "bad pooling options");
		if (o.code == OP_AVERAGE_POOL_2D && fw == iw && fh == ih && oh == 1 && ow == 1) {
			d.type = USV_LAYER_GLOBAL_AVEPOOL;
			return emit(c, m, &d, o.out, opn);
		}
		d.type = o.code == OP_MAX_POOL_2D ? USV_LAYER_MAXPOOL : USV_LAYER_AVEPOOL;
		d.kernel_h = fh;
		d.kernel_w = fw;
		d.stride_h = sh;
		d.stride_w = sw;
		d.pad_mode = pad == 0 ? USV_PAD_SAME : USV_PAD_VALID;
		return emit(c, m, &d, o.out, opn);
	}
	case OP_ADD: {
		if (o.nin != 2 || o.in[1] < 0 || !m->t[o.in[1]].layer[0])
			break;
		d.type = USV_LAYER_ADD;
		d.n_inputs = 2;
		snprintf(d.inputs[1], USV_NAME_MAX, "%s", m->t[o.in[1]].layer);
		if (set_act(&d, opt_i8(&o, 0, 0)) < 0)
			break;
		return emit(c, m, &d, o.out, opn);
	}
	case OP_CONCATENATION: {
		int axis = opt_i32(&o, 0, 0);
		if (x->ndim != 4 || (axis != 3 && axis != -1) || opt_i8(&o, 1, 0) != 0)
			break;
		d.type = USV_LAYER_CONCAT;
		d.n_inputs = o.nin;
		for (int i = 0; i < o.nin; i++) {
			if (o.in[i] < 0 || !m->t[o.in[i]].layer[0])
				return ferr(c, m, -USV_ERR_UNSUPPORTED, "constant concat input");
			snprintf(d.inputs[i], USV_NAME_MAX, "%s", m->t[o.in[i]].layer);
		}
		return emit(c, m, &d, o.out, opn);
	}
	case OP_SOFTMAX: {
		float beta = 1.0f;
		if (o.has_opt)
			fb_scalar(&o.opt, 0, 4, &beta);
		if (beta != 1.0f || ih != 1 || iw != 1)
			break;
		d.type = USV_LAYER_SOFTMAX;
		return emit(c, m, &d, o.out, opn);
	}
	case OP_RELU:
	case OP_RELU6:
		d.type = o.code == OP_RELU ? USV_LAYER_RELU : USV_LAYER_RELU6;
		return emit(c, m, &d, o.out, opn);
	case OP_RESHAPE:
	case OP_SQUEEZE: {
		/* only a 1x1 map to a vector (or back): the data does not move */
		int64_t cnt = tcount(x);
		int xs = x->ndim == 4 ? x->shape[1] * x->shape[2] : 1;
		if (xs != 1 || tcount(y) != cnt || (x->ndim >= 1 && x->shape[0] != 1))
			break;
		int last = y->ndim ? y->shape[y->ndim - 1] : 1;
		if (last != cnt)
			break;
		snprintf(m->t[o.out].layer, USV_NAME_MAX, "%s", x->layer);
		return 0;
	}
	case OP_QUANTIZE:
	case OP_DEQUANTIZE:
		snprintf(m->t[o.out].layer, USV_NAME_MAX, "%s", x->layer);
		return 0;
	default:
		snprintf(what, sizeof what, "unsupported op %s (op #%u, output '%s')", opn, k,
		         y->name);
		return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
	}
	snprintf(what, sizeof what, "op #%u (%s, output '%s'): unsupported operands or options", k,
	         opn, y->name);
	return ferr(c, m, -USV_ERR_UNSUPPORTED, what);
}

static int run_ops(ctx *c, model *m)
{
	for (uint32_t k = 0; k < m->nops; k++) {
		int rc = do_op(c, m, k);
		if (rc < 0)
			return rc;
	}
	if (!m->t[m->out_tensor].layer[0] || !strcmp(m->t[m->out_tensor].layer, "data"))
		return ferr(c, m, -USV_ERR_FORMAT, "the output tensor is not computed");
	return 0;
}

int usv_import_tflite(const char *path, const char *head_path, usv_netdef **out, char *errbuf,
                      size_t errlen)
{
	*out = NULL;
	ctx c = {.err = errbuf, .errlen = errlen};
	model m, h;
	memset(&h, 0, sizeof h);
	int rc = open_model(&c, &m, path);
	if (rc < 0)
		goto done;
	if (head_path && (rc = open_model(&c, &h, head_path)) < 0)
		goto done;
	if ((rc = usv_netdef_new(&c.def)) < 0) {
		usv_seterr(errbuf, errlen, rc, "out of memory");
		goto done;
	}
	tens *in = &m.t[m.in_tensor];
	if (in->ndim != 4 || in->shape[0] != 1 || in->shape[3] != 3 || in->shape[1] > 4096 ||
	    in->shape[2] > 4096) {
		rc = ferr(&c, &m, -USV_ERR_UNSUPPORTED, "input must be [1, H, W, 3]");
		goto done;
	}
	snprintf(in->layer, USV_NAME_MAX, "data");
	/* the netdef needs its input size before layers are checked */
	usv_model_meta meta;
	memset(&meta, 0, sizeof meta);
	snprintf(meta.arch, sizeof meta.arch, "custom");
	meta.input_c = 3;
	meta.input_h = meta.resize_h = in->shape[1];
	meta.input_w = meta.resize_w = in->shape[2];
	meta.channel_order = USV_RGB;
	if (in->type == TT_UINT8 || in->type == TT_INT8) {
		/* x = s * (q - z): the pixel value plays q (int8 input: q = p - 128) */
		float s = qscale(in, 0);
		float z = (float)qzero(in, 0) + (in->type == TT_INT8 ? 128.0f : 0.0f);
		if (!in->nscale || !(s > 0)) {
			rc = ferr(&c, &m, -USV_ERR_FORMAT, "quantized input without a scale");
			goto done;
		}
		meta.mean_rgb[0] = meta.mean_rgb[1] = meta.mean_rgb[2] = z;
		meta.scale = s;
	} else if (in->type == TT_FLOAT32) {
		meta.mean_rgb[0] = meta.mean_rgb[1] = meta.mean_rgb[2] = 127.5f;
		meta.scale = 1.0f / 127.5f;
	} else {
		rc = ferr(&c, &m, -USV_ERR_UNSUPPORTED, "input tensor type");
		goto done;
	}
	if ((rc = usv_netdef_set_meta(c.def, &meta)) < 0) {
		usv_seterr(errbuf, errlen, rc, "%s: cannot set metadata", path);
		goto done;
	}
	if ((rc = run_ops(&c, &m)) < 0)
		goto done;
	if (head_path) {
		tens *hin = &h.t[h.in_tensor];
		const tens *mo = &m.t[m.out_tensor];
		if (tcount(hin) != tcount(mo)) {
			rc =
			    usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			               "%s: head input has %lld values, %s outputs %lld", head_path,
			               (long long)tcount(hin), path, (long long)tcount(mo));
			goto done;
		}
		snprintf(hin->layer, USV_NAME_MAX, "%s", mo->layer);
		/* the head sees the extractor's output in its own shape */
		if ((rc = run_ops(&c, &h)) < 0)
			goto done;
	}
	snprintf(meta.name, sizeof meta.name, "TFLite import");
	meta.output_layer = c.last;
	meta.output_is_prob = c.last_softmax;
	const model *lm = head_path ? &h : &m;
	if (strcmp(lm->t[lm->out_tensor].layer, c.last)) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                "%s: the output tensor is not the last op's", lm->path);
		goto done;
	}
	if ((rc = usv_netdef_set_meta(c.def, &meta)) < 0) {
		usv_seterr(errbuf, errlen, rc, "%s: cannot set metadata", path);
		goto done;
	}
	char verr[USV_ERRBUF];
	if ((rc = usv_netdef_validate(c.def, verr, sizeof verr)) < 0) {
		usv_seterr(errbuf, errlen, rc, "%s: %s", path, verr);
		goto done;
	}
	*out = c.def;
	c.def = NULL;
	rc = 0;
done:
	usv_netdef_free(c.def);
	close_model(&m);
	close_model(&h);
	return rc;
}
