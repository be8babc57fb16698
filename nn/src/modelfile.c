/*
 * NAME
 *	modelfile.c - usview model files (safetensors layout) and
 *	usv_netdef_write() / usv_netdef_read()
 *
 * DESCRIPTION
 *	Layout: u64 little-endian header length H, H bytes of JSON, then the
 *	tensor data. The JSON is padded with spaces so the data starts at a
 *	multiple of 64 and every data_offsets begin is a multiple of 64, which
 *	keeps every tensor 64-byte aligned when the file is mmap()ed. See
 *	docs/model-format.md. The parser trusts nothing: every length, offset,
 *	shape, name and layer field is checked before use.
 */
#include "nn_internal.h"

#include "usv/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const pad_names[] = {"explicit", "same", "valid"};
static const char *const act_names[] = {"none", "relu", "relu6"};

/* ---------------- writing ---------------- */

static cJSON *int_array(const int *v, int n)
{
	return cJSON_CreateIntArray(v, n);
}

static cJSON *layer_json(const usv_layer_def *l)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "name", l->name);
	cJSON_AddStringToObject(o, "type", usv__layer_type_name(l->type));
	cJSON *in = cJSON_AddArrayToObject(o, "inputs");
	for (int i = 0; in && i < l->n_inputs; i++)
		cJSON_AddItemToArray(in, cJSON_CreateString(l->inputs[i]));
	cJSON_AddNumberToObject(o, "num_output", l->num_output);
	int k[2] = {l->kernel_h, l->kernel_w}, s[2] = {l->stride_h, l->stride_w};
	int p[4] = {l->pad_t, l->pad_b, l->pad_l, l->pad_r};
	cJSON_AddItemToObject(o, "kernel", int_array(k, 2));
	cJSON_AddItemToObject(o, "stride", int_array(s, 2));
	cJSON_AddItemToObject(o, "pad", int_array(p, 4));
	cJSON_AddStringToObject(o, "pad_mode", pad_names[l->pad_mode]);
	cJSON_AddNumberToObject(o, "group", l->group);
	cJSON_AddBoolToObject(o, "has_bias", l->has_bias != 0);
	cJSON_AddBoolToObject(o, "ceil_mode", l->ceil_mode != 0);
	cJSON_AddStringToObject(o, "act", act_names[l->act]);
	cJSON_AddNumberToObject(o, "local_size", l->local_size);
	cJSON_AddNumberToObject(o, "alpha", l->alpha);
	cJSON_AddNumberToObject(o, "beta", l->beta);
	cJSON_AddNumberToObject(o, "k", l->k);
	cJSON_AddNumberToObject(o, "dropout_ratio", l->dropout_ratio);
	return o;
}

static cJSON *meta_json(const usv_model_meta *m)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "arch", m->arch);
	cJSON_AddStringToObject(o, "name", m->name);
	int in[3] = {m->input_c, m->input_h, m->input_w}, rs[2] = {m->resize_h, m->resize_w};
	cJSON_AddItemToObject(o, "input", int_array(in, 3));
	cJSON_AddItemToObject(o, "resize", int_array(rs, 2));
	cJSON_AddStringToObject(o, "channel_order", m->channel_order == USV_BGR ? "BGR" : "RGB");
	cJSON_AddNumberToObject(o, "scale", m->scale);
	cJSON *mr = cJSON_AddArrayToObject(o, "mean_rgb");
	for (int i = 0; mr && i < 3; i++)
		cJSON_AddItemToArray(mr, cJSON_CreateNumber(m->mean_rgb[i]));
	cJSON *lb = cJSON_AddArrayToObject(o, "labels");
	for (int i = 0; lb && i < m->n_labels; i++)
		cJSON_AddItemToArray(lb, cJSON_CreateString(m->labels[i]));
	if (m->output_layer)
		cJSON_AddStringToObject(o, "output_layer", m->output_layer);
	else
		cJSON_AddNullToObject(o, "output_layer");
	cJSON_AddBoolToObject(o, "output_is_prob", m->output_is_prob != 0);
	/* absent = 1, so files of uncalibrated models stay as they were */
	if (m->temperature != 0 && m->temperature != 1.0f)
		cJSON_AddNumberToObject(o, "temperature", m->temperature);
	/* absent = 1 (files from before the key stay byte for byte the same) */
	if (m->test_views > 1)
		cJSON_AddNumberToObject(o, "test_views", m->test_views);
	cJSON *prov = m->provenance_json ? cJSON_Parse(m->provenance_json) : NULL;
	if (prov)
		cJSON_AddItemToObject(o, "provenance", prov);
	else if (m->provenance_json)
		cJSON_AddStringToObject(o, "provenance", m->provenance_json);
	else
		cJSON_AddNullToObject(o, "provenance");
	return o;
}

struct wtensor {
	const char *name;
	int ndim;
	int64_t shape[4];
	const float *data;
	size_t bytes;
	uint64_t off;
};

struct wctx {
	char *header;
	size_t hlen; /* padded */
	struct wtensor *t;
	int nt;
};

static int fill_model(FILE *f, void *p)
{
	struct wctx *c = p;
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)((uint64_t)c->hlen >> (8 * i));
	if (fwrite(le, 1, 8, f) != 8 || fwrite(c->header, 1, c->hlen, f) != c->hlen)
		return -EIO;
	static const char zeros[64];
	uint64_t pos = 0;
	for (int i = 0; i < c->nt; i++) {
		if (c->t[i].off > pos &&
		    fwrite(zeros, 1, c->t[i].off - pos, f) != c->t[i].off - pos)
			return -EIO;
		if (c->t[i].bytes && fwrite(c->t[i].data, 1, c->t[i].bytes, f) != c->t[i].bytes)
			return -EIO;
		pos = c->t[i].off + c->t[i].bytes;
	}
	return 0;
}

int usv_netdef_write(const usv_netdef *def, const char *path, char *errbuf, size_t errlen)
{
	if (!def || !path)
		return -EINVAL;
	int rc = usv_netdef_validate(def, errbuf, errlen);
	if (rc)
		return rc;
	const usv_model_meta *m = &def->meta.m;
	struct wctx c = {0};
	c.t = calloc((size_t)def->n_tensors + 1, sizeof *c.t);
	cJSON *hdr = cJSON_CreateObject(), *doc = cJSON_CreateObject();
	if (!c.t || !hdr || !doc) {
		rc = -ENOMEM;
		goto out;
	}
	uint64_t off = 0;
	for (int i = 0; i <= def->n_tensors; i++) {
		struct wtensor *w = &c.t[c.nt];
		if (i < def->n_tensors) {
			const usv_tensor *t = &def->tensors[i];
			if (!strcmp(t->name, "__mean__"))
				continue;
			w->name = t->name;
			w->ndim = t->ndim;
			memcpy(w->shape, t->shape, sizeof w->shape);
			w->data = t->data;
			w->bytes = t->count * sizeof(float);
		} else {
			if (!m->mean_image)
				break;
			w->name = "__mean__";
			w->ndim = 3;
			w->shape[0] = m->input_c, w->shape[1] = m->resize_h,
			w->shape[2] = m->resize_w;
			w->data = m->mean_image;
			w->bytes = (size_t)m->input_c * m->resize_h * m->resize_w * sizeof(float);
		}
		w->off = off;
		off = (off + w->bytes + 63) / 64 * 64;
		cJSON *e = cJSON_CreateObject();
		cJSON_AddItemToObject(hdr, w->name, e);
		cJSON_AddStringToObject(e, "dtype", "F32");
		cJSON *sh = cJSON_AddArrayToObject(e, "shape");
		for (int d = 0; d < w->ndim; d++)
			cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w->shape[d]));
		cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)w->off));
		cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(w->off + w->bytes)));
		c.nt++;
	}
	cJSON_AddNumberToObject(doc, "format_version", USV_MODEL_FORMAT_VERSION);
	cJSON *layers = cJSON_AddArrayToObject(doc, "layers");
	for (int i = 0; i < def->n_layers; i++)
		cJSON_AddItemToArray(layers, layer_json(&def->layers[i]));
	cJSON_AddItemToObject(doc, "meta", meta_json(m));
	char *doc_txt = cJSON_PrintUnformatted(doc);
	if (!doc_txt) {
		rc = -ENOMEM;
		goto out;
	}
	cJSON *md = cJSON_CreateObject();
	cJSON_AddStringToObject(md, "usview", doc_txt);
	free(doc_txt);
	cJSON_AddItemToObject(hdr, "__metadata__", md);
	char *txt = cJSON_PrintUnformatted(hdr);
	if (!txt) {
		rc = -ENOMEM;
		goto out;
	}
	size_t len = strlen(txt);
	size_t padded = (8 + len + 63) / 64 * 64 - 8;
	c.header = malloc(padded);
	if (!c.header) {
		free(txt);
		rc = -ENOMEM;
		goto out;
	}
	memcpy(c.header, txt, len);
	memset(c.header + len, ' ', padded - len);
	c.hlen = padded;
	free(txt);
	if (c.hlen > USV_MAX_HEADER) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: header too large", path);
		goto out;
	}
	rc = usv__write_atomic(path, fill_model, &c, errbuf, errlen);
out:
	if (rc == -ENOMEM)
		usv_seterr(errbuf, errlen, rc, "%s: out of memory", path);
	cJSON_Delete(hdr);
	cJSON_Delete(doc);
	free(c.header);
	free(c.t);
	return rc;
}

/* ---------------- parsing ---------------- */

#define PERR(code, ...)                                                                            \
	do {                                                                                       \
		char _m[256];                                                                      \
		snprintf(_m, sizeof _m, __VA_ARGS__);                                              \
		rc = usv_seterr(errbuf, errlen, code, "%s: %s", path, _m);                         \
		goto out;                                                                          \
	} while (0)

/* An integral JSON number in [lo, hi]. */
static int as_int64(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
		return -1;
	*out = (int64_t)d;
	return 0;
}

/* Optional integer field (absent = 0). */
static int get_int(const cJSON *o, const char *key, int lo, int hi, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v)) {
		*out = 0;
		return 0;
	}
	if (cJSON_IsBool(v)) {
		*out = cJSON_IsTrue(v);
		return 0;
	}
	int64_t x;
	if (as_int64(v, lo, hi, &x))
		return -1;
	*out = (int)x;
	return 0;
}

static int get_float(const cJSON *o, const char *key, float *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v || cJSON_IsNull(v)) {
		*out = 0;
		return 0;
	}
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
		return -1;
	*out = (float)v->valuedouble;
	return 0;
}

static int get_ints(const cJSON *o, const char *key, int n, int lo, int hi, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	for (int i = 0; i < n; i++)
		out[i] = 0;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
		return -1;
	for (int i = 0; i < n; i++) {
		int64_t x;
		if (as_int64(cJSON_GetArrayItem(v, i), lo, hi, &x))
			return -1;
		out[i] = (int)x;
	}
	return 0;
}

static int get_enum(const cJSON *o, const char *key, const char *const *names, int n, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	*out = 0;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return -1;
	for (int i = 0; i < n; i++)
		if (!strcmp(v->valuestring, names[i])) {
			*out = i;
			return 0;
		}
	return -1;
}

static int copy_name(char *dst, const cJSON *v)
{
	if (!cJSON_IsString(v) || strlen(v->valuestring) >= USV_NAME_MAX || !v->valuestring[0])
		return -1;
	snprintf(dst, USV_NAME_MAX, "%s", v->valuestring);
	return 0;
}

static int parse_layer(const cJSON *o, usv_layer_def *l)
{
	memset(l, 0, sizeof *l);
	if (!cJSON_IsObject(o) || copy_name(l->name, cJSON_GetObjectItemCaseSensitive(o, "name")))
		return -1;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
	int ty = cJSON_IsString(t) ? usv__layer_type_from_name(t->valuestring) : -1;
	if (ty < 0)
		return -2;
	l->type = (usv_layer_type)ty;
	const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "inputs");
	if (!cJSON_IsArray(in))
		return -1;
	int n = cJSON_GetArraySize(in);
	if (n < 1 || n > USV_MAX_INPUTS)
		return -1;
	l->n_inputs = n;
	for (int i = 0; i < n; i++)
		if (copy_name(l->inputs[i], cJSON_GetArrayItem(in, i)))
			return -1;
	const int big = 1 << 24;
	int k[2], s[2], p[4], pm, act;
	if (get_int(o, "num_output", 0, big, &l->num_output) ||
	    get_ints(o, "kernel", 2, 0, big, k) || get_ints(o, "stride", 2, 0, big, s) ||
	    get_ints(o, "pad", 4, 0, big, p) || get_enum(o, "pad_mode", pad_names, 3, &pm) ||
	    get_int(o, "group", 0, big, &l->group) || get_int(o, "has_bias", 0, 1, &l->has_bias) ||
	    get_int(o, "ceil_mode", 0, 1, &l->ceil_mode) ||
	    get_enum(o, "act", act_names, 3, &act) ||
	    get_int(o, "local_size", 0, big, &l->local_size) || get_float(o, "alpha", &l->alpha) ||
	    get_float(o, "beta", &l->beta) || get_float(o, "k", &l->k) ||
	    get_float(o, "dropout_ratio", &l->dropout_ratio))
		return -1;
	l->kernel_h = k[0], l->kernel_w = k[1], l->stride_h = s[0], l->stride_w = s[1];
	l->pad_t = p[0], l->pad_b = p[1], l->pad_l = p[2], l->pad_r = p[3];
	l->pad_mode = (usv_pad_mode)pm;
	l->act = (usv_act)act;
	return 0;
}

static int parse_meta(const cJSON *o, usv_model_meta *m, const char ***labels_out, char **prov_out)
{
	memset(m, 0, sizeof *m);
	if (!cJSON_IsObject(o))
		return -1;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "arch");
	if (cJSON_IsString(v))
		snprintf(m->arch, sizeof m->arch, "%s", v->valuestring);
	v = cJSON_GetObjectItemCaseSensitive(o, "name");
	if (cJSON_IsString(v))
		snprintf(m->name, sizeof m->name, "%s", v->valuestring);
	int in[3], rs[2];
	if (get_ints(o, "input", 3, 0, 16384, in) || get_ints(o, "resize", 2, 0, 16384, rs))
		return -1;
	m->input_c = in[0], m->input_h = in[1], m->input_w = in[2];
	m->resize_h = rs[0], m->resize_w = rs[1];
	v = cJSON_GetObjectItemCaseSensitive(o, "channel_order");
	if (cJSON_IsString(v) && !strcmp(v->valuestring, "BGR"))
		m->channel_order = USV_BGR;
	else if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "RGB")))
		return -1;
	if (get_float(o, "scale", &m->scale))
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(o, "mean_rgb");
	if (v) {
		if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
			return -1;
		for (int i = 0; i < 3; i++) {
			const cJSON *x = cJSON_GetArrayItem(v, i);
			if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
				return -1;
			m->mean_rgb[i] = (float)x->valuedouble;
		}
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "labels");
	if (v) {
		if (!cJSON_IsArray(v))
			return -1;
		int n = cJSON_GetArraySize(v);
		if (n > USV_MAX_LABELS)
			return -1;
		const char **lab = calloc((size_t)(n ? n : 1), sizeof *lab);
		if (!lab)
			return -1;
		for (int i = 0; i < n; i++) {
			const cJSON *x = cJSON_GetArrayItem(v, i);
			if (!cJSON_IsString(x) || strlen(x->valuestring) >= USV_LABEL_MAX) {
				free(lab);
				return -1;
			}
			lab[i] = x->valuestring;
		}
		m->n_labels = n;
		m->labels = lab;
		*labels_out = lab;
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "output_layer");
	if (cJSON_IsString(v))
		m->output_layer = v->valuestring;
	else if (v && !cJSON_IsNull(v))
		return -1;
	if (get_int(o, "output_is_prob", 0, 1, &m->output_is_prob))
		return -1;
	if (get_int(o, "test_views", 0, USV_MAX_VIEWS, &m->test_views))
		return -1;
	if (m->test_views == 0)
		m->test_views = 1;
	/* meta.temperature: range-checked by the caller, which names it */
	v = cJSON_GetObjectItemCaseSensitive(o, "temperature");
	if (!v || cJSON_IsNull(v))
		m->temperature = 1.0f;
	else if (cJSON_IsNumber(v))
		m->temperature = isfinite(v->valuedouble) && fabs(v->valuedouble) < 1e30
		                     ? (float)v->valuedouble
		                     : NAN;
	else
		m->temperature = NAN;
	v = cJSON_GetObjectItemCaseSensitive(o, "provenance");
	if (cJSON_IsString(v)) {
		m->provenance_json = v->valuestring;
	} else if (v && !cJSON_IsNull(v)) {
		*prov_out = cJSON_PrintUnformatted(v);
		m->provenance_json = *prov_out;
	}
	return 0;
}

int usv__parse_model(const char *path, const uint8_t *map, size_t len, int borrow, usv_netdef **out,
                     char *errbuf, size_t errlen)
{
	int rc = 0;
	cJSON *hdr = NULL, *doc = NULL;
	usv_netdef *def = NULL;
	const char **labels = NULL;
	char *prov = NULL;
	*out = NULL;
	if (len < 8)
		PERR(-USV_ERR_FORMAT, "file too short for a model header");
	uint64_t hlen = 0;
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)map[i] << (8 * i);
	if (hlen > USV_MAX_HEADER)
		PERR(-USV_ERR_LIMIT, "header length %llu exceeds the cap",
		     (unsigned long long)hlen);
	if (hlen > len - 8)
		PERR(-USV_ERR_FORMAT, "header length %llu beyond the end of the file",
		     (unsigned long long)hlen);
	hdr = cJSON_ParseWithLength((const char *)map + 8, (size_t)hlen);
	if (!cJSON_IsObject(hdr))
		PERR(-USV_ERR_FORMAT, "header is not a JSON object");
	const uint8_t *data = map + 8 + hlen;
	uint64_t dlen = len - 8 - hlen;
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
	const cJSON *us = md ? cJSON_GetObjectItemCaseSensitive(md, "usview") : NULL;
	if (!cJSON_IsString(us))
		PERR(-USV_ERR_FORMAT, "no __metadata__.usview: not a usview model");
	doc = cJSON_Parse(us->valuestring);
	if (!cJSON_IsObject(doc))
		PERR(-USV_ERR_FORMAT, "__metadata__.usview is not a JSON object");
	int64_t ver;
	if (as_int64(cJSON_GetObjectItemCaseSensitive(doc, "format_version"), 0, 1 << 20, &ver))
		PERR(-USV_ERR_FORMAT, "format_version missing");
	if (ver != USV_MODEL_FORMAT_VERSION)
		PERR(-USV_ERR_UNSUPPORTED, "format_version %lld not supported", (long long)ver);
	if ((rc = usv_netdef_new(&def)))
		PERR(rc, "out of memory");
	usv_model_meta meta;
	if (parse_meta(cJSON_GetObjectItemCaseSensitive(doc, "meta"), &meta, &labels, &prov))
		PERR(-USV_ERR_FORMAT, "bad meta object");
	if (!(meta.temperature >= USV_TEMPERATURE_MIN && meta.temperature <= USV_TEMPERATURE_MAX))
		PERR(-USV_ERR_FORMAT, "meta.temperature must be a number in [%g, %g]",
		     (double)USV_TEMPERATURE_MIN, (double)USV_TEMPERATURE_MAX);
	if (!usv_views_valid(meta.test_views))
		PERR(-USV_ERR_FORMAT, "meta.test_views must be 1, 2 or 10 (found %d)",
		     meta.test_views);
	/* tensors */
	const float *mean = NULL;
	int n_entries = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, hdr)
	{
		if (!strcmp(e->string, "__metadata__"))
			continue;
		if (++n_entries > USV_MAX_TENSORS)
			PERR(-USV_ERR_LIMIT, "too many tensors");
		if (strlen(e->string) >= USV_NAME_MAX || !e->string[0])
			PERR(-USV_ERR_FORMAT, "bad tensor name");
		const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
		if (!cJSON_IsString(dt))
			PERR(-USV_ERR_FORMAT, "tensor %s: no dtype", e->string);
		if (strcmp(dt->valuestring, "F32"))
			PERR(-USV_ERR_UNSUPPORTED, "tensor %s: dtype %.16s (only F32)", e->string,
			     dt->valuestring);
		const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
		const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
		if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > 4 || !cJSON_IsArray(of) ||
		    cJSON_GetArraySize(of) != 2)
			PERR(-USV_ERR_FORMAT, "tensor %s: bad shape or data_offsets", e->string);
		int nd = cJSON_GetArraySize(sh);
		int64_t shape[4] = {0}, count = 1, b, en;
		for (int i = 0; i < nd; i++) {
			if (as_int64(cJSON_GetArrayItem(sh, i), 1, USV_MAX_TENSOR, &shape[i]))
				PERR(-USV_ERR_FORMAT, "tensor %s: bad dimension", e->string);
			count *= shape[i];
			if (count > USV_MAX_TENSOR)
				PERR(-USV_ERR_LIMIT, "tensor %s too large", e->string);
		}
		if (as_int64(cJSON_GetArrayItem(of, 0), 0, INT64_C(1) << 52, &b) ||
		    as_int64(cJSON_GetArrayItem(of, 1), 0, INT64_C(1) << 52, &en) || en < b)
			PERR(-USV_ERR_FORMAT, "tensor %s: bad data_offsets", e->string);
		if ((uint64_t)en > dlen)
			PERR(-USV_ERR_FORMAT, "tensor %s: data_offsets beyond the end of the file",
			     e->string);
		if (en - b != count * 4)
			PERR(-USV_ERR_FORMAT, "tensor %s: %lld bytes for %lld floats", e->string,
			     (long long)(en - b), (long long)count);
		if ((8 + hlen + (uint64_t)b) % 4)
			PERR(-USV_ERR_FORMAT, "tensor %s: misaligned data", e->string);
		float *p = (float *)(void *)(data + b);
		if (!strcmp(e->string, "__mean__")) {
			if (nd != 3 || shape[0] != meta.input_c || shape[1] != meta.resize_h ||
			    shape[2] != meta.resize_w)
				PERR(-USV_ERR_FORMAT, "__mean__ shape does not match input/resize");
			mean = p;
			continue;
		}
		rc = borrow ? usv__netdef_add_borrowed(def, e->string, nd, shape, p)
		            : usv_netdef_add_tensor(def, e->string, nd, shape, p);
		if (rc)
			PERR(rc, "tensor %s: %s", e->string, usv_strerror(rc));
	}
	meta.mean_image = mean;
	if ((rc = usv__meta_set(&def->meta, &meta)))
		PERR(rc == -EINVAL ? -USV_ERR_FORMAT : rc, "bad meta values");
	/* layers */
	const cJSON *ls = cJSON_GetObjectItemCaseSensitive(doc, "layers");
	if (!cJSON_IsArray(ls))
		PERR(-USV_ERR_FORMAT, "no layer list");
	if (cJSON_GetArraySize(ls) > USV_MAX_LAYERS)
		PERR(-USV_ERR_LIMIT, "more than %d layers", USV_MAX_LAYERS);
	int idx = 0;
	cJSON_ArrayForEach(e, ls)
	{
		usv_layer_def l;
		int pr = parse_layer(e, &l);
		if (pr == -2)
			PERR(-USV_ERR_UNSUPPORTED, "layer %d ('%s'): unknown layer type", idx,
			     l.name);
		if (pr)
			PERR(-USV_ERR_FORMAT, "layer %d: malformed", idx);
		rc = usv_netdef_add_layer(def, &l);
		if (rc)
			PERR(-USV_ERR_FORMAT, "layer %d ('%s'): %s", idx, l.name,
			     rc == -EEXIST ? "duplicate name" : "bad field value");
		idx++;
	}
	usv_geom *g = calloc((size_t)(def->n_layers ? def->n_layers : 1), sizeof *g);
	if (!g)
		PERR(-ENOMEM, "out of memory");
	rc = usv__infer(def, g, path, errbuf, errlen);
	free(g);
	if (rc)
		goto out;
	*out = def;
	def = NULL;
out:
	usv_netdef_free(def);
	free(labels);
	free(prov);
	cJSON_Delete(hdr);
	cJSON_Delete(doc);
	return rc;
}

int usv_netdef_read(const char *path, usv_netdef **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	void *map;
	size_t len;
	int rc = usv__map_file(path, &map, &len, errbuf, errlen);
	if (rc)
		return rc;
	static const uint8_t empty[1];
	rc = usv__parse_model(path, map ? map : empty, len, 0, out, errbuf, errlen);
	if (map)
		munmap(map, len);
	return rc;
}
