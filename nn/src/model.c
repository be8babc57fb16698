/*
 * NAME
 *	model.c - immutable compiled models and per-thread sessions
 *
 * DESCRIPTION
 *	A usv_model owns a netdef (whose tensors either point into the
 *	read-only mapping of the model file or are owned 64-byte aligned
 *	copies), the resolved geometry of each layer and the kernel chosen
 *	for it. Nothing in it changes after creation, so any number of
 *	sessions on any threads may share it.
 *
 *	A usv_session plans its memory once: the layers up to the end layer
 *	are run in order; each output gets an activation buffer, reused by a
 *	later layer once every consumer has run (liveness), ReLU / ReLU6 /
 *	dropout / flatten run in place on a buffer nobody else reads later,
 *	and a ReLU that is the only consumer of a convolution, inner product
 *	or add is fused into that layer's output pass. A 2x2 stride-2 max
 *	pooling that is the only consumer of such a convolution (or of its
 *	fused ReLU) is fused too when the kernel can (fuse_maxpool2: Winograd,
 *	VGG16's five pools): the convolution writes the pooled output, and the
 *	full-size one never exists. With keep_all set nothing is reused or
 *	fused, so usv_session_blob() sees every layer.
 *	The scratch buffer (im2col, transposes) is sized for the largest
 *	layer. usv_session_run() allocates nothing.
 *
 *	Kernel choice: per model, from the usv_model_opts given to the
 *	builder (usv__fast_select()); nothing process-wide is read.
 *
 *	Threads: a session's threads are its own pool (usv_exec); every
 *	kernel that calls OpenBLAS is pooled and calls it single-threaded
 *	from each task. A run changes no process-wide setting: OpenBLAS's
 *	thread count is main()'s (usv_nn_set_threads()), so sessions with
 *	different thread counts may run at the same time on other threads.
 */
#include "kernels.h"
#include "kern_fast.h"

#include "usv/err.h"
#include "usv/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int);
int openblas_get_num_threads(void);

struct usv_model {
	usv_meta_store meta;
	int n;
	usv_mlayer *L;
	usv_netdef *def;
	void *map;
	size_t map_len;
};

void usv_nn_set_threads(int n)
{
	openblas_set_num_threads(n < 1 ? 1 : n);
}

int usv_nn_get_threads(void)
{
	return openblas_get_num_threads();
}

usv_model_opts usv_model_opts_default(void)
{
	return (usv_model_opts){.winograd = 1, .bf16 = USV_BF16_OFF};
}

/* Takes ownership of def (and of map) in every case. opts NULL: defaults. */
static int build(usv_netdef *def, void *map, size_t map_len, const char *file,
                 const usv_model_opts *opts, usv_model **out, char *errbuf, size_t errlen)
{
	const usv_model_opts o = opts ? *opts : usv_model_opts_default();
	*out = NULL;
	usv_model *m = calloc(1, sizeof *m);
	int rc = -ENOMEM;
	if (!m)
		goto fail;
	m->def = def;
	m->map = map;
	m->map_len = map_len;
	def = NULL;
	map = NULL;
	m->n = m->def->n_layers;
	m->L = calloc((size_t)(m->n ? m->n : 1), sizeof *m->L);
	usv_geom *g = calloc((size_t)(m->n ? m->n : 1), sizeof *g);
	if (!m->L || !g) {
		free(g);
		goto fail;
	}
	rc = usv__infer(m->def, g, file, errbuf, errlen);
	if (rc) {
		free(g);
		goto fail;
	}
	for (int i = 0; i < m->n; i++) {
		usv_mlayer *L = &m->L[i];
		L->def = m->def->layers[i];
		L->g = g[i];
		char tn[USV_NAME_MAX + 16];
		if (L->def.type == USV_LAYER_CONV || L->def.type == USV_LAYER_FC) {
			snprintf(tn, sizeof tn, "%s.weight", L->def.name);
			L->weight = usv__find_tensor(m->def, tn)->data;
			if (L->def.has_bias) {
				snprintf(tn, sizeof tn, "%s.bias", L->def.name);
				L->bias = usv__find_tensor(m->def, tn)->data;
			}
		}
		L->weight_mapped = m->map != NULL && L->weight != NULL;
		L->impl = usv__choose_impl(L);
		usv__fast_select(L, &o); /* may switch to a fast kernel: kern_select.c */
	}
	free(g);
	rc = usv__meta_set(&m->meta, &m->def->meta.m);
	if (rc)
		goto fail;
	if (!m->meta.m.output_layer) {
		/* default: the last layer */
		m->meta.output_layer = strdup(m->L[m->n - 1].def.name);
		if (!m->meta.output_layer) {
			rc = -ENOMEM;
			goto fail;
		}
		m->meta.m.output_layer = m->meta.output_layer;
		m->meta.m.output_is_prob = m->L[m->n - 1].def.type == USV_LAYER_SOFTMAX;
	}
	if (o.temperature != 0) {
		if (!(o.temperature >= USV_TEMPERATURE_MIN &&
		      o.temperature <= USV_TEMPERATURE_MAX)) {
			rc = usv_seterr(errbuf, errlen, -EINVAL,
			                "%s: temperature %g outside [%g, %g]", file,
			                (double)o.temperature, (double)USV_TEMPERATURE_MIN,
			                (double)USV_TEMPERATURE_MAX);
			goto fail;
		}
		m->meta.m.temperature = o.temperature;
	}
	/* the calibration temperature belongs to the softmax that produces
	 * the class probabilities: the output layer's, when it is one */
	for (int i = 0; i < m->n; i++)
		if (m->L[i].def.type == USV_LAYER_SOFTMAX &&
		    !strcmp(m->L[i].def.name, m->meta.m.output_layer))
			m->L[i].temperature = m->meta.m.temperature;
	*out = m;
	return 0;
fail:
	if (rc == -ENOMEM)
		usv_seterr(errbuf, errlen, rc, "%s: out of memory", file);
	usv_netdef_free(def);
	if (map)
		munmap(map, map_len);
	usv_model_free(m);
	return rc;
}

int usv_model_from_netdef_take_ex(usv_netdef *def, const usv_model_opts *opts, usv_model **out,
                                  char *errbuf, size_t errlen)
{
	if (!def || !out) {
		usv_netdef_free(def);
		return -EINVAL;
	}
	return build(def, NULL, 0, "netdef", opts, out, errbuf, errlen);
}

int usv_model_from_netdef_take(usv_netdef *def, usv_model **out, char *errbuf, size_t errlen)
{
	return usv_model_from_netdef_take_ex(def, NULL, out, errbuf, errlen);
}

int usv_model_from_netdef_ex(const usv_netdef *def, const usv_model_opts *opts, usv_model **out,
                             char *errbuf, size_t errlen)
{
	if (!def || !out)
		return -EINVAL;
	*out = NULL;
	usv_netdef *c;
	int rc = usv_netdef_new(&c);
	if (rc)
		return rc;
	for (int i = 0; !rc && i < def->n_layers; i++)
		rc = usv_netdef_add_layer(c, &def->layers[i]);
	for (int i = 0; !rc && i < def->n_tensors; i++) {
		const usv_tensor *t = &def->tensors[i];
		rc = usv_netdef_add_tensor(c, t->name, t->ndim, t->shape, t->data);
	}
	if (!rc)
		rc = usv__meta_set(&c->meta, &def->meta.m);
	if (rc) {
		usv_netdef_free(c);
		return usv_seterr(errbuf, errlen, rc, "netdef: %s", usv_strerror(rc));
	}
	return build(c, NULL, 0, "netdef", opts, out, errbuf, errlen);
}

int usv_model_from_netdef(const usv_netdef *def, usv_model **out, char *errbuf, size_t errlen)
{
	return usv_model_from_netdef_ex(def, NULL, out, errbuf, errlen);
}

#define USV_HASH_SLICE ((size_t)32 << 20)

int usv_model_load_ex(const char *path, const usv_model_opts *opts, usv_model **out, char *errbuf,
                      size_t errlen)
{
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	void *map;
	size_t len;
	int rc = usv__map_file(path, &map, &len, errbuf, errlen);
	if (rc)
		return rc;
	if (len < 8) {
		if (map)
			munmap(map, len);
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                  "%s: file too short for a model header", path);
	}
	usv_sha256 h;
	uint8_t d[32];
	usv_sha256_init(&h);
	/* in slices whose pages are released after hashing: the model's
	 * resident size stays that of its packed weights plus what its FP32
	 * layers read (see usv__fast_select) */
	for (size_t off = 0; off < len; off += USV_HASH_SLICE) {
		size_t n = len - off < USV_HASH_SLICE ? len - off : USV_HASH_SLICE;
		usv_sha256_update(&h, (const uint8_t *)map + off, n);
		usv__drop_pages((const uint8_t *)map + off, n);
	}
	usv_sha256_final(&h, d);
	usv_netdef *def;
	rc = usv__parse_model(path, map, len, 1, &def, errbuf, errlen);
	if (rc) {
		munmap(map, len);
		return rc;
	}
	usv_model *m;
	rc = build(def, map, len, path, opts, &m, errbuf, errlen);
	if (rc)
		return rc;
	usv_sha256_hex(d, m->meta.m.sha256);
	*out = m;
	return 0;
}

int usv_model_load(const char *path, usv_model **out, char *errbuf, size_t errlen)
{
	return usv_model_load_ex(path, NULL, out, errbuf, errlen);
}

void usv_model_free(usv_model *m)
{
	if (!m)
		return;
	usv__meta_clear(&m->meta);
	for (int i = 0; m->L && i < m->n; i++)
		free(m->L[i].packed);
	free(m->L);
	usv_netdef_free(m->def);
	if (m->map)
		munmap(m->map, m->map_len);
	free(m);
}

const usv_model_meta *usv_model_get_meta(const usv_model *m)
{
	return m ? &m->meta.m : NULL;
}

float usv_model_temperature(const usv_model *m)
{
	return m && m->meta.m.temperature > 0 ? m->meta.m.temperature : 1.0f;
}

int usv_model_n_layers(const usv_model *m)
{
	return m ? m->n : 0;
}

const char *usv_model_layer_name(const usv_model *m, int i)
{
	return m && i >= 0 && i < m->n ? m->L[i].def.name : NULL;
}

const usv_layer_def *usv_model_layer(const usv_model *m, int i)
{
	return m && i >= 0 && i < m->n ? &m->L[i].def : NULL;
}

const char *usv_model_layer_impl(const usv_model *m, int i)
{
	return m && i >= 0 && i < m->n ? m->L[i].impl->name : NULL;
}

static int find_layer(const usv_model *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (!strcmp(m->L[i].def.name, name))
			return i;
	return -1;
}

int usv_model_layer_shape(const usv_model *m, const char *layer, int chw[3])
{
	if (!m || !layer)
		return -EINVAL;
	if (!strcmp(layer, "data")) {
		chw[0] = m->meta.m.input_c, chw[1] = m->meta.m.input_h, chw[2] = m->meta.m.input_w;
		return 0;
	}
	int i = find_layer(m, layer);
	if (i < 0)
		return -ENOENT;
	chw[0] = m->L[i].g.c, chw[1] = m->L[i].g.h, chw[2] = m->L[i].g.w;
	return 0;
}

/* ---------------- sessions ---------------- */

struct usv_session {
	const usv_model *m;
	int max_batch, threads, end, keep_all;
	int *buf_of;    /* per layer: buffer index */
	usv_act *act;   /* per layer: activation applied by its kernel */
	uint8_t *skip;  /* per layer: fused into its producer, nothing to run */
	uint8_t *pool2; /* per layer: writes the 2x2 max pooling of its output */
	uint8_t *valid; /* per layer: usv_session_blob() may return it */
	int nbufs;
	float **bufs;
	size_t bytes; /* activation buffers */
	float *scratch;
	const float *input;
	int last_n;
	double *prof;   /* per layer ms, with opts.profile */
	usv_pool *pool; /* threads > 1 */
	usv_exec ex;
};

void usv_session_free(usv_session *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nbufs; i++)
		free(s->bufs[i]);
	free(s->bufs);
	free(s->scratch);
	free(s->buf_of);
	free(s->act);
	free(s->skip);
	free(s->pool2);
	free(s->valid);
	free(s->prof);
	usv__pool_free(s->pool);
	free(s->ex.tscratch);
	free(s);
}

static int consumes(const usv_mlayer *L, int j)
{
	for (int k = 0; k < L->def.n_inputs; k++)
		if (L->g.in[k] == j)
			return 1;
	return 0;
}

int usv_session_new(const usv_model *m, const usv_session_opts *opts, usv_session **out)
{
	if (!m || !opts || !out || opts->max_batch < 1 || opts->max_batch > 65536)
		return -EINVAL;
	*out = NULL;
	int end = m->n - 1;
	if (opts->end_layer) {
		end = find_layer(m, opts->end_layer);
		if (end < 0)
			return -ENOENT;
	}
	usv_session *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->m = m;
	s->max_batch = opts->max_batch;
	s->threads = opts->threads > 0 ? opts->threads : 1;
	s->end = end;
	s->keep_all = opts->keep_all != 0;
	int n = end + 1;
	int *last = calloc((size_t)n, sizeof *last), *ncons = calloc((size_t)n, sizeof *ncons);
	size_t *bsize = calloc((size_t)n, sizeof *bsize);
	int *busy = calloc((size_t)n, sizeof *busy);
	s->buf_of = calloc((size_t)n, sizeof *s->buf_of);
	s->act = calloc((size_t)n, sizeof *s->act);
	s->skip = calloc((size_t)n, 1);
	s->pool2 = calloc((size_t)n, 1);
	s->valid = calloc((size_t)n, 1);
	s->bufs = calloc((size_t)n, sizeof *s->bufs);
	int rc = -ENOMEM;
	if (!last || !ncons || !bsize || !busy || !s->buf_of || !s->act || !s->skip || !s->pool2 ||
	    !s->valid || !s->bufs)
		goto out;
	/* liveness: index of the last consumer of each layer's output */
	for (int i = 0; i < n; i++) {
		last[i] = s->keep_all || i == end ? n : i;
		s->act[i] = m->L[i].def.act;
		for (int k = 0; k < m->L[i].def.n_inputs; k++) {
			int j = m->L[i].g.in[k];
			if (j >= 0) {
				last[j] = last[j] > i ? last[j] : i;
				ncons[j]++;
			}
		}
	}
	/* fusion of a ReLU into its single producer */
	for (int i = 0; i < n && !s->keep_all; i++) {
		const usv_mlayer *L = &m->L[i];
		int j = L->g.in[0];
		if ((L->def.type != USV_LAYER_RELU && L->def.type != USV_LAYER_RELU6) || j < 0)
			continue;
		usv_layer_type pt = m->L[j].def.type;
		if ((pt == USV_LAYER_CONV || pt == USV_LAYER_FC || pt == USV_LAYER_ADD) &&
		    s->act[j] == USV_ACT_NONE && ncons[j] == 1 && j != end && !s->skip[j]) {
			s->act[j] = L->def.type == USV_LAYER_RELU ? USV_ACT_RELU : USV_ACT_RELU6;
			s->skip[i] = 1;
		}
	}
	/* fusion of a 2x2 stride-2 max pooling into the convolution before it
	 * (through a fused ReLU): the only consumer of both */
	for (int i = 0; i < n && !s->keep_all; i++) {
		const usv_mlayer *P = &m->L[i];
		int r = P->g.in[0], j = r;
		if (P->def.type != USV_LAYER_MAXPOOL || r < 0 || r == end || ncons[r] != 1 ||
		    P->def.kernel_h != 2 || P->def.kernel_w != 2 || P->def.stride_h != 2 ||
		    P->def.stride_w != 2 || P->g.pt || P->g.pb || P->g.pl || P->g.pr ||
		    P->g.ih != 2 * P->g.h || P->g.iw != 2 * P->g.w)
			continue;
		if (s->skip[r]) /* a fused ReLU: its producer */
			j = m->L[r].g.in[0];
		if (j < 0 || j == end || ncons[j] != 1 || s->skip[j] || s->pool2[j] ||
		    !m->L[j].impl->fuse_maxpool2 || m->L[j].g.h != P->g.ih ||
		    m->L[j].g.w != P->g.iw || m->L[j].g.c != P->g.c)
			continue;
		s->pool2[j] = 1;
		s->skip[i] = 1;
	}
	/* buffer assignment */
	size_t scratch = 0;
	for (int i = 0; i < n; i++) {
		const usv_mlayer *L = &m->L[i];
		size_t need = (size_t)s->max_batch * L->g.c * L->g.h * L->g.w;
		if (s->pool2[i])
			need = (size_t)s->max_batch * L->g.c * (L->g.h / 2) * (L->g.w / 2);
		if (L->impl->scratch_floats) {
			size_t sc = L->impl->scratch_floats(L, s->max_batch);
			scratch = sc > scratch ? sc : scratch;
		}
		int j = L->g.in[0];
		usv_layer_type t = L->def.type;
		int inplace_type = t == USV_LAYER_RELU || t == USV_LAYER_RELU6 ||
		                   t == USV_LAYER_DROPOUT || t == USV_LAYER_FLATTEN;
		if (j >= 0 && (s->skip[i] || (inplace_type && !s->keep_all && last[j] == i))) {
			int b = s->buf_of[j];
			s->buf_of[i] = b;
			busy[b] = busy[b] > last[i] ? busy[b] : last[i];
			continue;
		}
		int best = -1;
		for (int b = 0; b < s->nbufs; b++) {
			if (busy[b] >= i)
				continue;
			if (best < 0)
				best = b;
			else if (bsize[b] >= need && (bsize[best] < need || bsize[b] < bsize[best]))
				best = b;
			else if (bsize[best] < need && bsize[b] > bsize[best])
				best = b;
		}
		if (best < 0)
			best = s->nbufs++;
		if (bsize[best] < need)
			bsize[best] = need;
		busy[best] = last[i];
		s->buf_of[i] = best;
	}
	for (int b = 0; b < s->nbufs; b++) {
		s->bytes += (bsize[b] ? bsize[b] : 1) * sizeof(float);
		s->bufs[b] = usv__aligned_alloc((bsize[b] ? bsize[b] : 1) * sizeof(float));
		if (!s->bufs[b])
			goto out;
	}
	if (scratch) {
		s->scratch = usv__aligned_alloc(scratch * sizeof(float));
		if (!s->scratch)
			goto out;
	}
	/* threads: a pool for the kernels, private scratch per thread */
	if (s->threads > 1 && usv__pool_new(s->threads, &s->pool))
		goto out;
	s->ex.pool = s->pool;
	s->ex.nthreads = usv__pool_threads(s->pool);
	size_t ts = 0;
	for (int i = 0; i < n; i++) {
		const usv_mlayer *L = &m->L[i];
		size_t t = L->impl->thread_scratch_floats ? L->impl->thread_scratch_floats(L) : 0;
		ts = t > ts ? t : ts;
	}
	if (ts) {
		s->ex.tscratch_stride = (ts + 15) / 16 * 16;
		s->ex.tscratch =
		    usv__aligned_alloc(s->ex.tscratch_stride * s->ex.nthreads * sizeof(float));
		if (!s->ex.tscratch)
			goto out;
	}
	/* a blob survives the run if no later layer writes its buffer */
	for (int i = 0; i < n; i++) {
		int ok = !(s->act[i] != m->L[i].def.act) && !s->pool2[i];
		for (int k = i + 1; ok && k < n; k++)
			if (s->buf_of[k] == s->buf_of[i])
				ok = 0;
		s->valid[i] = (uint8_t)ok;
	}
	(void)consumes;
	if (opts->profile && !(s->prof = calloc((size_t)n, sizeof *s->prof)))
		goto out;
	*out = s;
	s = NULL;
	rc = 0;
out:
	free(last);
	free(ncons);
	free(bsize);
	free(busy);
	usv_session_free(s);
	return rc;
}

int usv_session_run(usv_session *s, const float *in, int n, const float **out, int out_chw[3])
{
	if (!s || !in || n < 1 || n > s->max_batch)
		return -EINVAL;
	const usv_model *m = s->m;
	s->input = in;
	usv__set_exec(&s->ex);
	for (int i = 0; i <= s->end; i++) {
		if (s->skip[i])
			continue;
		const usv_mlayer *L = &m->L[i];
		const float *ins[USV_MAX_INPUTS];
		for (int k = 0; k < L->def.n_inputs; k++) {
			int j = L->g.in[k];
			ins[k] = j < 0 ? in : s->bufs[s->buf_of[j]];
		}
		usv_act act =
		    s->pool2[i] ? (usv_act)((int)s->act[i] | USV__ACT_MAXPOOL2) : s->act[i];
		if (s->prof) {
			struct timespec a, b;
			clock_gettime(CLOCK_MONOTONIC, &a);
			L->impl->run(L, act, ins, s->bufs[s->buf_of[i]], n, s->scratch);
			clock_gettime(CLOCK_MONOTONIC, &b);
			s->prof[i] += (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
		} else {
			L->impl->run(L, act, ins, s->bufs[s->buf_of[i]], n, s->scratch);
		}
	}
	usv__set_exec(NULL);
	s->last_n = n;
	const usv_mlayer *E = &m->L[s->end];
	if (out)
		*out = s->bufs[s->buf_of[s->end]];
	if (out_chw)
		out_chw[0] = E->g.c, out_chw[1] = E->g.h, out_chw[2] = E->g.w;
	return 0;
}

const float *usv_session_blob(const usv_session *s, const char *layer, int chw[3])
{
	if (!s || !layer || !s->last_n)
		return NULL;
	int i = find_layer(s->m, layer);
	if (i < 0 || i > s->end || !s->valid[i])
		return NULL;
	if (chw)
		chw[0] = s->m->L[i].g.c, chw[1] = s->m->L[i].g.h, chw[2] = s->m->L[i].g.w;
	return s->bufs[s->buf_of[i]];
}

const double *usv_session_layer_ms(const usv_session *s)
{
	return s ? s->prof : NULL;
}

size_t usv_session_memory(const usv_session *s, int *nbufs)
{
	if (nbufs)
		*nbufs = s ? s->nbufs : 0;
	return s ? s->bytes : 0;
}
