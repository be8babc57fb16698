/*
 * NAME
 *	netdef.c - mutable network definitions: layers, tensors, metadata,
 *	validation and shape inference
 *
 * DESCRIPTION
 *	Layers are kept in insertion order, which must be a topological order
 *	(every input names an earlier layer or "data"). Tensors are copied
 *	into 64-byte aligned buffers owned by the netdef, except the borrowed
 *	ones that the model loader points into a mapped file.
 */
#include "nn_internal.h"
#include "window.h"

#include "usv/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
    [USV_LAYER_CONV] = "conv",
    [USV_LAYER_RELU] = "relu",
    [USV_LAYER_RELU6] = "relu6",
    [USV_LAYER_LRN] = "lrn",
    [USV_LAYER_MAXPOOL] = "maxpool",
    [USV_LAYER_AVEPOOL] = "avepool",
    [USV_LAYER_GLOBAL_AVEPOOL] = "global_avepool",
    [USV_LAYER_FC] = "fc",
    [USV_LAYER_SOFTMAX] = "softmax",
    [USV_LAYER_ADD] = "add",
    [USV_LAYER_DROPOUT] = "dropout",
    [USV_LAYER_CONCAT] = "concat",
    [USV_LAYER_FLATTEN] = "flatten",
    [USV_LAYER_LRN_WITHIN] = "lrn_within",
};
#define N_TYPES ((int)(sizeof type_names / sizeof type_names[0]))

const char *usv__layer_type_name(usv_layer_type t)
{
	if ((int)t <= 0 || (int)t >= N_TYPES)
		return "?";
	return type_names[t];
}

int usv__layer_type_from_name(const char *s)
{
	for (int i = 1; i < N_TYPES; i++)
		if (!strcmp(s, type_names[i]))
			return i;
	return -1;
}

void *usv__aligned_alloc(size_t bytes)
{
	size_t n = (bytes + 63) / 64 * 64;
	return aligned_alloc(64, n ? n : 64);
}

int usv_netdef_new(usv_netdef **out)
{
	usv_netdef *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->meta.m.scale = 1.0f;
	d->meta.m.temperature = 1.0f;
	d->meta.m.test_views = 1;
	snprintf(d->meta.m.arch, sizeof d->meta.m.arch, "custom");
	*out = d;
	return 0;
}

void usv_netdef_free(usv_netdef *def)
{
	if (!def)
		return;
	for (int i = 0; i < def->n_tensors; i++)
		if (def->tensors[i].owned)
			free(def->tensors[i].data);
	free(def->tensors);
	free(def->layers);
	usv__meta_clear(&def->meta);
	free(def);
}

static int name_ok(const char *s)
{
	size_t n = strnlen(s, USV_NAME_MAX);
	return n > 0 && n < USV_NAME_MAX;
}

/* Field checks that do not need the graph. */
static int layer_fields_ok(const usv_layer_def *l)
{
	const int big = 1 << 20, kmax = 1024;
	if (!name_ok(l->name) || !strcmp(l->name, "data"))
		return 0;
	if ((int)l->type <= 0 || (int)l->type >= N_TYPES)
		return 0;
	if (l->n_inputs < 1 || l->n_inputs > USV_MAX_INPUTS)
		return 0;
	if (l->n_inputs > 1 && l->type != USV_LAYER_ADD && l->type != USV_LAYER_CONCAT)
		return 0;
	for (int i = 0; i < l->n_inputs; i++)
		if (!name_ok(l->inputs[i]))
			return 0;
	if ((int)l->act < USV_ACT_NONE || (int)l->act > USV_ACT_RELU6)
		return 0;
	if ((int)l->pad_mode < USV_PAD_EXPLICIT || (int)l->pad_mode > USV_PAD_VALID)
		return 0;
	switch (l->type) {
	case USV_LAYER_CONV:
		if (l->num_output < 1 || l->num_output > big || l->group < 1 || l->group > big)
			return 0;
		/* fall through */
	case USV_LAYER_MAXPOOL:
	case USV_LAYER_AVEPOOL:
		if (l->kernel_h < 1 || l->kernel_w < 1 || l->kernel_h > kmax || l->kernel_w > kmax)
			return 0;
		if (l->stride_h < 1 || l->stride_w < 1 || l->stride_h > kmax || l->stride_w > kmax)
			return 0;
		if (l->pad_t < 0 || l->pad_b < 0 || l->pad_l < 0 || l->pad_r < 0 ||
		    l->pad_t > kmax || l->pad_b > kmax || l->pad_l > kmax || l->pad_r > kmax)
			return 0;
		break;
	case USV_LAYER_FC:
		if (l->num_output < 1 || l->num_output > big)
			return 0;
		break;
	case USV_LAYER_LRN:
	case USV_LAYER_LRN_WITHIN:
		if (l->local_size < 1 || l->local_size > 1023 || !(l->local_size & 1))
			return 0;
		if (!(l->k > 0.0f) || !(l->beta >= 0.0f) || !(l->alpha >= 0.0f) ||
		    l->beta > 16.0f || l->alpha > 1e6f || l->k > 1e6f)
			return 0;
		break;
	default:
		break;
	}
	return 1;
}

int usv_netdef_add_layer(usv_netdef *def, const usv_layer_def *layer)
{
	if (!def || !layer)
		return -EINVAL;
	usv_layer_def l = *layer;
	if (l.group == 0)
		l.group = 1;
	if (!layer_fields_ok(&l))
		return -EINVAL;
	for (int i = 0; i < def->n_layers; i++)
		if (!strcmp(def->layers[i].name, l.name))
			return -EEXIST;
	if (def->n_layers >= USV_MAX_LAYERS)
		return -USV_ERR_LIMIT;
	if (def->n_layers == def->cap_layers) {
		int nc = def->cap_layers ? def->cap_layers * 2 : 32;
		usv_layer_def *p = realloc(def->layers, (size_t)nc * sizeof *p);
		if (!p)
			return -ENOMEM;
		def->layers = p;
		def->cap_layers = nc;
	}
	/* clear unused input slots so files and comparisons are deterministic */
	for (int i = l.n_inputs; i < USV_MAX_INPUTS; i++)
		memset(l.inputs[i], 0, USV_NAME_MAX);
	def->layers[def->n_layers++] = l;
	return 0;
}

usv_tensor *usv__find_tensor(const usv_netdef *def, const char *name)
{
	for (int i = 0; i < def->n_tensors; i++)
		if (!strcmp(def->tensors[i].name, name))
			return &def->tensors[i];
	return NULL;
}

static int add_tensor(usv_netdef *def, const char *name, int ndim, const int64_t *shape,
                      const float *data, int borrow)
{
	if (!def || !name || !name_ok(name) || ndim < 0 || ndim > 4 || (ndim && !shape))
		return -EINVAL;
	int64_t count = 1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 1 || shape[i] > USV_MAX_TENSOR)
			return -EINVAL;
		count *= shape[i];
		if (count > USV_MAX_TENSOR)
			return -USV_ERR_LIMIT;
	}
	if (!data)
		return -EINVAL;
	float *buf = (float *)data;
	if (!borrow) {
		buf = usv__aligned_alloc((size_t)count * sizeof(float));
		if (!buf)
			return -ENOMEM;
		memcpy(buf, data, (size_t)count * sizeof(float));
	}
	usv_tensor *t = usv__find_tensor(def, name);
	if (!t) {
		if (def->n_tensors >= USV_MAX_TENSORS) {
			if (!borrow)
				free(buf);
			return -USV_ERR_LIMIT;
		}
		if (def->n_tensors == def->cap_tensors) {
			int nc = def->cap_tensors ? def->cap_tensors * 2 : 64;
			usv_tensor *p = realloc(def->tensors, (size_t)nc * sizeof *p);
			if (!p) {
				if (!borrow)
					free(buf);
				return -ENOMEM;
			}
			def->tensors = p;
			def->cap_tensors = nc;
		}
		t = &def->tensors[def->n_tensors++];
		memset(t, 0, sizeof *t);
		snprintf(t->name, sizeof t->name, "%s", name);
	} else if (t->owned) {
		free(t->data);
	}
	t->ndim = ndim;
	memset(t->shape, 0, sizeof t->shape);
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->count = (size_t)count;
	t->data = buf;
	t->owned = !borrow;
	return 0;
}

int usv_netdef_add_tensor(usv_netdef *def, const char *name, int ndim, const int64_t *shape,
                          const float *data)
{
	return add_tensor(def, name, ndim, shape, data, 0);
}

int usv__netdef_add_borrowed(usv_netdef *def, const char *name, int ndim, const int64_t *shape,
                             float *data)
{
	return add_tensor(def, name, ndim, shape, data, 1);
}

float *usv_netdef_tensor(usv_netdef *def, const char *name, int *ndim, int64_t shape[4])
{
	if (!def || !name)
		return NULL;
	usv_tensor *t = usv__find_tensor(def, name);
	if (!t)
		return NULL;
	if (ndim)
		*ndim = t->ndim;
	if (shape)
		memcpy(shape, t->shape, sizeof t->shape);
	return t->data;
}

int usv_netdef_n_layers(const usv_netdef *def)
{
	return def ? def->n_layers : 0;
}

usv_layer_def *usv_netdef_layer(usv_netdef *def, int i)
{
	if (!def || i < 0 || i >= def->n_layers)
		return NULL;
	return &def->layers[i];
}

/* ---------------- metadata ---------------- */

void usv__meta_clear(usv_meta_store *s)
{
	if (s->labels)
		for (int i = 0; i < s->m.n_labels; i++)
			free(s->labels[i]);
	free(s->labels);
	free(s->output_layer);
	free(s->provenance);
	free(s->mean);
	memset(s, 0, sizeof *s);
}

static char *dupstr(const char *s, size_t max)
{
	if (!s)
		return NULL;
	size_t n = strnlen(s, max);
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

int usv__meta_set(usv_meta_store *dst, const usv_model_meta *src)
{
	if (src->n_labels < 0 || src->n_labels > USV_MAX_LABELS || (src->n_labels && !src->labels))
		return -EINVAL;
	if (src->input_c < 0 || src->input_h < 0 || src->input_w < 0 || src->resize_h < 0 ||
	    src->resize_w < 0 || src->input_c > 4096 || src->input_h > 16384 ||
	    src->input_w > 16384 || src->resize_h > 16384 || src->resize_w > 16384)
		return -EINVAL;
	if (src->mean_image && (src->input_c < 1 || src->resize_h < 1 || src->resize_w < 1))
		return -EINVAL;
	/* 0 = unset = 1 (structs built field by field); NaN fails both tests */
	if (src->temperature != 0 &&
	    !(src->temperature >= USV_TEMPERATURE_MIN && src->temperature <= USV_TEMPERATURE_MAX))
		return -EINVAL;
	if (src->test_views != 0 && !usv_views_valid(src->test_views))
		return -EINVAL;
	usv_meta_store n;
	memset(&n, 0, sizeof n);
	n.m = *src;
	n.m.arch[sizeof n.m.arch - 1] = 0;
	n.m.name[sizeof n.m.name - 1] = 0;
	n.m.sha256[sizeof n.m.sha256 - 1] = 0;
	n.m.labels = NULL;
	n.m.output_layer = NULL;
	n.m.provenance_json = NULL;
	n.m.mean_image = NULL;
	n.m.n_labels = 0;
	if (n.m.temperature == 0)
		n.m.temperature = 1.0f;
	if (n.m.test_views == 0)
		n.m.test_views = 1;
	if (src->n_labels) {
		n.labels = calloc((size_t)src->n_labels, sizeof(char *));
		if (!n.labels)
			goto nomem;
		for (int i = 0; i < src->n_labels; i++) {
			n.labels[i] =
			    dupstr(src->labels[i] ? src->labels[i] : "", USV_LABEL_MAX - 1);
			n.m.n_labels = i + 1;
			if (!n.labels[i])
				goto nomem;
		}
	}
	if (src->output_layer && !(n.output_layer = dupstr(src->output_layer, USV_NAME_MAX - 1)))
		goto nomem;
	if (src->provenance_json &&
	    !(n.provenance = dupstr(src->provenance_json, 16u * 1024 * 1024)))
		goto nomem;
	if (src->mean_image) {
		size_t cnt = (size_t)src->input_c * src->resize_h * src->resize_w;
		n.mean = malloc(cnt * sizeof(float));
		if (!n.mean)
			goto nomem;
		memcpy(n.mean, src->mean_image, cnt * sizeof(float));
	}
	n.m.labels = (const char *const *)n.labels;
	n.m.output_layer = n.output_layer;
	n.m.provenance_json = n.provenance;
	n.m.mean_image = n.mean;
	usv__meta_clear(dst);
	*dst = n;
	return 0;
nomem:
	usv__meta_clear(&n);
	return -ENOMEM;
}

int usv_netdef_set_meta(usv_netdef *def, const usv_model_meta *meta)
{
	if (!def || !meta)
		return -EINVAL;
	return usv__meta_set(&def->meta, meta);
}

const usv_model_meta *usv_netdef_meta(const usv_netdef *def)
{
	return def ? &def->meta.m : NULL;
}

/* ---------------- truncation ---------------- */

static int tensor_of_layer(const char *tname, const char *layer)
{
	size_t n = strlen(layer);
	return !strncmp(tname, layer, n) && tname[n] == '.';
}

int usv_netdef_truncate(usv_netdef *def, const char *last)
{
	if (!def || !last)
		return -EINVAL;
	int idx = -1;
	for (int i = 0; i < def->n_layers; i++)
		if (!strcmp(def->layers[i].name, last))
			idx = i;
	if (idx < 0)
		return -ENOENT;
	for (int i = idx + 1; i < def->n_layers; i++) {
		for (int t = 0; t < def->n_tensors;) {
			if (tensor_of_layer(def->tensors[t].name, def->layers[i].name)) {
				if (def->tensors[t].owned)
					free(def->tensors[t].data);
				def->tensors[t] = def->tensors[--def->n_tensors];
			} else {
				t++;
			}
		}
	}
	def->n_layers = idx + 1;
	char *ol = dupstr(last, USV_NAME_MAX);
	if (!ol)
		return -ENOMEM;
	free(def->meta.output_layer);
	def->meta.output_layer = ol;
	def->meta.m.output_layer = ol;
	def->meta.m.output_is_prob = def->layers[idx].type == USV_LAYER_SOFTMAX;
	return 0;
}

/* ---------------- validation and shape inference ---------------- */

#define FAIL(code, ...)                                                                            \
	do {                                                                                       \
		char _m[256];                                                                      \
		snprintf(_m, sizeof _m, __VA_ARGS__);                                              \
		return usv_seterr(errbuf, errlen, code, "%s: layer '%s': %s", file, l->name, _m);  \
	} while (0)

static int check_tensor(const usv_netdef *def, const usv_layer_def *l, const char *suffix, int ndim,
                        const int64_t *want, int64_t flat, const char *file, char *errbuf,
                        size_t errlen)
{
	char tn[USV_NAME_MAX + 16];
	snprintf(tn, sizeof tn, "%s.%s", l->name, suffix);
	usv_tensor *t = usv__find_tensor(def, tn);
	if (!t)
		FAIL(-USV_ERR_FORMAT, "missing tensor %s", tn);
	if (flat) {
		/* inner product: [out, in] or [out, C, H, W] with C*H*W == in */
		int64_t rest = 1;
		for (int i = 1; i < t->ndim; i++)
			rest *= t->shape[i];
		if (t->ndim < 2 || t->shape[0] != want[0] || rest != flat)
			FAIL(-USV_ERR_FORMAT, "tensor %s should be [%lld, %lld]", tn,
			     (long long)want[0], (long long)flat);
		return 0;
	}
	int ok = t->ndim == ndim;
	for (int i = 0; ok && i < ndim; i++)
		ok = t->shape[i] == want[i];
	if (!ok) {
		if (ndim == 4)
			FAIL(-USV_ERR_FORMAT, "tensor %s should be [%lld, %lld, %lld, %lld]", tn,
			     (long long)want[0], (long long)want[1], (long long)want[2],
			     (long long)want[3]);
		FAIL(-USV_ERR_FORMAT, "tensor %s should be [%lld]", tn, (long long)want[0]);
	}
	return 0;
}

/* Output extent of a window op along one axis. */
static int window_out(const usv_layer_def *l, int in, int k, int s, int *p0, int *p1, int pooling)
{
	if (l->pad_mode == USV_PAD_SAME) {
		int o = (in + s - 1) / s;
		int tot = (o - 1) * s + k - in;
		if (tot < 0)
			tot = 0;
		*p0 = tot / 2;
		*p1 = tot - *p0;
		return o;
	}
	if (l->pad_mode == USV_PAD_VALID) {
		*p0 = *p1 = 0;
		if (in < k)
			return -1;
		return (in - k) / s + 1;
	}
	return (int)usv__window_out(in, k, s, *p0, *p1, pooling && l->ceil_mode);
}

int usv__infer(const usv_netdef *def, usv_geom *g, const char *file, char *errbuf, size_t errlen)
{
	if (!file)
		file = "netdef";
	const usv_model_meta *m = &def->meta.m;
	if (m->input_c < 1 || m->input_h < 1 || m->input_w < 1)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: input size not set", file);
	if (def->n_layers < 1)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no layers", file);
	for (int i = 0; i < def->n_layers; i++) {
		const usv_layer_def *l = &def->layers[i];
		usv_geom *o = &g[i];
		memset(o, 0, sizeof *o);
		if (!layer_fields_ok(l))
			FAIL(-USV_ERR_FORMAT, "bad field value");
		for (int j = 0; j < i; j++)
			if (!strcmp(def->layers[j].name, l->name))
				FAIL(-USV_ERR_FORMAT, "duplicate layer name");
		for (int k = 0; k < USV_MAX_INPUTS; k++)
			o->in[k] = -1;
		for (int k = 0; k < l->n_inputs; k++) {
			int src = -2;
			if (!strcmp(l->inputs[k], "data"))
				src = -1;
			for (int j = 0; j < i && src == -2; j++)
				if (!strcmp(def->layers[j].name, l->inputs[k]))
					src = j;
			if (src == -2)
				FAIL(-USV_ERR_FORMAT, "input '%s' is not an earlier layer",
				     l->inputs[k]);
			o->in[k] = src;
			o->in_c[k] = src < 0 ? m->input_c : g[src].c;
		}
		int ic, ih, iw;
		if (o->in[0] < 0) {
			ic = m->input_c, ih = m->input_h, iw = m->input_w;
		} else {
			ic = g[o->in[0]].c, ih = g[o->in[0]].h, iw = g[o->in[0]].w;
		}
		o->ic = ic, o->ih = ih, o->iw = iw;
		o->c = ic, o->h = ih, o->w = iw;
		o->pt = l->pad_t, o->pb = l->pad_b, o->pl = l->pad_l, o->pr = l->pad_r;
		int pooling = l->type == USV_LAYER_MAXPOOL || l->type == USV_LAYER_AVEPOOL;
		switch (l->type) {
		case USV_LAYER_CONV: {
			if (ic % l->group || l->num_output % l->group)
				FAIL(-USV_ERR_FORMAT,
				     "channels %d / outputs %d not divisible by group %d", ic,
				     l->num_output, l->group);
			int64_t w[4] = {l->num_output, ic / l->group, l->kernel_h, l->kernel_w};
			int rc = check_tensor(def, l, "weight", 4, w, 0, file, errbuf, errlen);
			if (rc)
				return rc;
			if (l->has_bias) {
				rc = check_tensor(def, l, "bias", 1, w, 0, file, errbuf, errlen);
				if (rc)
					return rc;
			}
			o->c = l->num_output;
		}
			/* fall through */
		case USV_LAYER_MAXPOOL:
		case USV_LAYER_AVEPOOL:
			o->h = window_out(l, ih, l->kernel_h, l->stride_h, &o->pt, &o->pb, pooling);
			o->w = window_out(l, iw, l->kernel_w, l->stride_w, &o->pl, &o->pr, pooling);
			if (o->h < 1 || o->w < 1)
				FAIL(-USV_ERR_FORMAT, "kernel %dx%d larger than padded input %dx%d",
				     l->kernel_h, l->kernel_w, ih, iw);
			break;
		case USV_LAYER_GLOBAL_AVEPOOL:
			o->h = o->w = 1;
			break;
		case USV_LAYER_FC: {
			int64_t w[1] = {l->num_output};
			int64_t flat = (int64_t)ic * ih * iw;
			int rc = check_tensor(def, l, "weight", 2, w, flat, file, errbuf, errlen);
			if (rc)
				return rc;
			if (l->has_bias) {
				rc = check_tensor(def, l, "bias", 1, w, 0, file, errbuf, errlen);
				if (rc)
					return rc;
			}
			o->c = l->num_output, o->h = o->w = 1;
			break;
		}
		case USV_LAYER_FLATTEN:
			if ((int64_t)ic * ih * iw > USV_MAX_DIM)
				FAIL(-USV_ERR_LIMIT, "too large to flatten");
			o->c = ic * ih * iw, o->h = o->w = 1;
			break;
		case USV_LAYER_ADD:
		case USV_LAYER_CONCAT: {
			int64_t csum = 0;
			for (int k = 0; k < l->n_inputs; k++) {
				int s = o->in[k];
				int c = s < 0 ? m->input_c : g[s].c;
				int h = s < 0 ? m->input_h : g[s].h;
				int w = s < 0 ? m->input_w : g[s].w;
				if (h != ih || w != iw || (l->type == USV_LAYER_ADD && c != ic))
					FAIL(-USV_ERR_FORMAT, "input '%s' has a different shape",
					     l->inputs[k]);
				csum += c;
			}
			if (l->type == USV_LAYER_CONCAT) {
				if (csum > USV_MAX_DIM)
					FAIL(-USV_ERR_LIMIT, "too many channels");
				o->c = (int)csum;
			}
			break;
		}
		default:
			break;
		}
		if ((int64_t)o->c * o->h * o->w > USV_MAX_BLOB)
			FAIL(-USV_ERR_LIMIT, "output %dx%dx%d too large", o->c, o->h, o->w);
	}
	if (m->output_layer) {
		int found = 0;
		for (int i = 0; i < def->n_layers; i++)
			found |= !strcmp(def->layers[i].name, m->output_layer);
		if (!found)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: output layer '%s' does not exist", file,
			                  m->output_layer);
	}
	return 0;
}

int usv_netdef_validate(const usv_netdef *def, char *errbuf, size_t errlen)
{
	if (!def)
		return -EINVAL;
	usv_geom *g = calloc((size_t)(def->n_layers ? def->n_layers : 1), sizeof *g);
	if (!g)
		return -ENOMEM;
	int rc = usv__infer(def, g, NULL, errbuf, errlen);
	free(g);
	return rc;
}
