/*
 * NAME
 *	builtin.c - built-in architectures with seeded random weights
 *
 * DESCRIPTION
 *	caffenet  BVLC reference CaffeNet (deploy.prototxt), Caffe layer names
 *	vgg16     VGG configuration D, Caffe layer names conv1_1 .. fc8, prob
 *	mobilenet_v1  MobileNet 1.0/224: conv1, conv_dw_N / conv_pw_N (N = 1..13),
 *	          embedding (global average pool, 1024), logits (FC), prob
 *	mobilenet_v2  MobileNetV2 1.0/224: conv1, block_N_{expand,depthwise,
 *	          project,add}, conv_last (1280), embedding, logits, prob
 *
 *	The Caffe nets keep ReLU, dropout and softmax as separate layers named
 *	as in Caffe (sessions fuse the ReLUs); the MobileNets fuse ReLU6 into
 *	their convolutions (batch normalisation is assumed folded into the
 *	convolution weights and biases). Weights are He-scaled uniform
 *	(variance 2 / fan_in), biases uniform in [-0.01, 0.01], drawn from a
 *	splitmix64 stream seeded by `seed`, so a (arch, n_classes, seed)
 *	triple always gives the same network.
 */
#include "nn_internal.h"

#include "usv/err.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct bctx {
	usv_netdef *def;
	uint64_t rng;
	int rc;
	char prev[USV_NAME_MAX];
} bctx;

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float urand(bctx *b) /* [-1, 1) */
{
	return (float)((double)(splitmix(&b->rng) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void add_weights(bctx *b, const char *layer, int ndim, const int64_t *shape, int64_t fan_in,
                        int has_bias)
{
	if (b->rc)
		return;
	int64_t cnt = 1;
	for (int i = 0; i < ndim; i++)
		cnt *= shape[i];
	float *w = usv__aligned_alloc((size_t)cnt * sizeof(float));
	if (!w) {
		b->rc = -ENOMEM;
		return;
	}
	float a = sqrtf(6.0f / (float)fan_in);
	for (int64_t i = 0; i < cnt; i++)
		w[i] = a * urand(b);
	char tn[USV_NAME_MAX + 16];
	snprintf(tn, sizeof tn, "%s.weight", layer);
	/* hand the buffer over without a copy */
	b->rc = usv__netdef_add_borrowed(b->def, tn, ndim, shape, w);
	if (b->rc) {
		free(w);
		return;
	}
	usv__find_tensor(b->def, tn)->owned = 1;
	if (has_bias) {
		float bias[8192];
		int64_t n = shape[0];
		float *bp = n <= 8192 ? bias : malloc((size_t)n * sizeof(float));
		if (!bp) {
			b->rc = -ENOMEM;
			return;
		}
		for (int64_t i = 0; i < n; i++)
			bp[i] = 0.01f * urand(b);
		snprintf(tn, sizeof tn, "%s.bias", layer);
		b->rc = usv_netdef_add_tensor(b->def, tn, 1, &n, bp);
		if (bp != bias)
			free(bp);
	}
}

static void add(bctx *b, usv_layer_def *l, const char *input)
{
	if (b->rc)
		return;
	l->n_inputs = l->n_inputs ? l->n_inputs : 1;
	if (input)
		snprintf(l->inputs[0], USV_NAME_MAX, "%s", input);
	else
		snprintf(l->inputs[0], USV_NAME_MAX, "%s", b->prev);
	b->rc = usv_netdef_add_layer(b->def, l);
	snprintf(b->prev, sizeof b->prev, "%s", l->name);
}

/* Convolution; cin is the input channel count (for the weight shape). */
static void conv(bctx *b, const char *name, int cin, int cout, int k, int s, int pad,
                 usv_pad_mode mode, int group, usv_act act)
{
	usv_layer_def l = {0};
	snprintf(l.name, sizeof l.name, "%s", name);
	l.type = USV_LAYER_CONV;
	l.num_output = cout;
	l.kernel_h = l.kernel_w = k;
	l.stride_h = l.stride_w = s;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = pad;
	l.pad_mode = mode;
	l.group = group;
	l.has_bias = 1;
	l.act = act;
	add(b, &l, NULL);
	int64_t shp[4] = {cout, cin / group, k, k};
	add_weights(b, name, 4, shp, (int64_t)cin / group * k * k, 1);
}

static void simple(bctx *b, const char *name, usv_layer_type t)
{
	usv_layer_def l = {0};
	snprintf(l.name, sizeof l.name, "%s", name);
	l.type = t;
	if (t == USV_LAYER_DROPOUT)
		l.dropout_ratio = 0.5f;
	add(b, &l, NULL);
}

static void pool(bctx *b, const char *name, int k, int s)
{
	usv_layer_def l = {0};
	snprintf(l.name, sizeof l.name, "%s", name);
	l.type = USV_LAYER_MAXPOOL;
	l.kernel_h = l.kernel_w = k;
	l.stride_h = l.stride_w = s;
	l.ceil_mode = 1;
	add(b, &l, NULL);
}

static void lrn(bctx *b, const char *name)
{
	usv_layer_def l = {0};
	snprintf(l.name, sizeof l.name, "%s", name);
	l.type = USV_LAYER_LRN;
	l.local_size = 5;
	l.alpha = 1e-4f;
	l.beta = 0.75f;
	l.k = 1.0f;
	add(b, &l, NULL);
}

static void fc(bctx *b, const char *name, int64_t in, int out)
{
	usv_layer_def l = {0};
	snprintf(l.name, sizeof l.name, "%s", name);
	l.type = USV_LAYER_FC;
	l.num_output = out;
	l.has_bias = 1;
	add(b, &l, NULL);
	int64_t shp[2] = {out, in};
	add_weights(b, name, 2, shp, in, 1);
}

static void caffenet(bctx *b, int nc)
{
	conv(b, "conv1", 3, 96, 11, 4, 0, USV_PAD_EXPLICIT, 1, USV_ACT_NONE);
	simple(b, "relu1", USV_LAYER_RELU);
	pool(b, "pool1", 3, 2);
	lrn(b, "norm1");
	conv(b, "conv2", 96, 256, 5, 1, 2, USV_PAD_EXPLICIT, 2, USV_ACT_NONE);
	simple(b, "relu2", USV_LAYER_RELU);
	pool(b, "pool2", 3, 2);
	lrn(b, "norm2");
	conv(b, "conv3", 256, 384, 3, 1, 1, USV_PAD_EXPLICIT, 1, USV_ACT_NONE);
	simple(b, "relu3", USV_LAYER_RELU);
	conv(b, "conv4", 384, 384, 3, 1, 1, USV_PAD_EXPLICIT, 2, USV_ACT_NONE);
	simple(b, "relu4", USV_LAYER_RELU);
	conv(b, "conv5", 384, 256, 3, 1, 1, USV_PAD_EXPLICIT, 2, USV_ACT_NONE);
	simple(b, "relu5", USV_LAYER_RELU);
	pool(b, "pool5", 3, 2);
	fc(b, "fc6", 256 * 6 * 6, 4096);
	simple(b, "relu6", USV_LAYER_RELU);
	simple(b, "drop6", USV_LAYER_DROPOUT);
	fc(b, "fc7", 4096, 4096);
	simple(b, "relu7", USV_LAYER_RELU);
	simple(b, "drop7", USV_LAYER_DROPOUT);
	fc(b, "fc8", 4096, nc);
	simple(b, "prob", USV_LAYER_SOFTMAX);
}

static void vgg16(bctx *b, int nc)
{
	static const int reps[5] = {2, 2, 3, 3, 3}, width[5] = {64, 128, 256, 512, 512};
	int cin = 3;
	for (int s = 0; s < 5; s++) {
		for (int r = 0; r < reps[s]; r++) {
			char n[32], rn[32];
			snprintf(n, sizeof n, "conv%d_%d", s + 1, r + 1);
			snprintf(rn, sizeof rn, "relu%d_%d", s + 1, r + 1);
			conv(b, n, cin, width[s], 3, 1, 1, USV_PAD_EXPLICIT, 1, USV_ACT_NONE);
			simple(b, rn, USV_LAYER_RELU);
			cin = width[s];
		}
		char pn[16];
		snprintf(pn, sizeof pn, "pool%d", s + 1);
		usv_layer_def l = {0};
		snprintf(l.name, sizeof l.name, "%s", pn);
		l.type = USV_LAYER_MAXPOOL;
		l.kernel_h = l.kernel_w = l.stride_h = l.stride_w = 2;
		l.ceil_mode = 1;
		add(b, &l, NULL);
	}
	fc(b, "fc6", 512 * 7 * 7, 4096);
	simple(b, "relu6", USV_LAYER_RELU);
	simple(b, "drop6", USV_LAYER_DROPOUT);
	fc(b, "fc7", 4096, 4096);
	simple(b, "relu7", USV_LAYER_RELU);
	simple(b, "drop7", USV_LAYER_DROPOUT);
	fc(b, "fc8", 4096, nc);
	simple(b, "prob", USV_LAYER_SOFTMAX);
}

static void head(bctx *b, int emb, int nc)
{
	usv_layer_def l = {0};
	snprintf(l.name, sizeof l.name, "embedding");
	l.type = USV_LAYER_GLOBAL_AVEPOOL;
	add(b, &l, NULL);
	fc(b, "logits", emb, nc);
	simple(b, "prob", USV_LAYER_SOFTMAX);
}

static void mobilenet_v1(bctx *b, int nc)
{
	static const int ch[13] = {64,  128, 128, 256, 256,  512, 512,
	                           512, 512, 512, 512, 1024, 1024};
	static const int st[13] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};
	conv(b, "conv1", 3, 32, 3, 2, 0, USV_PAD_SAME, 1, USV_ACT_RELU6);
	int cin = 32;
	for (int i = 0; i < 13; i++) {
		char n[32];
		snprintf(n, sizeof n, "conv_dw_%d", i + 1);
		conv(b, n, cin, cin, 3, st[i], 0, USV_PAD_SAME, cin, USV_ACT_RELU6);
		snprintf(n, sizeof n, "conv_pw_%d", i + 1);
		conv(b, n, cin, ch[i], 1, 1, 0, USV_PAD_SAME, 1, USV_ACT_RELU6);
		cin = ch[i];
	}
	head(b, 1024, nc);
}

static void mobilenet_v2(bctx *b, int nc)
{
	static const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
	                              {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
	conv(b, "conv1", 3, 32, 3, 2, 0, USV_PAD_SAME, 1, USV_ACT_RELU6);
	int cin = 32, blk = 0;
	for (int s = 0; s < 7; s++) {
		for (int r = 0; r < cfg[s][2]; r++, blk++) {
			int t = cfg[s][0], cout = cfg[s][1], stride = r == 0 ? cfg[s][3] : 1;
			char in[USV_NAME_MAX], n[48];
			snprintf(in, sizeof in, "%s", b->prev);
			int mid = cin * t;
			if (t != 1) {
				snprintf(n, sizeof n, "block_%d_expand", blk);
				conv(b, n, cin, mid, 1, 1, 0, USV_PAD_SAME, 1, USV_ACT_RELU6);
			}
			snprintf(n, sizeof n, "block_%d_depthwise", blk);
			conv(b, n, mid, mid, 3, stride, 0, USV_PAD_SAME, mid, USV_ACT_RELU6);
			snprintf(n, sizeof n, "block_%d_project", blk);
			conv(b, n, mid, cout, 1, 1, 0, USV_PAD_SAME, 1, USV_ACT_NONE);
			if (stride == 1 && cin == cout) {
				usv_layer_def l = {0};
				snprintf(l.name, sizeof l.name, "block_%d_add", blk);
				l.type = USV_LAYER_ADD;
				l.n_inputs = 2;
				snprintf(l.inputs[1], USV_NAME_MAX, "%s", b->prev);
				add(b, &l, in);
			}
			cin = cout;
		}
	}
	conv(b, "conv_last", cin, 1280, 1, 1, 0, USV_PAD_SAME, 1, USV_ACT_RELU6);
	head(b, 1280, nc);
}

int usv_netdef_builtin(const char *arch, int n_classes, uint64_t seed, usv_netdef **out)
{
	if (!arch || !out || n_classes < 1 || n_classes > USV_MAX_LABELS)
		return -EINVAL;
	*out = NULL;
	usv_model_meta m = {0};
	void (*fn)(bctx *, int) = NULL;
	int caffe = 1;
	if (!strcmp(arch, "caffenet")) {
		fn = caffenet;
		m.input_h = m.input_w = 227;
	} else if (!strcmp(arch, "vgg16")) {
		fn = vgg16;
		m.input_h = m.input_w = 224;
	} else if (!strcmp(arch, "mobilenet_v1")) {
		fn = mobilenet_v1;
		caffe = 0;
	} else if (!strcmp(arch, "mobilenet_v2")) {
		fn = mobilenet_v2;
		caffe = 0;
	} else {
		return -USV_ERR_UNSUPPORTED;
	}
	bctx b = {0};
	b.rng = seed ^ 0x75737669657721ull;
	int rc = usv_netdef_new(&b.def);
	if (rc)
		return rc;
	snprintf(b.prev, sizeof b.prev, "data");
	fn(&b, n_classes);
	if (b.rc) {
		usv_netdef_free(b.def);
		return b.rc;
	}
	snprintf(m.arch, sizeof m.arch, "%s", arch);
	snprintf(m.name, sizeof m.name, "%s (random weights, seed %llu)", arch,
	         (unsigned long long)seed);
	m.input_c = 3;
	if (caffe) {
		m.resize_h = m.resize_w = 256;
		m.channel_order = USV_BGR;
		m.scale = 1.0f;
		/* ImageNet mean in B, G, R order */
		m.mean_rgb[0] = 104.0f, m.mean_rgb[1] = 117.0f, m.mean_rgb[2] = 123.0f;
	} else {
		m.input_h = m.input_w = 224;
		m.resize_h = m.resize_w = 224;
		m.channel_order = USV_RGB;
		m.scale = 1.0f / 128.0f;
		m.mean_rgb[0] = m.mean_rgb[1] = m.mean_rgb[2] = 128.0f;
	}
	char **labels = calloc((size_t)n_classes, sizeof(char *));
	char *store = malloc((size_t)n_classes * 16);
	if (!labels || !store) {
		free(labels);
		free(store);
		usv_netdef_free(b.def);
		return -ENOMEM;
	}
	for (int i = 0; i < n_classes; i++) {
		labels[i] = store + (size_t)i * 16;
		snprintf(labels[i], 16, "class%d", i);
	}
	m.n_labels = n_classes;
	m.labels = (const char *const *)labels;
	m.output_layer = "prob";
	m.output_is_prob = 1;
	char prov[256];
	snprintf(prov, sizeof prov, "{\"builtin\":\"%s\",\"seed\":%llu,\"n_classes\":%d}", arch,
	         (unsigned long long)seed, n_classes);
	m.provenance_json = prov;
	rc = usv_netdef_set_meta(b.def, &m);
	free(labels);
	free(store);
	if (!rc)
		rc = usv_netdef_validate(b.def, NULL, 0);
	if (rc) {
		usv_netdef_free(b.def);
		return rc;
	}
	*out = b.def;
	return 0;
}
