/*
 * NAME
 *	cmd_train.c - usview train: transfer learning of a fully connected head
 *
 * SYNOPSIS
 *	usview train --preset caffenet|vgg16|mobilenet --backbone MODEL --data TRAIN
 *	             [--val VAL | --val-fraction F] -o MODEL [--iterations N] [--seed S]
 *	             [--batch B] [--lr a,b,c] [--hidden n[,n]] [--dropout P] [--views V]
 *	             [--cut LAYER] [--no-mean] [--group-sep C] [--cache DIR | --no-cache]
 *	             [--threads T] [--eval-every N] [--name TEXT] [--skip-unreadable]
 *	             [--precision fp32|bf16]
 *
 * DESCRIPTION
 *	1. Loads the datasets (dataset.h); --val-fraction holds out whole
 *	   groups of TRAIN. With --skip-unreadable, images that the pipeline
 *	   excludes (colour Doppler, not US) or cannot decode are dropped with
 *	   a warning each instead of stopping the run. Prints the per-class
 *	   table (the paper's Table 2).
 *	2. caffenet / vgg16: computes the training-set mean image, which the
 *	   output model subtracts (meta.mean_image).
 *	3. Computes the frozen features (the backbone cut after --cut) of
 *	   every training image in V fixed views and of the validation images
 *	   (centre crop), through the engine, cached on disk.
 *	4. Trains the FC head (usv/train.h) with a learning curve, on
 *	   --threads threads; --precision bf16 runs its GEMMs on bfloat16
 *	   operands with FP32 accumulation and FP32 master weights (fp32, the
 *	   default, is the reference) and also computes the frozen features
 *	   with BF16 convolutions (usv_nn_set_kernels(), USV_BF16_ALL; cached
 *	   under their own key). The time of each phase is printed and kept
 *	   in the provenance (time_s).
 *	5. Writes backbone conv layers + the trained FC layers + softmax as a
 *	   normal model file with labels, mean, and a provenance JSON holding
 *	   the preset, solver, dataset hashes and table, learning curve and
 *	   final validation metrics.
 */
#include "cli.h"
#include "dataset.h"
#include "feature_cache.h"
#include "stats.h"
#include "train_common.h"

#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/nn.h"
#include "usv/sha256.h"
#include "usv/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct targs {
	const char *preset, *backbone, *data, *val, *out, *cut, *cache, *name;
	double val_fraction, dropout;
	long iterations, batch, views, threads, eval_every;
	unsigned long long seed;
	int no_mean, no_cache, quiet, skip_bad, precision;
	char group_sep;
	int n_lr, n_hidden;
	double lr[5];
	long hidden[4];
} targs;

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: usview train --preset caffenet|vgg16|mobilenet --backbone MODEL --data TRAIN\n"
	    "                    [--val VAL | --val-fraction F] -o MODEL [--iterations N] [--seed "
	    "S]\n"
	    "                    [--batch B] [--lr a,b,c] [--hidden n[,n]] [--dropout P]\n"
	    "                    [--views 1|2|10] [--cut LAYER] [--no-mean] [--group-sep C]\n"
	    "                    [--cache DIR | --no-cache] [--threads T] [--eval-every N]\n"
	    "                    [--name TEXT] [--precision fp32|bf16] [--quiet]\n");
}

static int parse_list(const char *s, double *v, int max, int *n)
{
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	*n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (*n == max || usv_parse_float(t, 0, 1e6, &v[*n]))
			return -EINVAL;
		(*n)++;
	}
	return *n ? 0 : -EINVAL;
}

static int parse_args(int argc, char **argv, targs *a)
{
	memset(a, 0, sizeof *a);
	a->seed = 1;
	a->threads = 2;
	a->dropout = -1;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		long lv;
		double dv;
		if (!strcmp(o, "--no-mean")) {
			a->no_mean = 1;
			continue;
		}
		if (!strcmp(o, "--no-cache")) {
			a->no_cache = 1;
			continue;
		}
		if (!strcmp(o, "--skip-unreadable")) {
			a->skip_bad = 1;
			continue;
		}
		if (!strcmp(o, "--quiet") || !strcmp(o, "-q")) {
			a->quiet = 1;
			continue;
		}
		if (!v)
			return -EINVAL;
		i++;
		if (!strcmp(o, "--preset"))
			a->preset = v;
		else if (!strcmp(o, "--backbone"))
			a->backbone = v;
		else if (!strcmp(o, "--data"))
			a->data = v;
		else if (!strcmp(o, "--val"))
			a->val = v;
		else if (!strcmp(o, "-o") || !strcmp(o, "--out"))
			a->out = v;
		else if (!strcmp(o, "--cut"))
			a->cut = v;
		else if (!strcmp(o, "--cache"))
			a->cache = v;
		else if (!strcmp(o, "--name"))
			a->name = v;
		else if (!strcmp(o, "--precision") && !strcmp(v, "fp32"))
			a->precision = USV_TRAIN_FP32;
		else if (!strcmp(o, "--precision") && !strcmp(v, "bf16"))
			a->precision = USV_TRAIN_BF16;
		else if (!strcmp(o, "--group-sep") && strlen(v) == 1)
			a->group_sep = v[0];
		else if (!strcmp(o, "--val-fraction") && !usv_parse_float(v, 0, 0.9, &dv))
			a->val_fraction = dv;
		else if (!strcmp(o, "--dropout") && !usv_parse_float(v, 0, 0.95, &dv))
			a->dropout = dv;
		else if (!strcmp(o, "--iterations") && !usv_parse_int(v, 1, 100000000, &lv))
			a->iterations = lv;
		else if (!strcmp(o, "--batch") && !usv_parse_int(v, 1, 65536, &lv))
			a->batch = lv;
		else if (!strcmp(o, "--views") && !usv_parse_int(v, 1, 10, &lv))
			a->views = lv;
		else if (!strcmp(o, "--threads") && !usv_parse_int(v, 1, 256, &lv))
			a->threads = lv;
		else if (!strcmp(o, "--eval-every") && !usv_parse_int(v, 1, 100000000, &lv))
			a->eval_every = lv;
		else if (!strcmp(o, "--seed") && !usv_parse_int(v, 0, 0x7fffffffffffffffL, &lv))
			a->seed = (unsigned long long)lv;
		else if (!strcmp(o, "--lr") && !parse_list(v, a->lr, 5, &a->n_lr))
			;
		else if (!strcmp(o, "--hidden")) {
			double h[4];
			if (parse_list(v, h, 4, &a->n_hidden))
				return -EINVAL;
			for (int k = 0; k < a->n_hidden; k++) {
				if (h[k] < 1 || h[k] > 65536)
					return -EINVAL;
				a->hidden[k] = (long)h[k];
			}
		} else
			return -EINVAL;
	}
	if (!a->preset || !a->backbone || !a->data || !a->out)
		return -EINVAL;
	return 0;
}

typedef struct prog {
	double t0;
	const char *label;
	int quiet;
} prog;

static int feat_progress(void *ctx, int done, int total, int cached)
{
	prog *p = ctx;
	if (p->quiet)
		return 0;
	char extra[64];
	snprintf(extra, sizeof extra, "(%d cached)", cached);
	usv_progress_line(p->label, done, total, p->t0, extra);
	return 0;
}

static int train_progress(void *ctx, int it, int total, float loss)
{
	prog *p = ctx;
	if (p->quiet || (it % 5 && it != total))
		return 0;
	char extra[64];
	snprintf(extra, sizeof extra, "loss %.4f", loss);
	usv_progress_line(p->label, it, total, p->t0, extra);
	return 0;
}

static char *default_cache(void)
{
	const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
	char buf[4096];
	if (x && *x)
		snprintf(buf, sizeof buf, "%s/usview", x);
	else if (h && *h)
		snprintf(buf, sizeof buf, "%s/.cache/usview", h);
	else
		return NULL;

	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", buf);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0755);
			*p = '/';
		}
	mkdir(tmp, 0755);
	strncat(buf, "/features", sizeof buf - strlen(buf) - 1);
	return strdup(buf);
}

/* The feature model: backbone with the (optional) training mean, cut. */
static int feature_model(const char *backbone, const char *cut, const float *mean,
                         usv_netdef **def_out, usv_model **out, char *err, size_t errlen)
{
	usv_netdef *def = NULL;
	int rc = usv_netdef_read(backbone, &def, err, errlen);
	if (rc)
		return rc;
	if (mean) {
		usv_model_meta m = *usv_netdef_meta(def);
		m.mean_image = mean;
		if ((rc = usv_netdef_set_meta(def, &m)))
			goto fail;
	}
	*def_out = def;
	usv_netdef *cutdef = NULL;
	if ((rc = usv_netdef_read(backbone, &cutdef, err, errlen)))
		goto fail2;
	if (mean) {
		usv_model_meta m = *usv_netdef_meta(cutdef);
		m.mean_image = mean;
		usv_netdef_set_meta(cutdef, &m);
	}
	if ((rc = usv_netdef_truncate(cutdef, cut))) {
		usv_seterr(err, errlen, rc, "%s: no layer '%s' to cut at", backbone, cut);
		usv_netdef_free(cutdef);
		goto fail2;
	}
	rc = usv_model_from_netdef(cutdef, out, err, errlen);
	usv_netdef_free(cutdef);
	if (rc)
		goto fail2;
	return 0;
fail2:
	*def_out = NULL;
fail:
	usv_netdef_free(def);
	return rc;
}

/* The mean pass keeps decoded training images up to this many bytes (4,103
 * images at 256 x 256 take 0.8 GB) for the feature pass. */
#define KEEP_PIXELS_MAX ((size_t)2 << 30)

static void free_pixels(uint8_t **px, int n)
{
	if (!px)
		return;
	for (int i = 0; i < n; i++)
		free(px[i]);
	free(px);
}

static void hash_floats(const float *x, size_t n, char hex[65])
{
	usv_sha256 c;
	uint8_t d[32];
	usv_sha256_init(&c);
	usv_sha256_update(&c, x, n * sizeof(float));
	usv_sha256_final(&c, d);
	usv_sha256_hex(d, hex);
}

static int add_fc(usv_netdef *def, const char *name, const char *input, int nout, int relu)
{
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	if (strlen(name) >= sizeof l.name || strlen(input) >= sizeof l.inputs[0])
		return -ENAMETOOLONG;
	memcpy(l.name, name, strlen(name) + 1);
	l.type = USV_LAYER_FC;
	l.n_inputs = 1;
	memcpy(l.inputs[0], input, strlen(input) + 1);
	l.num_output = nout;
	l.has_bias = 1;
	l.group = 1;
	l.act = relu ? USV_ACT_RELU : USV_ACT_NONE;
	return usv_netdef_add_layer(def, &l);
}

static int add_simple(usv_netdef *def, const char *name, const char *input, usv_layer_type t,
                      float ratio)
{
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	if (strlen(name) >= sizeof l.name || strlen(input) >= sizeof l.inputs[0])
		return -ENAMETOOLONG;
	memcpy(l.name, name, strlen(name) + 1);
	l.type = t;
	l.n_inputs = 1;
	memcpy(l.inputs[0], input, strlen(input) + 1);
	l.group = 1;
	l.dropout_ratio = ratio;
	return usv_netdef_add_layer(def, &l);
}

static cJSON *curve_json(const usv_curve_point *c, int n)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; i < n; i++) {
		cJSON *p = cJSON_CreateObject();
		cJSON_AddNumberToObject(p, "iter", c[i].iter);
		cJSON_AddNumberToObject(p, "train_loss", c[i].train_loss);
		if (c[i].val_loss >= 0) {
			cJSON_AddNumberToObject(p, "val_loss", c[i].val_loss);
			cJSON_AddNumberToObject(p, "val_acc", c[i].val_acc);
		}
		cJSON_AddItemToArray(a, p);
	}
	return a;
}

int usv_cmd_train(int argc, char **argv)
{
	targs a;
	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (parse_args(argc, argv, &a)) {
		usage(stderr);
		return 2;
	}
	const usv_train_preset *ps = usv_train_preset_find(a.preset);
	if (!ps) {
		fprintf(stderr, "usview train: unknown preset '%s'\n", a.preset);
		return 2;
	}
	char err[USV_ERRBUF] = "";
	int rc = usv_dcm_global_init(err, sizeof err);
	if (rc) {
		fprintf(stderr, "usview train: %s\n", err);
		return 1;
	}
	usv_nn_set_threads((int)a.threads);
	int status = 1;
	double t_start = usv_now();
	usv_dataset *train = NULL, *val = NULL, *all = NULL;
	usv_netdef *bdef = NULL;
	usv_model *fmodel = NULL;
	float *mean = NULL, *xtr = NULL, *xva = NULL;
	int *ytr = NULL, *yva = NULL;
	usv_head *h = NULL;
	usv_curve_point *curve = NULL;
	int n_curve = 0;
	char *cache = NULL;
	uint8_t **pixels = NULL; /* decoded training images kept by the mean pass */
	cJSON *prov = NULL;
	char *prov_txt = NULL;

	/* 1. datasets */
	usv_ds_opts dso = {.group_sep = a.group_sep, .threads = (int)a.threads};
	if ((rc = usv_dataset_load(a.data, &dso, &all, err, sizeof err))) {
		fprintf(stderr, "usview train: %s\n", err);
		goto out;
	}
	if (all->n_labels < 2) {
		fprintf(stderr, "usview train: %s: needs at least two labels\n", a.data);
		goto out;
	}
	if (a.val) {
		usv_ds_opts vo = {.group_sep = a.group_sep,
		                  .threads = (int)a.threads,
		                  .labels = (const char *const *)all->labels,
		                  .n_labels = all->n_labels};
		if ((rc = usv_dataset_load(a.val, &vo, &val, err, sizeof err))) {
			fprintf(stderr, "usview train: %s\n", err);
			goto out;
		}
		train = all;
		all = NULL;
	} else if (a.val_fraction > 0) {
		if ((rc = usv_dataset_split(all, a.val_fraction, a.seed, &train, &val))) {
			fprintf(stderr, "usview train: cannot split: %s\n", usv_strerror(rc));
			goto out;
		}
	} else {
		train = all;
		all = NULL;
	}

	/* 2. backbone and mean image */
	usv_netdef *probe = NULL;
	if ((rc = usv_netdef_read(a.backbone, &probe, err, sizeof err))) {
		fprintf(stderr, "usview train: %s\n", err);
		goto out;
	}
	/* only the scalar fields of bmeta are used once probe is freed */
	usv_model_meta bmeta = *usv_netdef_meta(probe);
	const char *cut = a.cut ? a.cut : ps->cut;
	{
		int found = 0, nl = usv_netdef_n_layers(probe);
		for (int i = 0; i < nl; i++)
			if (!strcmp(usv_netdef_layer(probe, i)->name, cut))
				found = 1;
		/* the MobileNet embedding extractor ends with its embedding */
		static char lastname[USV_NAME_MAX];
		if (!found && !a.cut && !ps->mean_image && nl > 0) {
			snprintf(lastname, sizeof lastname, "%s",
			         usv_netdef_layer(probe, nl - 1)->name);
			cut = lastname;
			found = 1;
		}
		if (!found) {
			fprintf(stderr, "usview train: %s: no layer '%s' (use --cut)\n", a.backbone,
			        cut);
			usv_netdef_free(probe);
			goto out;
		}
	}
	if (a.skip_bad) {
		int d1 = 0, d2 = 0;
		if ((rc = usv_dataset_drop_unloadable(train, bmeta.resize_w, stderr, &d1)) ||
		    (val && (rc = usv_dataset_drop_unloadable(val, bmeta.resize_w, stderr, &d2)))) {
			fprintf(stderr, "usview train: %s\n", usv_strerror(rc));
			goto out;
		}
		if (d1 + d2)
			fprintf(stderr, "usview train: skipped %d unreadable or excluded images\n",
			        d1 + d2);
		if (train->n < 1 || (val && val->n < 1)) {
			fprintf(stderr, "usview train: no usable images left\n");
			goto out;
		}
	}
	{
		const usv_dataset *sets[2] = {train, val};
		const char *names[2] = {"train", "validation"};
		if (!a.quiet)
			usv_dataset_table(stdout, sets, names, val ? 2 : 1);
	}
	int use_mean = ps->mean_image && !a.no_mean;
	double t_load = usv_now() - t_start;
	double t_mean = usv_now();
	if (use_mean) {
		if (bmeta.resize_w != bmeta.resize_h) {
			fprintf(stderr, "usview train: %s: non-square resize\n", a.backbone);
			usv_netdef_free(probe);
			goto out;
		}
		pixels = calloc((size_t)train->n, sizeof *pixels);
		rc = pixels ? usv_mean_image(train, &bmeta, (int)a.threads, pixels, KEEP_PIXELS_MAX,
		                             &mean, err, sizeof err)
		            : -ENOMEM;
		if (rc) {
			fprintf(stderr, "usview train: %s\n", err[0] ? err : usv_strerror(rc));
			usv_netdef_free(probe);
			goto out;
		}
	}
	usv_netdef_free(probe);
	t_mean = usv_now() - t_mean;
	/* --precision bf16: the frozen backbone's convolutions and inner
	 * products on BF16 operands too (where the CPU has AVX512_BF16) */
	usv_nn_set_kernels(1, a.precision == USV_TRAIN_BF16 ? USV_BF16_ALL : USV_BF16_OFF);
	if ((rc = feature_model(a.backbone, cut, mean, &bdef, &fmodel, err, sizeof err))) {
		fprintf(stderr, "usview train: %s\n", err);
		goto out;
	}

	/* 3. features */
	char bsha[65], mhash[65] = "none";
	if ((rc = usv_sha256_file(a.backbone, bsha))) {
		fprintf(stderr, "usview train: %s: %s\n", a.backbone, usv_strerror(rc));
		goto out;
	}
	const usv_model_meta *fm = usv_model_get_meta(fmodel);
	if (mean)
		hash_floats(mean, (size_t)3 * fm->resize_w * fm->resize_h, mhash);
	char key[300];
	snprintf(key, sizeof key, "backbone=%s;mean=%s;resize=%dx%d;input=%dx%d%s", bsha, mhash,
	         fm->resize_w, fm->resize_h, fm->input_w, fm->input_h,
	         a.precision == USV_TRAIN_BF16 ? ";kernels=bf16" : "");
	if (a.cache)
		cache = strdup(a.cache);
	else if (!a.no_cache)
		cache = default_cache();
	int views = a.views > 0 ? (int)a.views : ps->views;
	if (fm->resize_w == fm->input_w && fm->resize_h == fm->input_h && views > 2)
		views = 2; /* all five crops coincide */
	double t_feat = usv_now();
	prog pf = {usv_now(), "features", a.quiet};
	usv_feat_spec fs = {.model = fmodel,
	                    .cut = cut,
	                    .n_views = views,
	                    .cache_dir = cache,
	                    .key = key,
	                    .batch = 16,
	                    .threads = (int)a.threads,
	                    .pixels = (const uint8_t *const *)pixels,
	                    .progress = feat_progress,
	                    .progress_ctx = &pf};
	int dim = 0, dimv = 0;
	if ((rc = usv_features_compute(&fs, train, &xtr, &dim, err, sizeof err))) {
		fprintf(stderr, "usview train: %s\n", err);
		goto out;
	}
	if (val) {
		usv_feat_spec vs = fs;
		vs.n_views = 1;
		vs.pixels = NULL;
		pf.t0 = usv_now();
		pf.label = "val feat";
		if ((rc = usv_features_compute(&vs, val, &xva, &dimv, err, sizeof err))) {
			fprintf(stderr, "usview train: %s\n", err);
			goto out;
		}
	}
	t_feat = usv_now() - t_feat;
	free_pixels(pixels, train->n);
	pixels = NULL;
	ytr = malloc((size_t)train->n * sizeof(int));
	yva = malloc((size_t)(val ? val->n : 1) * sizeof(int));
	if (!ytr || !yva)
		goto out;
	for (int i = 0; i < train->n; i++)
		ytr[i] = train->items[i].label;
	for (int i = 0; val && i < val->n; i++)
		yva[i] = val->items[i].label;

	/* 4. the head */
	int nh = a.n_hidden ? a.n_hidden : ps->n_hidden;
	int dims[USV_HEAD_MAX_LAYERS + 1];
	dims[0] = dim;
	for (int l = 0; l < nh; l++)
		dims[l + 1] = a.n_hidden ? (int)a.hidden[l] : ps->hidden[l];
	dims[nh + 1] = train->n_labels;
	if ((rc = usv_head_new(nh + 1, dims, &h))) {
		fprintf(stderr, "usview train: cannot build the head: %s\n", usv_strerror(rc));
		goto out;
	}
	/* layer names: Caffe's fc6/fc7/fc8 when the preset's layout is kept,
	 * head_fc1.. head_logits otherwise */
	char names[USV_HEAD_MAX_LAYERS][USV_NAME_MAX], dnames[USV_HEAD_MAX_LAYERS][USV_NAME_MAX];
	int caffe_names = ps->n_hidden == 2 && nh == 2;
	for (int l = 0; l <= nh; l++) {
		if (caffe_names)
			snprintf(names[l], USV_NAME_MAX, "%s", ps->names[l]);
		else if (l < nh)
			snprintf(names[l], USV_NAME_MAX, "head_fc%d", l + 1);
		else
			snprintf(names[l], USV_NAME_MAX, "head_logits");
	}
	usv_rng rng;
	usv_rng_seed(&rng, a.seed);
	int from_backbone = 0;
	for (int l = 0; l <= nh; l++) {
		const char *lname = names[l];
		int ndim = 0;
		int64_t shp[4] = {0};
		float *w = NULL, *b = NULL;
		char tn[USV_NAME_MAX + 8];
		if (l < nh && ps->init_from_backbone && caffe_names) {
			snprintf(tn, sizeof tn, "%s.weight", lname);
			w = usv_netdef_tensor(bdef, tn, &ndim, shp);
			int okshape = w && shp[0] == dims[l + 1] &&
			              (ndim == 2 ? shp[1] == dims[l]
			                         : shp[1] * (ndim > 2 ? shp[2] : 1) *
			                                   (ndim > 3 ? shp[3] : 1) ==
			                               dims[l]);
			snprintf(tn, sizeof tn, "%s.bias", lname);
			b = usv_netdef_tensor(bdef, tn, &ndim, shp);
			if (okshape && b) {
				memcpy(h->w[l], w, (size_t)dims[l + 1] * dims[l] * sizeof(float));
				memcpy(h->b[l], b, (size_t)dims[l + 1] * sizeof(float));
				from_backbone++;
				continue;
			}
		}
		/* Caffe's fine-tuning recipe: the new output layer N(0, 0.01^2);
		 * new hidden layers He-scaled */
		usv_head_init_layer(h, l, l == nh ? 0.01f : 0.0f, &rng);
	}
	for (int l = 0; l <= nh; l++) {
		int pi = l < nh ? (l < ps->n_hidden ? l : ps->n_hidden - 1) : ps->n_hidden;
		h->lr[l] = ps->lr[pi];
		if (a.n_lr == nh + 1)
			h->lr[l] = (float)a.lr[l];
		else if (a.n_lr == 1)
			h->lr[l] = (float)a.lr[0] * (l == nh ? 10.0f : 1.0f);
		if (l < nh)
			h->dropout[l] = a.dropout >= 0 ? (float)a.dropout : ps->dropout;
	}
	if (a.n_lr && a.n_lr != 1 && a.n_lr != nh + 1) {
		fprintf(stderr, "usview train: --lr wants 1 or %d rates\n", nh + 1);
		goto out;
	}
	usv_train_opts to;
	usv_train_opts_default(&to);
	to.iterations = a.iterations ? (int)a.iterations : ps->iterations;
	to.batch = a.batch ? (int)a.batch : ps->batch;
	to.seed = a.seed;
	to.eval_every = a.eval_every ? (int)a.eval_every : 0;
	to.threads = (int)a.threads;
	to.precision = a.precision;
	usv_train_times ttimes = {0};
	to.times = &ttimes;
	prog pt = {usv_now(), "train", a.quiet};
	to.progress = train_progress;
	to.progress_ctx = &pt;
	usv_train_data td = {train->n, views, dim, xtr, ytr};
	usv_train_data vd = {val ? val->n : 0, 1, dim, xva, yva};
	double t_train = usv_now();
	if ((rc = usv_head_train(h, &td, val ? &vd : NULL, &to, &curve, &n_curve))) {
		fprintf(stderr, "usview train: training failed: %s\n", usv_strerror(rc));
		goto out;
	}
	t_train = usv_now() - t_train;
	double tr_loss = 0, tr_acc = 0, va_loss = -1, va_acc = -1, va_auc = -1;
	{
		usv_train_data tc = td;
		usv_head_evaluate(h, &tc, &tr_loss, &tr_acc);
		if (val)
			usv_head_evaluate(h, &vd, &va_loss, &va_acc);
	}
	if (val && train->n_labels == 2) {
		/* ROC AUC of the second label's probability on the validation set */
		float *pr = malloc((size_t)val->n * 2 * sizeof(float));
		double *sc = malloc((size_t)val->n * sizeof(double));
		int *pos = malloc((size_t)val->n * sizeof(int));
		if (pr && sc && pos && !usv_head_forward(h, xva, val->n, 1, pr)) {
			for (int i = 0; i < val->n; i++) {
				sc[i] = pr[2 * i + 1];
				pos[i] = yva[i] == 1;
			}
			if (usv_auc(sc, pos, (size_t)val->n, &va_auc))
				va_auc = -1;
		}
		free(pr);
		free(sc);
		free(pos);
	}

	/* 5. output model */
	if ((rc = usv_netdef_truncate(bdef, cut))) {
		fprintf(stderr, "usview train: cannot cut at %s\n", cut);
		goto out;
	}
	const char *prev = cut;
	for (int l = 0; l <= nh; l++) {
		int64_t ws[2] = {dims[l + 1], dims[l]}, bs[1] = {dims[l + 1]};
		char tn[640];
		if ((rc = add_fc(bdef, names[l], prev, dims[l + 1], l < nh)))
			break;
		snprintf(tn, sizeof tn, "%s.weight", names[l]);
		if ((rc = usv_netdef_add_tensor(bdef, tn, 2, ws, h->w[l])))
			break;
		snprintf(tn, sizeof tn, "%s.bias", names[l]);
		if ((rc = usv_netdef_add_tensor(bdef, tn, 1, bs, h->b[l])))
			break;
		prev = names[l];
		if (l < nh && h->dropout[l] > 0) {
			if (!strncmp(names[l], "fc", 2))
				snprintf(dnames[l], USV_NAME_MAX, "drop%s", names[l] + 2);
			else
				snprintf(dnames[l], USV_NAME_MAX, "head_drop%d", l + 1);
			if ((rc = add_simple(bdef, dnames[l], prev, USV_LAYER_DROPOUT,
			                     h->dropout[l])))
				break;
			prev = dnames[l];
		}
	}
	if (!rc)
		rc = add_simple(bdef, "prob", prev, USV_LAYER_SOFTMAX, 0);
	if (rc) {
		fprintf(stderr, "usview train: cannot assemble the model: %s\n", usv_strerror(rc));
		goto out;
	}
	prov = cJSON_CreateObject();
	cJSON_AddStringToObject(prov, "tool", "usview train");
	cJSON_AddStringToObject(prov, "preset", ps->name);
	cJSON *bj = cJSON_AddObjectToObject(prov, "backbone");
	cJSON_AddStringToObject(bj, "path", a.backbone);
	cJSON_AddStringToObject(bj, "sha256", bsha);
	cJSON_AddStringToObject(bj, "cut", cut);
	/* bmeta's pointers died with `probe`; bdef holds the same backbone */
	const char *bprov = usv_netdef_meta(bdef)->provenance_json;
	if (bprov) {
		cJSON *bp = cJSON_Parse(bprov);
		if (bp)
			cJSON_AddItemToObject(bj, "provenance", bp);
	}
	cJSON_AddNumberToObject(bj, "fc_layers_from_backbone", from_backbone);
	cJSON *lb = cJSON_AddArrayToObject(prov, "labels");
	for (int k = 0; k < train->n_labels; k++)
		cJSON_AddItemToArray(lb, cJSON_CreateString(train->labels[k]));
	cJSON_AddStringToObject(prov, "mean", use_mean ? "training-set mean image" : "backbone");
	if (use_mean)
		cJSON_AddStringToObject(prov, "mean_sha256", mhash);
	cJSON *dj = cJSON_AddObjectToObject(prov, "dataset");
	cJSON *dtr = cJSON_AddObjectToObject(dj, "train");
	cJSON_AddStringToObject(dtr, "spec", a.data);
	cJSON_AddStringToObject(dtr, "sha256", train->hash);
	cJSON_AddNumberToObject(dtr, "n", train->n);
	if (val) {
		cJSON *dv = cJSON_AddObjectToObject(dj, "val");
		cJSON_AddStringToObject(dv, "spec", a.val ? a.val : "held-out groups of train");
		cJSON_AddStringToObject(dv, "sha256", val->hash);
		cJSON_AddNumberToObject(dv, "n", val->n);
		if (!a.val)
			cJSON_AddNumberToObject(dv, "fraction", a.val_fraction);
	}
	{
		const usv_dataset *sets[2] = {train, val};
		const char *nm[2] = {"train", "validation"};
		char *tj = usv_dataset_table_json(sets, nm, val ? 2 : 1);
		cJSON *t = tj ? cJSON_Parse(tj) : NULL;
		free(tj);
		if (t)
			cJSON_AddItemToObject(dj, "table", t);
	}
	cJSON *sj = cJSON_AddObjectToObject(prov, "solver");
	cJSON_AddStringToObject(sj, "type", "SGD");
	cJSON_AddNumberToObject(sj, "iterations", to.iterations);
	cJSON_AddNumberToObject(sj, "batch", to.batch);
	cJSON_AddNumberToObject(sj, "momentum", to.momentum);
	cJSON_AddNumberToObject(sj, "weight_decay", to.weight_decay);
	cJSON_AddNumberToObject(sj, "seed", (double)a.seed);
	cJSON_AddNumberToObject(sj, "views", views);
	cJSON_AddNumberToObject(sj, "threads", (double)a.threads);
	cJSON_AddStringToObject(sj, "precision", a.precision == USV_TRAIN_BF16 ? "bf16" : "fp32");
	cJSON *lj = cJSON_AddArrayToObject(sj, "layers");
	for (int l = 0; l <= nh; l++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", names[l]);
		cJSON_AddNumberToObject(o, "in", dims[l]);
		cJSON_AddNumberToObject(o, "out", dims[l + 1]);
		cJSON_AddNumberToObject(o, "lr", h->lr[l]);
		cJSON_AddNumberToObject(o, "dropout", l < nh ? h->dropout[l] : 0);
		cJSON_AddItemToArray(lj, o);
	}
	cJSON_AddItemToObject(prov, "curve", curve_json(curve, n_curve));
	cJSON *mj = cJSON_AddObjectToObject(prov, "metrics");
	cJSON_AddNumberToObject(mj, "train_loss", tr_loss);
	cJSON_AddNumberToObject(mj, "train_top1", tr_acc);
	if (val) {
		cJSON_AddNumberToObject(mj, "val_loss", va_loss);
		cJSON_AddNumberToObject(mj, "val_top1", va_acc);
		if (va_auc >= 0)
			cJSON_AddNumberToObject(mj, "val_auc", va_auc);
	}
	cJSON *tj = cJSON_AddObjectToObject(prov, "time_s");
	cJSON_AddNumberToObject(tj, "datasets", t_load);
	cJSON_AddNumberToObject(tj, "mean_image", t_mean);
	cJSON_AddNumberToObject(tj, "features", t_feat);
	cJSON_AddNumberToObject(tj, "train", t_train);
	cJSON_AddNumberToObject(tj, "train_batch", ttimes.batch);
	cJSON_AddNumberToObject(tj, "train_forward", ttimes.forward);
	cJSON_AddNumberToObject(tj, "train_backward", ttimes.backward);
	cJSON_AddNumberToObject(tj, "train_eval", ttimes.eval);
	cJSON_AddStringToObject(prov, "feature_layer", nh > 0 ? names[nh - 1] : cut);
	prov_txt = cJSON_PrintUnformatted(prov);
	usv_model_meta om = *usv_netdef_meta(bdef);
	om.n_labels = train->n_labels;
	om.labels = (const char *const *)train->labels;
	om.output_layer = "prob";
	om.output_is_prob = 1;
	if (mean)
		om.mean_image = mean;
	om.provenance_json = prov_txt;
	snprintf(om.name, sizeof om.name, "%s",
	         a.name ? a.name : "usview transfer-learned view classifier");
	if ((rc = usv_netdef_set_meta(bdef, &om)) ||
	    (rc = usv_netdef_validate(bdef, err, sizeof err))) {
		fprintf(stderr, "usview train: %s\n", err[0] ? err : usv_strerror(rc));
		goto out;
	}
	if ((rc = usv_netdef_write(bdef, a.out, err, sizeof err))) {
		fprintf(stderr, "usview train: %s\n", err);
		goto out;
	}
	if (!a.quiet) {
		printf("features: %d images x %d views x %d (%.1f s); training %d iterations "
		       "batch %d (%.1f s)\n",
		       train->n, views, dim, t_feat, to.iterations, to.batch, t_train);
		printf("train loss %.4f top-1 %.4f", tr_loss, tr_acc);
		if (val)
			printf("; validation loss %.4f top-1 %.4f", va_loss, va_acc);
		if (va_auc >= 0)
			printf(" AUC %.4f", va_auc);
		printf(
		    "\ntime: datasets %.1f s, mean image %.1f s, features %.1f s, training %.1f s "
		    "(batches %.1f, forward %.1f, backward and SGD %.1f, validation %.1f)\n",
		    t_load, t_mean, t_feat, t_train, ttimes.batch, ttimes.forward, ttimes.backward,
		    ttimes.eval);
		printf("wrote %s (%.1f s in all)\n", a.out, usv_now() - t_start);
	}
	status = 0;
out:
	free_pixels(pixels, train ? train->n : 0);
	cJSON_Delete(prov);
	free(prov_txt);
	usv_head_free(h);
	free(curve);
	free(xtr);
	free(xva);
	free(ytr);
	free(yva);
	free(mean);
	free(cache);
	usv_model_free(fmodel);
	usv_netdef_free(bdef);
	usv_dataset_free(all);
	usv_dataset_free(train);
	usv_dataset_free(val);
	usv_dcm_global_cleanup();
	return status;
}
