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
 *	             [--precision fp32|bf16] [--no-calibrate] [--quiet]
 *	             [--class-weights none|balanced] [--label-smoothing E]
 *	             [--early-stopping N]
 *
 * DESCRIPTION
 *	usv_cmd_train() runs these phases in order, each a function below
 *	that takes the run (struct trun), fills its part of it and returns 0,
 *	or prints one "usview train: ..." line and returns a negative errno;
 *	trun_done() releases whatever the phases made.
 *
 *	parse_args()      options (getopt_long, cli/opt.h), into struct targs.
 *	load_datasets()   TRAIN, and VAL with TRAIN's labels (dataset.h).
 *	split_datasets()  without --val, --val-fraction holds out whole groups
 *	                  of TRAIN (seeded with --seed).
 *	load_backbone()   the cut layer: --cut, else the preset's (caffenet,
 *	                  vgg16: pool5), else the backbone's feature layer
 *	                  found from its structure: the layer before its
 *	                  classifier (the global average pooling of a whole
 *	                  MobileNet, whose 1x1 convolution to 1001 classes
 *	                  and softmax follow) or the last layer of an
 *	                  embedding extractor. A cut at or after a softmax is
 *	                  refused unless --cut names it. Prints "features:
 *	                  layer 'NAME' (SIZE)"; with --skip-unreadable,
 *	                  drops the images that the pipeline excludes (colour
 *	                  Doppler, not US) or cannot decode, with a warning
 *	                  each; prints the per-class table (the paper's Table
 *	                  2); caffenet / vgg16: the training-set mean image,
 *	                  which the output model subtracts (meta.mean_image);
 *	                  builds the feature model (the backbone cut, BF16
 *	                  convolutions with --precision bf16).
 *	extract_features() the frozen features of every training image in V
 *	                  fixed views and of the validation images (centre
 *	                  crop), through the engine on --threads threads,
 *	                  cached on disk (feature_cache.h; the key names the
 *	                  backbone, mean, sizes and kernels).
 *	build_head()      the FC head (usv/train.h): sizes, layer names,
 *	                  initial weights (from the backbone where the
 *	                  preset's layout is kept, else seeded), learning
 *	                  rates and dropout.
 *	train_head()      SGD with a learning curve, on --threads threads;
 *	                  --precision bf16 runs its GEMMs on bfloat16 operands
 *	                  with FP32 accumulation and FP32 master weights (fp32,
 *	                  the default, is the reference). Off by default (the
 *	                  presets' protocol): --class-weights balanced weighs
 *	                  each sample's loss by n / (k n_c) of its class (n
 *	                  training images, k classes, n_c of the class);
 *	                  --label-smoothing E trains on the target
 *	                  (1 - E) onehot + E / k; --early-stopping N evaluates
 *	                  the validation set every --eval-every iterations,
 *	                  stops after N evaluations without a lower validation
 *	                  loss and keeps the best weights (it needs --val or
 *	                  --val-fraction, which holds out whole groups, e.g.
 *	                  patients, of TRAIN).
 *	evaluate_head()   final loss and top-1 of the training and validation
 *	                  sets (view 0), ROC AUC of two-label validation sets.
 *	calibrate_head()  temperature scaling (usv/train.h): the T that
 *	                  minimises the NLL of softmax(logits / T) on the
 *	                  validation logits (golden-section search on log T),
 *	                  with the validation NLL and ECE (15 bins, stats.h)
 *	                  before and after; the model stores T as
 *	                  meta.temperature, so its softmax output is
 *	                  calibrated. Without a validation set (no --val, no
 *	                  --val-fraction) or with --no-calibrate, T stays 1.
 *	write_model()     backbone conv layers + the trained FC layers +
 *	                  softmax as a normal model file with labels, mean,
 *	                  and a provenance JSON holding the preset, solver,
 *	                  dataset hashes and table, learning curve, final
 *	                  validation metrics, the calibration (metrics.
 *	                  calibration) and the time of each phase (time_s,
 *	                  also printed).
 *
 *	Reproducibility: the same seed, data and --threads on one machine
 *	give the same model file weights and metrics, whatever the feature
 *	cache held before (usv/train.h, feature_cache.h).
 *
 * DIAGNOSTICS
 *	Exit status 0 on success, 1 on a failure, 2 on a usage error.
 */
#include "cli.h"
#include "dataset.h"
#include "feature_cache.h"
#include "opt.h"
#include "stats.h"
#include "train_common.h"

#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/nn.h"
#include "usv/sha256.h"
#include "usv/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "train"

/* ---------------- options ---------------- */

typedef struct targs {
	const char *preset, *backbone, *data, *val, *out, *cut, *cache, *name;
	double val_fraction, dropout;             /* dropout < 0: the preset's */
	int iterations, batch, views, eval_every; /* 0: the preset's / default */
	int threads;
	uint64_t seed;
	int no_mean, no_cache, quiet, skip_bad, precision, no_calibrate;
	int class_weights;      /* 1: balanced */
	double label_smoothing; /* 0: none */
	int early_stopping;     /* patience in evaluations; 0: off */
	char group_sep;
	int n_lr, n_hidden;
	double lr[5];
	int hidden[4];
} targs;

static void usage(FILE *f)
{
	fprintf(f, "usage: usview train --preset caffenet|vgg16|mobilenet --backbone MODEL --data "
	           "TRAIN\n"
	           "                    [--val VAL | --val-fraction F] -o MODEL [--iterations N]\n"
	           "                    [--seed S] [--batch B] [--lr a,b,c] [--hidden n[,n]]\n"
	           "                    [--dropout P] [--views 1|2|10] [--cut LAYER] [--no-mean]\n"
	           "                    [--group-sep C] [--cache DIR | --no-cache] [--threads T]\n"
	           "                    [--eval-every N] [--name TEXT] [--skip-unreadable]\n"
	           "                    [--precision fp32|bf16] [--no-calibrate] [--quiet]\n"
	           "                    [--class-weights none|balanced] [--label-smoothing E]\n"
	           "                    [--early-stopping N]\n");
}

/* A comma-separated list of 1..max numbers in [lo, hi] (integers when
 * integral): 0, or the usage line and -EINVAL. */
static int parse_list(const char *opt, const char *s, double lo, double hi, int integral, double *v,
                      int max, int *n)
{
	char buf[256];
	int k = 0;
	if (strlen(s) >= sizeof buf)
		goto bad;
	memcpy(buf, s, strlen(s) + 1);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		long lv;
		if (k == max)
			goto bad;
		if (integral ? usv_parse_int(t, (long)lo, (long)hi, &lv)
		             : usv_parse_float(t, lo, hi, &v[k]))
			goto bad;
		if (integral)
			v[k] = (double)lv;
		k++;
	}
	if (!k)
		goto bad;
	*n = k;
	return 0;
bad:
	fprintf(stderr, "usview " CMD ": %s: '%s' is not a list of 1 to %d %s in [%g, %g]\n", opt,
	        s, max, integral ? "integers" : "numbers", lo, hi);
	return -EINVAL;
}

enum {
	O_PRESET = 256,
	O_BACKBONE,
	O_DATA,
	O_VAL,
	O_VAL_FRACTION,
	O_ITERATIONS,
	O_SEED,
	O_BATCH,
	O_LR,
	O_HIDDEN,
	O_DROPOUT,
	O_VIEWS,
	O_CUT,
	O_NO_MEAN,
	O_GROUP_SEP,
	O_CACHE,
	O_NO_CACHE,
	O_THREADS,
	O_EVAL_EVERY,
	O_NAME,
	O_SKIP_UNREADABLE,
	O_PRECISION,
	O_NO_CALIBRATE,
	O_CLASS_WEIGHTS,
	O_LABEL_SMOOTHING,
	O_EARLY_STOPPING,
};

static const struct option long_opts[] = {
    {"preset", required_argument, NULL, O_PRESET},
    {"backbone", required_argument, NULL, O_BACKBONE},
    {"data", required_argument, NULL, O_DATA},
    {"val", required_argument, NULL, O_VAL},
    {"val-fraction", required_argument, NULL, O_VAL_FRACTION},
    {"out", required_argument, NULL, 'o'},
    {"iterations", required_argument, NULL, O_ITERATIONS},
    {"seed", required_argument, NULL, O_SEED},
    {"batch", required_argument, NULL, O_BATCH},
    {"lr", required_argument, NULL, O_LR},
    {"hidden", required_argument, NULL, O_HIDDEN},
    {"dropout", required_argument, NULL, O_DROPOUT},
    {"views", required_argument, NULL, O_VIEWS},
    {"cut", required_argument, NULL, O_CUT},
    {"no-mean", no_argument, NULL, O_NO_MEAN},
    {"group-sep", required_argument, NULL, O_GROUP_SEP},
    {"cache", required_argument, NULL, O_CACHE},
    {"no-cache", no_argument, NULL, O_NO_CACHE},
    {"threads", required_argument, NULL, O_THREADS},
    {"eval-every", required_argument, NULL, O_EVAL_EVERY},
    {"name", required_argument, NULL, O_NAME},
    {"skip-unreadable", no_argument, NULL, O_SKIP_UNREADABLE},
    {"precision", required_argument, NULL, O_PRECISION},
    {"no-calibrate", no_argument, NULL, O_NO_CALIBRATE},
    {"class-weights", required_argument, NULL, O_CLASS_WEIGHTS},
    {"label-smoothing", required_argument, NULL, O_LABEL_SMOOTHING},
    {"early-stopping", required_argument, NULL, O_EARLY_STOPPING},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* One option c with value v into a: 0, or the usage line and -EINVAL. */
static int parse_opt(int c, const char *v, targs *a)
{
	double h[4];
	switch (c) {
	case O_PRESET:
		a->preset = v;
		return 0;
	case O_BACKBONE:
		a->backbone = v;
		return 0;
	case O_DATA:
		a->data = v;
		return 0;
	case O_VAL:
		a->val = v;
		return 0;
	case 'o':
		a->out = v;
		return 0;
	case O_CUT:
		a->cut = v;
		return 0;
	case O_CACHE:
		a->cache = v;
		return 0;
	case O_NAME:
		a->name = v;
		return 0;
	case O_NO_MEAN:
		a->no_mean = 1;
		return 0;
	case O_NO_CACHE:
		a->no_cache = 1;
		return 0;
	case O_SKIP_UNREADABLE:
		a->skip_bad = 1;
		return 0;
	case O_NO_CALIBRATE:
		a->no_calibrate = 1;
		return 0;
	case 'q':
		a->quiet = 1;
		return 0;
	case O_PRECISION:
		if (!strcmp(v, "fp32") || !strcmp(v, "bf16")) {
			a->precision = v[0] == 'b' ? USV_TRAIN_BF16 : USV_TRAIN_FP32;
			return 0;
		}
		fprintf(stderr, "usview " CMD ": --precision: '%s' is not fp32 or bf16\n", v);
		return -EINVAL;
	case O_CLASS_WEIGHTS:
		if (!strcmp(v, "none") || !strcmp(v, "balanced")) {
			a->class_weights = v[0] == 'b';
			return 0;
		}
		fprintf(stderr, "usview " CMD ": --class-weights: '%s' is not none or balanced\n",
		        v);
		return -EINVAL;
	case O_LABEL_SMOOTHING:
		return usv_opt_double(CMD, "--label-smoothing", v, 0, 0.5, &a->label_smoothing);
	case O_EARLY_STOPPING:
		return usv_opt_int(CMD, "--early-stopping", v, 1, 1000000, &a->early_stopping);
	case O_GROUP_SEP:
		if (strlen(v) == 1) {
			a->group_sep = v[0];
			return 0;
		}
		fprintf(stderr, "usview " CMD ": --group-sep: '%s' is not one character\n", v);
		return -EINVAL;
	case O_VAL_FRACTION:
		return usv_opt_double(CMD, "--val-fraction", v, 0, 0.9, &a->val_fraction);
	case O_DROPOUT:
		return usv_opt_double(CMD, "--dropout", v, 0, 0.95, &a->dropout);
	case O_ITERATIONS:
		return usv_opt_int(CMD, "--iterations", v, 1, 100000000, &a->iterations);
	case O_BATCH:
		return usv_opt_int(CMD, "--batch", v, 1, 65536, &a->batch);
	case O_VIEWS:
		return usv_opt_int(CMD, "--views", v, 1, 10, &a->views);
	case O_THREADS:
		return usv_opt_int(CMD, "--threads", v, 1, 256, &a->threads);
	case O_EVAL_EVERY:
		return usv_opt_int(CMD, "--eval-every", v, 1, 100000000, &a->eval_every);
	case O_SEED:
		return usv_opt_u64(CMD, "--seed", v, 0, INT64_MAX, &a->seed);
	case O_LR:
		return parse_list("--lr", v, 0, 1e6, 0, a->lr, 5, &a->n_lr);
	case O_HIDDEN:
		if (parse_list("--hidden", v, 1, 65536, 1, h, 4, &a->n_hidden))
			return -EINVAL;
		for (int k = 0; k < a->n_hidden; k++)
			a->hidden[k] = (int)h[k];
		return 0;
	}
	return -EINVAL;
}

/* Options into a: 0 to run, 1 after --help (usage on stdout), or 2 (a
 * usage error, reported). */
static int parse_args(int argc, char **argv, targs *a)
{
	memset(a, 0, sizeof *a);
	a->seed = 1;
	a->threads = 2;
	a->dropout = -1;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":o:qh", long_opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == '?' || c == ':')
			return usv_opt_fail(CMD, c, argv);
		if (parse_opt(c, optarg, a))
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "usview " CMD ": %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	const char *missing = !a->preset     ? "--preset"
	                      : !a->backbone ? "--backbone"
	                      : !a->data     ? "--data"
	                      : !a->out      ? "--out"
	                                     : NULL;
	if (missing) {
		fprintf(stderr, "usview " CMD ": %s: required\n", missing);
		return 2;
	}
	if (a->early_stopping && !a->val && !(a->val_fraction > 0)) {
		fprintf(stderr, "usview " CMD ": --early-stopping needs a validation set: "
		                "--val-fraction F (whole groups of TRAIN, see --group-sep) or "
		                "--val VAL (never the test set)\n");
		return 2;
	}
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
                         const usv_model_opts *mo, usv_netdef **def_out, usv_model **out, char *err,
                         size_t errlen)
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
	rc = usv_model_from_netdef_ex(cutdef, mo, out, err, errlen);
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

/* ---------------- the run ---------------- */

/* What the phases hand on to each other. Pointers are owned by the run
 * and freed by trun_done(). */
typedef struct trun {
	const targs *a;
	const usv_train_preset *ps;
	char err[USV_ERRBUF];
	double t_start, t_load, t_mean, t_feat, t_train; /* seconds */
	/* load_datasets(), split_datasets() */
	usv_dataset *all, *train, *val;
	/* load_backbone() */
	usv_model_meta bmeta; /* the backbone's scalar fields (its pointers are not kept) */
	char cut[USV_NAME_MAX];
	const char *cut_rule;             /* how the cut was chosen (choose_cut()) */
	char classifier[USV_NAME_MAX];    /* the backbone's classifier layer below it, or "" */
	int n_classifier;                 /* its outputs */
	int cut_size;                     /* C * H * W of the cut layer's output */
	char after_softmax[USV_NAME_MAX]; /* a softmax at or before an explicit --cut, or "" */
	int use_mean;
	float *mean;      /* caffenet / vgg16: the training-set mean image */
	uint8_t **pixels; /* decoded training images kept by the mean pass */
	usv_netdef *bdef; /* the backbone, which becomes the output model */
	usv_model *fmodel;
	/* extract_features() */
	char bsha[65], mhash[65];
	int views, dim;
	float *xtr, *xva;
	int *ytr, *yva;
	/* build_head() */
	usv_head *h;
	int nh, from_backbone;
	int dims[USV_HEAD_MAX_LAYERS + 1];
	char names[USV_HEAD_MAX_LAYERS][USV_NAME_MAX];
	/* train_head() */
	usv_train_opts to;
	usv_train_times ttimes;
	usv_train_stop stop;
	float *cw; /* --class-weights balanced: [n_labels] */
	usv_curve_point *curve;
	int n_curve;
	/* evaluate_head() */
	double tr_loss, tr_acc, va_loss, va_acc, va_auc;
	/* calibrate_head(): T (1 = none) and the validation NLL / ECE at
	 * T = 1 and at T; calibrated = 0 when no T was fitted */
	int calibrated;
	double temperature, nll_before, nll_after, ece_before, ece_after;
} trun;

static void trun_done(trun *r)
{
	free_pixels(r->pixels, r->train ? r->train->n : 0);
	usv_head_free(r->h);
	free(r->cw);
	free(r->curve);
	free(r->xtr);
	free(r->xva);
	free(r->ytr);
	free(r->yva);
	free(r->mean);
	usv_model_free(r->fmodel);
	usv_netdef_free(r->bdef);
	usv_dataset_free(r->all);
	usv_dataset_free(r->train);
	usv_dataset_free(r->val);
}

/* Prints "usview train: <err or the code's text>" and returns rc (< 0). */
static int fail(trun *r, int rc)
{
	fprintf(stderr, "usview " CMD ": %s\n", r->err[0] ? r->err : usv_strerror(rc));
	return rc < 0 ? rc : -EINVAL;
}

/* TRAIN (r->all) and VAL (r->val, with TRAIN's label order). */
static int load_datasets(trun *r)
{
	const targs *a = r->a;
	usv_ds_opts dso = {.group_sep = a->group_sep, .threads = a->threads};
	int rc = usv_dataset_load(a->data, &dso, &r->all, r->err, sizeof r->err);
	if (rc)
		return fail(r, rc);
	if (r->all->n_labels < 2) {
		fprintf(stderr, "usview " CMD ": %s: needs at least two labels\n", a->data);
		return -EINVAL;
	}
	if (a->val) {
		usv_ds_opts vo = {.group_sep = a->group_sep,
		                  .threads = a->threads,
		                  .labels = (const char *const *)r->all->labels,
		                  .n_labels = r->all->n_labels};
		if ((rc = usv_dataset_load(a->val, &vo, &r->val, r->err, sizeof r->err)))
			return fail(r, rc);
	}
	return 0;
}

/* r->all into r->train and, with --val-fraction and no --val, r->val. */
static int split_datasets(trun *r)
{
	const targs *a = r->a;
	if (a->val || !(a->val_fraction > 0)) {
		r->train = r->all;
		r->all = NULL;
		return 0;
	}
	int rc = usv_dataset_split(r->all, a->val_fraction, a->seed, &r->train, &r->val);
	if (rc) {
		fprintf(stderr, "usview " CMD ": cannot split: %s\n", usv_strerror(rc));
		return rc;
	}
	return 0;
}

/* Index of the layer called name in def, or -1 ("data", unknown). */
static int layer_index(usv_netdef *def, const char *name)
{
	int nl = usv_netdef_n_layers(def);
	for (int i = 0; i < nl; i++)
		if (!strcmp(usv_netdef_layer(def, i)->name, name))
			return i;
	return -1;
}

/* The softmax at or before layer i (i itself or one of the layers it is
 * computed from) into *found (NULL: none): 0 or -ENOMEM. */
static int softmax_upstream(usv_netdef *def, int i, const char **found)
{
	int nl = usv_netdef_n_layers(def);
	char *seen = calloc((size_t)nl, 1);
	int *stack = malloc((size_t)nl * sizeof(int));
	int top = 0, rc = -ENOMEM;
	*found = NULL;
	if (!seen || !stack)
		goto out;
	rc = 0;
	stack[top++] = i;
	seen[i] = 1;
	while (top) {
		const usv_layer_def *l = usv_netdef_layer(def, stack[--top]);
		if (l->type == USV_LAYER_SOFTMAX) {
			*found = l->name;
			break;
		}
		for (int k = 0; k < l->n_inputs; k++) {
			int j = layer_index(def, l->inputs[k]);
			if (j >= 0 && !seen[j]) {
				seen[j] = 1;
				stack[top++] = j;
			}
		}
	}
out:
	free(seen);
	free(stack);
	return rc;
}

/* The backbone's feature layer, found from its structure: walking back
 * from the last layer over the classifier layers (softmax, flatten,
 * dropout, and inner products or 1x1 convolutions of a 1 x 1 input, all
 * to the class count), the first layer that is not one of them, e.g.
 * the global average pooling of a MobileNet. Its index, -1 when the
 * walk reaches the network input, or -ENOMEM; *clf (may stay NULL) the
 * classifier layer skipped, *nclass its class count. */
static int feature_layer_of(usv_netdef *def, const char **clf, int *nclass)
{
	int nl = usv_netdef_n_layers(def), cur = nl - 1, rc = -1;
	/* spatially 1 x 1 outputs: global pooling, inner products, flatten,
	 * and 1x1 convolutions and element-wise layers of such outputs */
	char *one = calloc((size_t)(nl > 0 ? nl : 1), 1);
	*clf = NULL;
	*nclass = -1;
	if (!one)
		return -ENOMEM;
	for (int i = 0; i < nl; i++) {
		const usv_layer_def *l = usv_netdef_layer(def, i);
		int in = l->n_inputs > 0 ? layer_index(def, l->inputs[0]) : -1;
		int in1 = in >= 0 && in < i && one[in];
		switch (l->type) {
		case USV_LAYER_GLOBAL_AVEPOOL:
		case USV_LAYER_FC:
		case USV_LAYER_FLATTEN:
			one[i] = 1;
			break;
		case USV_LAYER_CONV:
			one[i] = in1 && l->kernel_h == 1 && l->kernel_w == 1;
			break;
		case USV_LAYER_SOFTMAX:
		case USV_LAYER_DROPOUT:
		case USV_LAYER_RELU:
		case USV_LAYER_RELU6:
		case USV_LAYER_ADD:
			one[i] = in1;
			break;
		default:
			one[i] = 0;
		}
	}
	while (cur >= 0) {
		const usv_layer_def *l = usv_netdef_layer(def, cur);
		if (l->n_inputs != 1)
			break;
		int in = layer_index(def, l->inputs[0]), tail = 0;
		switch (l->type) {
		case USV_LAYER_SOFTMAX:
		case USV_LAYER_FLATTEN:
		case USV_LAYER_DROPOUT:
			tail = 1;
			break;
		case USV_LAYER_FC:
		case USV_LAYER_CONV:
			tail = (l->type == USV_LAYER_FC || (l->kernel_h == 1 && l->kernel_w == 1 &&
			                                    l->group == 1 && in >= 0 && one[in])) &&
			       (*nclass < 0 || l->num_output == *nclass);
			if (tail) {
				*nclass = l->num_output;
				*clf = l->name;
			}
			break;
		default:
			break;
		}
		if (!tail) {
			rc = cur;
			break;
		}
		cur = in;
	}
	free(one);
	return rc;
}

/* The cut layer into r->cut and how it was chosen into r->cut_rule:
 * --cut as given; else the preset's layer (caffenet, vgg16: pool5); else
 * (mobilenet: an embedding extractor or a whole MobileNet) the feature
 * layer found by feature_layer_of(). A cut that --cut did not name is
 * refused when it is, or comes after, a softmax: the head would learn
 * from the backbone's class probabilities. */
static int choose_cut(trun *r, usv_netdef *probe)
{
	const char *bb = r->a->backbone;
	const char *cut = r->a->cut ? r->a->cut : r->ps->cut;
	int idx = cut ? layer_index(probe, cut) : -1, nl = usv_netdef_n_layers(probe);
	r->cut_rule = r->a->cut ? "--cut" : "preset";
	r->classifier[0] = 0;
	if (!cut) {
		const char *clf = NULL;
		int nclass = -1;
		idx = feature_layer_of(probe, &clf, &nclass);
		if (idx == -ENOMEM)
			return fail(r, idx);
		if (idx < 0) {
			fprintf(stderr,
			        "usview " CMD
			        ": %s: no feature layer: every layer from the input on "
			        "is a classifier layer (name one with --cut LAYER)\n",
			        bb);
			return -ENOENT;
		}
		cut = usv_netdef_layer(probe, idx)->name;
		r->cut_rule = idx == nl - 1 ? "last layer" : "before the backbone's classifier";
		if (clf) {
			snprintf(r->classifier, sizeof r->classifier, "%s", clf);
			r->n_classifier = nclass;
		}
	}
	if (idx < 0) {
		fprintf(stderr, "usview " CMD ": %s: no layer '%s' (use --cut)\n", bb, cut);
		return -ENOENT;
	}
	const char *sm = NULL;
	int rc = softmax_upstream(probe, idx, &sm);
	if (rc)
		return fail(r, rc);
	if (sm && !r->a->cut) {
		fprintf(stderr,
		        "usview " CMD ": %s: the feature layer would be '%s', %s the softmax '%s': "
		        "its outputs are the backbone's own class probabilities, not image "
		        "features. Name a layer before the classifier (e.g. the global pooling) "
		        "with --cut LAYER, or give --cut '%s' to train on them anyway\n",
		        bb, cut, strcmp(sm, cut) ? "after" : "at", sm, cut);
		return -EINVAL;
	}
	if (sm)
		fprintf(stderr,
		        "usview " CMD ": warning: --cut '%s' is %s the softmax '%s': the head "
		        "learns from the backbone's class probabilities\n",
		        cut, strcmp(sm, cut) ? "after" : "at", sm);
	snprintf(r->after_softmax, sizeof r->after_softmax, "%s", sm ? sm : "");
	snprintf(r->cut, sizeof r->cut, "%s", cut);
	return 0;
}

/* --skip-unreadable: drops what the pipeline cannot use. */
static int drop_unusable(trun *r)
{
	int d1 = 0, d2 = 0, rc;
	if ((rc = usv_dataset_drop_unloadable(r->train, r->bmeta.resize_w, stderr, &d1)) ||
	    (r->val &&
	     (rc = usv_dataset_drop_unloadable(r->val, r->bmeta.resize_w, stderr, &d2)))) {
		fprintf(stderr, "usview " CMD ": %s\n", usv_strerror(rc));
		return rc;
	}
	if (d1 + d2)
		fprintf(stderr, "usview " CMD ": skipped %d unreadable or excluded images\n",
		        d1 + d2);
	if (r->train->n < 1 || (r->val && r->val->n < 1)) {
		fprintf(stderr, "usview " CMD ": no usable images left\n");
		return -ENOENT;
	}
	return 0;
}

/* The cut, the usable images, the dataset table, the mean image and the
 * feature model. */
static int load_backbone(trun *r)
{
	const targs *a = r->a;
	usv_netdef *probe = NULL;
	int rc = usv_netdef_read(a->backbone, &probe, r->err, sizeof r->err);
	if (rc)
		return fail(r, rc);
	r->bmeta = *usv_netdef_meta(probe);
	rc = choose_cut(r, probe);
	usv_netdef_free(probe);
	/* only the scalar fields of bmeta are used from here on */
	if (rc || (a->skip_bad && (rc = drop_unusable(r))))
		return rc;
	if (!a->quiet) {
		const usv_dataset *sets[2] = {r->train, r->val};
		const char *names[2] = {"train", "validation"};
		usv_dataset_table(stdout, sets, names, r->val ? 2 : 1);
	}
	r->use_mean = r->ps->mean_image && !a->no_mean;
	r->t_load = usv_now() - r->t_start;
	double t0 = usv_now();
	if (r->use_mean) {
		if (r->bmeta.resize_w != r->bmeta.resize_h) {
			fprintf(stderr, "usview " CMD ": %s: non-square resize\n", a->backbone);
			return -EINVAL;
		}
		r->pixels = calloc((size_t)r->train->n, sizeof *r->pixels);
		rc = r->pixels ? usv_mean_image(r->train, &r->bmeta, a->threads, r->pixels,
		                                KEEP_PIXELS_MAX, &r->mean, r->err, sizeof r->err)
		               : -ENOMEM;
		if (rc)
			return fail(r, rc);
	}
	r->t_mean = usv_now() - t0;
	/* --precision bf16: the frozen backbone's convolutions and inner
	 * products on BF16 operands too (where the CPU has AVX512_BF16) */
	usv_model_opts mo = {.winograd = 1,
	                     .bf16 = a->precision == USV_TRAIN_BF16 ? USV_BF16_ALL : USV_BF16_OFF};
	if ((rc = feature_model(a->backbone, r->cut, r->mean, &mo, &r->bdef, &r->fmodel, r->err,
	                        sizeof r->err)))
		return fail(r, rc);
	int chw[3] = {0, 0, 0};
	if (!usv_model_layer_shape(r->fmodel, r->cut, chw))
		r->cut_size = chw[0] * chw[1] * chw[2];
	if (!a->quiet) {
		printf("features: layer '%s' (%d)", r->cut, r->cut_size);
		if (r->classifier[0])
			printf(", before the backbone's classifier '%s' (%d classes)",
			       r->classifier, r->n_classifier);
		else
			printf(", %s", r->cut_rule);
		printf("\n");
	}
	return 0;
}

/* Features of the training set (r->views views) into r->xtr and of the
 * validation set (view 0) into r->xva, their labels into r->ytr / r->yva. */
static int extract_features(trun *r)
{
	const targs *a = r->a;
	int rc;
	snprintf(r->mhash, sizeof r->mhash, "none");
	if ((rc = usv_sha256_file(a->backbone, r->bsha))) {
		fprintf(stderr, "usview " CMD ": %s: %s\n", a->backbone, usv_strerror(rc));
		return rc;
	}
	const usv_model_meta *fm = usv_model_get_meta(r->fmodel);
	if (r->mean)
		hash_floats(r->mean, (size_t)3 * fm->resize_w * fm->resize_h, r->mhash);
	char key[300];
	snprintf(key, sizeof key, "backbone=%s;mean=%s;resize=%dx%d;input=%dx%d%s", r->bsha,
	         r->mhash, fm->resize_w, fm->resize_h, fm->input_w, fm->input_h,
	         a->precision == USV_TRAIN_BF16 ? ";kernels=bf16" : "");
	char *cache = a->cache ? strdup(a->cache) : !a->no_cache ? default_cache() : NULL;
	r->views = a->views > 0 ? a->views : r->ps->views;
	if (fm->resize_w == fm->input_w && fm->resize_h == fm->input_h && r->views > 2)
		r->views = 2; /* all five crops coincide */
	double t0 = usv_now();
	prog pf = {usv_now(), "features", a->quiet};
	usv_feat_spec fs = {.model = r->fmodel,
	                    .cut = r->cut,
	                    .n_views = r->views,
	                    .cache_dir = cache,
	                    .key = key,
	                    .batch = 16,
	                    .threads = a->threads,
	                    .pixels = (const uint8_t *const *)r->pixels,
	                    .progress = feat_progress,
	                    .progress_ctx = &pf};
	rc = usv_features_compute(&fs, r->train, &r->xtr, &r->dim, r->err, sizeof r->err);
	if (!rc && r->val) {
		usv_feat_spec vs = fs;
		int dimv = 0;
		vs.n_views = 1;
		vs.pixels = NULL;
		pf.t0 = usv_now();
		pf.label = "val feat";
		rc = usv_features_compute(&vs, r->val, &r->xva, &dimv, r->err, sizeof r->err);
	}
	free(cache);
	if (rc)
		return fail(r, rc);
	r->t_feat = usv_now() - t0;
	free_pixels(r->pixels, r->train->n);
	r->pixels = NULL;
	r->ytr = malloc((size_t)r->train->n * sizeof(int));
	r->yva = malloc((size_t)(r->val ? r->val->n : 1) * sizeof(int));
	if (!r->ytr || !r->yva)
		return fail(r, -ENOMEM);
	for (int i = 0; i < r->train->n; i++)
		r->ytr[i] = r->train->items[i].label;
	for (int i = 0; r->val && i < r->val->n; i++)
		r->yva[i] = r->val->items[i].label;
	return 0;
}

/* Layer l of the head from the backbone's FC layer of the same name and
 * shape (Caffe's fc6 / fc7): 1 when taken, else 0. */
static int init_from_backbone(trun *r, int l)
{
	usv_head *h = r->h;
	int ndim = 0;
	int64_t shp[4] = {0};
	char tn[USV_NAME_MAX + 8];
	snprintf(tn, sizeof tn, "%s.weight", r->names[l]);
	float *w = usv_netdef_tensor(r->bdef, tn, &ndim, shp);
	int okshape =
	    w && shp[0] == r->dims[l + 1] &&
	    (ndim == 2 ? shp[1] == r->dims[l]
	               : shp[1] * (ndim > 2 ? shp[2] : 1) * (ndim > 3 ? shp[3] : 1) == r->dims[l]);
	snprintf(tn, sizeof tn, "%s.bias", r->names[l]);
	float *b = usv_netdef_tensor(r->bdef, tn, &ndim, shp);
	if (!okshape || !b)
		return 0;
	memcpy(h->w[l], w, (size_t)r->dims[l + 1] * r->dims[l] * sizeof(float));
	memcpy(h->b[l], b, (size_t)r->dims[l + 1] * sizeof(float));
	return 1;
}

/* The head: sizes, names, initial weights, learning rates, dropout. */
static int build_head(trun *r)
{
	const targs *a = r->a;
	const usv_train_preset *ps = r->ps;
	int nh = r->nh = a->n_hidden ? a->n_hidden : ps->n_hidden;
	if (a->n_lr && a->n_lr != 1 && a->n_lr != nh + 1) {
		fprintf(stderr, "usview " CMD ": --lr wants 1 or %d rates\n", nh + 1);
		return -EINVAL;
	}
	r->dims[0] = r->dim;
	for (int l = 0; l < nh; l++)
		r->dims[l + 1] = a->n_hidden ? a->hidden[l] : ps->hidden[l];
	r->dims[nh + 1] = r->train->n_labels;
	int rc = usv_head_new(nh + 1, r->dims, &r->h);
	if (rc) {
		fprintf(stderr, "usview " CMD ": cannot build the head: %s\n", usv_strerror(rc));
		return rc;
	}
	/* layer names: Caffe's fc6/fc7/fc8 when the preset's layout is kept,
	 * head_fc1.. head_logits otherwise */
	int caffe_names = ps->n_hidden == 2 && nh == 2;
	for (int l = 0; l <= nh; l++) {
		if (caffe_names)
			snprintf(r->names[l], USV_NAME_MAX, "%s", ps->names[l]);
		else if (l < nh)
			snprintf(r->names[l], USV_NAME_MAX, "head_fc%d", l + 1);
		else
			snprintf(r->names[l], USV_NAME_MAX, "head_logits");
	}
	usv_rng rng;
	usv_rng_seed(&rng, a->seed);
	for (int l = 0; l <= nh; l++) {
		if (l < nh && ps->init_from_backbone && caffe_names && init_from_backbone(r, l)) {
			r->from_backbone++;
			continue;
		}
		/* Caffe's fine-tuning recipe: the new output layer N(0, 0.01^2);
		 * new hidden layers He-scaled */
		usv_head_init_layer(r->h, l, l == nh ? 0.01f : 0.0f, &rng);
	}
	for (int l = 0; l <= nh; l++) {
		int pi = l < nh ? (l < ps->n_hidden ? l : ps->n_hidden - 1) : ps->n_hidden;
		r->h->lr[l] = ps->lr[pi];
		if (a->n_lr == nh + 1)
			r->h->lr[l] = (float)a->lr[l];
		else if (a->n_lr == 1)
			r->h->lr[l] = (float)a->lr[0] * (l == nh ? 10.0f : 1.0f);
		if (l < nh)
			r->h->dropout[l] = a->dropout >= 0 ? (float)a->dropout : ps->dropout;
	}
	return 0;
}

static usv_train_data train_data(const trun *r)
{
	return (usv_train_data){r->train->n, r->views, r->dim, r->xtr, r->ytr};
}

static usv_train_data val_data(const trun *r)
{
	return (usv_train_data){r->val ? r->val->n : 0, 1, r->dim, r->xva, r->yva};
}

/* SGD on the features: the head in place, the learning curve. */
static int train_head(trun *r)
{
	const targs *a = r->a;
	usv_train_opts *to = &r->to;
	usv_train_opts_default(to);
	to->iterations = a->iterations ? a->iterations : r->ps->iterations;
	to->batch = a->batch ? a->batch : r->ps->batch;
	to->seed = a->seed;
	to->eval_every = a->eval_every;
	to->threads = a->threads;
	to->precision = a->precision;
	to->times = &r->ttimes;
	to->stop = &r->stop;
	to->early_stopping = a->early_stopping;
	to->loss.label_smoothing = (float)a->label_smoothing;
	if (a->class_weights) {
		int k = r->train->n_labels;
		if (!(r->cw = malloc((size_t)k * sizeof(float))))
			return fail(r, -ENOMEM);
		int rc = usv_class_weights_balanced(r->ytr, r->train->n, k, r->cw);
		if (rc) {
			fprintf(stderr, "usview " CMD ": class weights: %s\n", usv_strerror(rc));
			return rc;
		}
		to->loss.class_weight = r->cw;
		if (!a->quiet) {
			printf("class weights (balanced):");
			for (int c = 0; c < k; c++)
				printf(" %s %.4f", r->train->labels[c], r->cw[c]);
			printf("\n");
		}
	}
	prog pt = {usv_now(), "train", a->quiet};
	to->progress = train_progress;
	to->progress_ctx = &pt;
	usv_train_data td = train_data(r), vd = val_data(r);
	double t0 = usv_now();
	int rc = usv_head_train(r->h, &td, r->val ? &vd : NULL, to, &r->curve, &r->n_curve);
	to->progress = NULL;
	to->progress_ctx = NULL;
	if (rc) {
		fprintf(stderr, "usview " CMD ": training failed: %s\n", usv_strerror(rc));
		return rc;
	}
	r->t_train = usv_now() - t0;
	if (r->stop.stopped_early && !a->quiet && isatty(2))
		fputc('\n', stderr); /* ends the progress line short of its total */
	if (a->early_stopping && !a->quiet)
		printf("early stopping: %s after %d of %d iterations; kept the weights of "
		       "iteration %d (validation loss %.4f)\n",
		       r->stop.stopped_early ? "stopped" : "did not stop", r->stop.iterations,
		       to->iterations, r->stop.best_iter, r->stop.best_val_loss);
	return 0;
}

/* Final metrics: view 0 of every image of both sets; the ROC AUC of the
 * second label's probability on a two-label validation set. */
static int evaluate_head(trun *r)
{
	usv_train_data td = train_data(r), vd = val_data(r);
	r->va_loss = r->va_acc = r->va_auc = -1;
	usv_head_evaluate(r->h, &td, &r->tr_loss, &r->tr_acc);
	if (!r->val)
		return 0;
	usv_head_evaluate(r->h, &vd, &r->va_loss, &r->va_acc);
	if (r->train->n_labels != 2)
		return 0;
	int n = r->val->n;
	float *pr = malloc((size_t)n * 2 * sizeof(float));
	double *sc = malloc((size_t)n * sizeof(double));
	int *pos = malloc((size_t)n * sizeof(int));
	if (pr && sc && pos && !usv_head_forward(r->h, r->xva, n, 1, pr)) {
		for (int i = 0; i < n; i++) {
			sc[i] = pr[2 * i + 1];
			pos[i] = r->yva[i] == 1;
		}
		if (usv_auc(sc, pos, (size_t)n, &r->va_auc))
			r->va_auc = -1;
	}
	free(pr);
	free(sc);
	free(pos);
	return 0;
}

/* ECE (USV_CALIB_BINS bins) and NLL of the validation logits z[n][nc]
 * at temperature t; 0 or -ENOMEM / -EINVAL. */
static int val_calibration(const trun *r, const float *z, double t, double *ece, double *nll)
{
	int n = r->val->n, nc = r->train->n_labels;
	struct usv_calib_bin bins[USV_CALIB_BINS];
	float *p = malloc((size_t)n * nc * sizeof(float));
	if (!p)
		return -ENOMEM;
	memcpy(p, z, (size_t)n * nc * sizeof(float));
	for (int i = 0; i < n; i++)
		usv_softmax_t(p + (size_t)i * nc, nc, (float)t);
	int rc = usv_calibration(p, r->yva, (size_t)n, nc, USV_CALIB_BINS, bins, ece, NULL);
	free(p);
	if (!rc)
		*nll = usv_temperature_nll(z, r->yva, n, nc, t);
	return rc;
}

/* Temperature scaling on the validation logits (see the DESCRIPTION). */
static int calibrate_head(trun *r)
{
	r->temperature = 1;
	if (!r->val || r->a->no_calibrate) {
		if (!r->a->quiet)
			printf("calibration: none (%s), temperature 1\n",
			       r->a->no_calibrate ? "--no-calibrate" : "no validation set");
		return 0;
	}
	int n = r->val->n, nc = r->train->n_labels, rc;
	float *z = malloc((size_t)n * nc * sizeof(float));
	if (!z)
		return fail(r, -ENOMEM);
	double t = 1;
	if ((rc = usv_head_forward(r->h, r->xva, n, 0, z)) ||
	    (rc = usv_temperature_fit(z, r->yva, n, nc, &t)) ||
	    (rc = val_calibration(r, z, 1.0, &r->ece_before, &r->nll_before)) ||
	    (rc = val_calibration(r, z, (float)t, &r->ece_after, &r->nll_after))) {
		free(z);
		fprintf(stderr, "usview " CMD ": calibration failed: %s\n", usv_strerror(rc));
		return rc;
	}
	free(z);
	/* the model stores a float: report the T it will apply */
	r->temperature = (float)t;
	r->calibrated = 1;
	if (!r->a->quiet)
		printf("calibration: temperature %.4f on %d validation images: NLL %.4f -> %.4f, "
		       "ECE %.4f -> %.4f\n",
		       r->temperature, n, r->nll_before, r->nll_after, r->ece_before, r->ece_after);
	return 0;
}

/* The backbone cut at r->cut, then the head's FC (+ dropout) layers and
 * the softmax "prob". */
static int assemble_model(trun *r)
{
	usv_netdef *def = r->bdef;
	int rc = usv_netdef_truncate(def, r->cut);
	if (rc) {
		fprintf(stderr, "usview " CMD ": cannot cut at %s\n", r->cut);
		return rc;
	}
	/* layer names are copied by usv_netdef_add_layer() */
	char dname[USV_NAME_MAX];
	char prev[USV_NAME_MAX];
	snprintf(prev, sizeof prev, "%s", r->cut);
	for (int l = 0; l <= r->nh && !rc; l++) {
		int64_t ws[2] = {r->dims[l + 1], r->dims[l]}, bs[1] = {r->dims[l + 1]};
		char tn[640];
		if ((rc = add_fc(def, r->names[l], prev, r->dims[l + 1], l < r->nh)))
			break;
		snprintf(tn, sizeof tn, "%s.weight", r->names[l]);
		if ((rc = usv_netdef_add_tensor(def, tn, 2, ws, r->h->w[l])))
			break;
		snprintf(tn, sizeof tn, "%s.bias", r->names[l]);
		if ((rc = usv_netdef_add_tensor(def, tn, 1, bs, r->h->b[l])))
			break;
		snprintf(prev, sizeof prev, "%s", r->names[l]);
		if (l < r->nh && r->h->dropout[l] > 0) {
			if (!strncmp(r->names[l], "fc", 2))
				snprintf(dname, sizeof dname, "drop%s", r->names[l] + 2);
			else
				snprintf(dname, sizeof dname, "head_drop%d", l + 1);
			rc = add_simple(def, dname, prev, USV_LAYER_DROPOUT, r->h->dropout[l]);
			snprintf(prev, sizeof prev, "%s", dname);
		}
	}
	if (!rc)
		rc = add_simple(def, "prob", prev, USV_LAYER_SOFTMAX, 0);
	if (rc)
		fprintf(stderr, "usview " CMD ": cannot assemble the model: %s\n",
		        usv_strerror(rc));
	return rc;
}

/* The provenance JSON of the run (NULL on no memory). */
static cJSON *provenance(const trun *r)
{
	const targs *a = r->a;
	const usv_train_opts *to = &r->to;
	cJSON *prov = cJSON_CreateObject();
	if (!prov)
		return NULL;
	cJSON_AddStringToObject(prov, "tool", "usview train");
	cJSON_AddStringToObject(prov, "preset", r->ps->name);
	cJSON *bj = cJSON_AddObjectToObject(prov, "backbone");
	cJSON_AddStringToObject(bj, "path", a->backbone);
	cJSON_AddStringToObject(bj, "sha256", r->bsha);
	cJSON_AddStringToObject(bj, "cut", r->cut);
	cJSON_AddStringToObject(bj, "cut_rule", r->cut_rule);
	cJSON_AddNumberToObject(bj, "cut_size", r->cut_size);
	if (r->classifier[0]) {
		cJSON *cl = cJSON_AddObjectToObject(bj, "classifier");
		cJSON_AddStringToObject(cl, "layer", r->classifier);
		cJSON_AddNumberToObject(cl, "classes", r->n_classifier);
	}
	if (r->after_softmax[0])
		cJSON_AddStringToObject(bj, "cut_after_softmax", r->after_softmax);
	const char *bprov = usv_netdef_meta(r->bdef)->provenance_json;
	if (bprov) {
		cJSON *bp = cJSON_Parse(bprov);
		if (bp)
			cJSON_AddItemToObject(bj, "provenance", bp);
	}
	cJSON_AddNumberToObject(bj, "fc_layers_from_backbone", r->from_backbone);
	cJSON *lb = cJSON_AddArrayToObject(prov, "labels");
	for (int k = 0; k < r->train->n_labels; k++)
		cJSON_AddItemToArray(lb, cJSON_CreateString(r->train->labels[k]));
	cJSON_AddStringToObject(prov, "mean", r->use_mean ? "training-set mean image" : "backbone");
	if (r->use_mean)
		cJSON_AddStringToObject(prov, "mean_sha256", r->mhash);
	cJSON *dj = cJSON_AddObjectToObject(prov, "dataset");
	cJSON *dtr = cJSON_AddObjectToObject(dj, "train");
	cJSON_AddStringToObject(dtr, "spec", a->data);
	cJSON_AddStringToObject(dtr, "sha256", r->train->hash);
	cJSON_AddNumberToObject(dtr, "n", r->train->n);
	if (r->val) {
		cJSON *dv = cJSON_AddObjectToObject(dj, "val");
		cJSON_AddStringToObject(dv, "spec", a->val ? a->val : "held-out groups of train");
		cJSON_AddStringToObject(dv, "sha256", r->val->hash);
		cJSON_AddNumberToObject(dv, "n", r->val->n);
		if (!a->val)
			cJSON_AddNumberToObject(dv, "fraction", a->val_fraction);
	}
	{
		const usv_dataset *sets[2] = {r->train, r->val};
		const char *nm[2] = {"train", "validation"};
		char *tj = usv_dataset_table_json(sets, nm, r->val ? 2 : 1);
		cJSON *t = tj ? cJSON_Parse(tj) : NULL;
		free(tj);
		if (t)
			cJSON_AddItemToObject(dj, "table", t);
	}
	cJSON *sj = cJSON_AddObjectToObject(prov, "solver");
	cJSON_AddStringToObject(sj, "type", "SGD");
	cJSON_AddNumberToObject(sj, "iterations", to->iterations);
	cJSON_AddNumberToObject(sj, "batch", to->batch);
	cJSON_AddNumberToObject(sj, "momentum", to->momentum);
	cJSON_AddNumberToObject(sj, "weight_decay", to->weight_decay);
	cJSON_AddNumberToObject(sj, "seed", (double)a->seed);
	cJSON_AddNumberToObject(sj, "views", r->views);
	cJSON_AddNumberToObject(sj, "threads", (double)a->threads);
	cJSON_AddStringToObject(sj, "precision", a->precision == USV_TRAIN_BF16 ? "bf16" : "fp32");
	if (r->cw) {
		cJSON *cw = cJSON_AddObjectToObject(sj, "class_weights");
		cJSON_AddStringToObject(cw, "method", "balanced: n / (k n_c)");
		cJSON *wv = cJSON_AddArrayToObject(cw, "weights");
		for (int c = 0; c < r->train->n_labels; c++)
			cJSON_AddItemToArray(wv, cJSON_CreateNumber(r->cw[c]));
	} else {
		cJSON_AddStringToObject(sj, "class_weights", "none");
	}
	cJSON_AddNumberToObject(sj, "label_smoothing", to->loss.label_smoothing);
	if (a->early_stopping) {
		cJSON *es = cJSON_AddObjectToObject(sj, "early_stopping");
		cJSON_AddNumberToObject(es, "patience", a->early_stopping);
		cJSON_AddNumberToObject(es, "eval_every",
		                        a->eval_every ? a->eval_every : (to->iterations + 9) / 10);
		cJSON_AddStringToObject(
		    es, "monitor", "validation loss (plain cross-entropy of the validation set)");
		cJSON_AddNumberToObject(es, "iterations_run", r->stop.iterations);
		cJSON_AddBoolToObject(es, "stopped_early", r->stop.stopped_early);
		cJSON_AddNumberToObject(es, "best_iter", r->stop.best_iter);
		cJSON_AddNumberToObject(es, "best_val_loss", r->stop.best_val_loss);
	} else {
		cJSON_AddNullToObject(sj, "early_stopping");
	}
	cJSON *lj = cJSON_AddArrayToObject(sj, "layers");
	for (int l = 0; l <= r->nh; l++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", r->names[l]);
		cJSON_AddNumberToObject(o, "in", r->dims[l]);
		cJSON_AddNumberToObject(o, "out", r->dims[l + 1]);
		cJSON_AddNumberToObject(o, "lr", r->h->lr[l]);
		cJSON_AddNumberToObject(o, "dropout", l < r->nh ? r->h->dropout[l] : 0);
		cJSON_AddItemToArray(lj, o);
	}
	cJSON_AddItemToObject(prov, "curve", curve_json(r->curve, r->n_curve));
	cJSON *mj = cJSON_AddObjectToObject(prov, "metrics");
	cJSON_AddNumberToObject(mj, "train_loss", r->tr_loss);
	cJSON_AddNumberToObject(mj, "train_top1", r->tr_acc);
	if (r->val) {
		cJSON_AddNumberToObject(mj, "val_loss", r->va_loss);
		cJSON_AddNumberToObject(mj, "val_top1", r->va_acc);
		if (r->va_auc >= 0)
			cJSON_AddNumberToObject(mj, "val_auc", r->va_auc);
	}
	cJSON *cj = cJSON_AddObjectToObject(mj, "calibration");
	cJSON_AddNumberToObject(cj, "temperature", r->temperature);
	if (r->calibrated) {
		cJSON_AddStringToObject(
		    cj, "method",
		    "temperature scaling: NLL of softmax(z/T) on the validation "
		    "set, golden-section search on log T");
		cJSON_AddNumberToObject(cj, "n", r->val->n);
		cJSON_AddNumberToObject(cj, "bins", USV_CALIB_BINS);
		cJSON_AddNumberToObject(cj, "val_nll_before", r->nll_before);
		cJSON_AddNumberToObject(cj, "val_nll_after", r->nll_after);
		cJSON_AddNumberToObject(cj, "val_ece_before", r->ece_before);
		cJSON_AddNumberToObject(cj, "val_ece_after", r->ece_after);
	} else {
		cJSON_AddStringToObject(cj, "method",
		                        r->a->no_calibrate ? "none (--no-calibrate)"
		                                           : "none (no validation set)");
	}
	cJSON *tj = cJSON_AddObjectToObject(prov, "time_s");
	cJSON_AddNumberToObject(tj, "datasets", r->t_load);
	cJSON_AddNumberToObject(tj, "mean_image", r->t_mean);
	cJSON_AddNumberToObject(tj, "features", r->t_feat);
	cJSON_AddNumberToObject(tj, "train", r->t_train);
	cJSON_AddNumberToObject(tj, "train_batch", r->ttimes.batch);
	cJSON_AddNumberToObject(tj, "train_forward", r->ttimes.forward);
	cJSON_AddNumberToObject(tj, "train_backward", r->ttimes.backward);
	cJSON_AddNumberToObject(tj, "train_eval", r->ttimes.eval);
	cJSON_AddStringToObject(prov, "feature_layer", r->nh > 0 ? r->names[r->nh - 1] : r->cut);
	return prov;
}

static void print_summary(const trun *r)
{
	printf("features: %d images x %d views x %d (%.1f s); training %d iterations "
	       "batch %d (%.1f s)\n",
	       r->train->n, r->views, r->dim, r->t_feat,
	       r->to.early_stopping ? r->stop.iterations : r->to.iterations, r->to.batch,
	       r->t_train);
	printf("train loss %.4f top-1 %.4f", r->tr_loss, r->tr_acc);
	if (r->val)
		printf("; validation loss %.4f top-1 %.4f", r->va_loss, r->va_acc);
	if (r->va_auc >= 0)
		printf(" AUC %.4f", r->va_auc);
	printf("\ntime: datasets %.1f s, mean image %.1f s, features %.1f s, training %.1f s "
	       "(batches %.1f, forward %.1f, backward and SGD %.1f, validation %.1f)\n",
	       r->t_load, r->t_mean, r->t_feat, r->t_train, r->ttimes.batch, r->ttimes.forward,
	       r->ttimes.backward, r->ttimes.eval);
	printf("wrote %s (%.1f s in all)\n", r->a->out, usv_now() - r->t_start);
}

/* The output model with labels, mean and provenance, to --out. */
static int write_model(trun *r)
{
	int rc = assemble_model(r);
	if (rc)
		return rc;
	cJSON *prov = provenance(r);
	char *prov_txt = prov ? cJSON_PrintUnformatted(prov) : NULL;
	cJSON_Delete(prov);
	if (!prov_txt)
		return fail(r, -ENOMEM);
	usv_model_meta om = *usv_netdef_meta(r->bdef);
	om.n_labels = r->train->n_labels;
	om.labels = (const char *const *)r->train->labels;
	om.output_layer = "prob";
	om.output_is_prob = 1;
	om.temperature = (float)r->temperature;
	if (r->mean)
		om.mean_image = r->mean;
	om.provenance_json = prov_txt;
	snprintf(om.name, sizeof om.name, "%s",
	         r->a->name ? r->a->name : "usview transfer-learned view classifier");
	if ((rc = usv_netdef_set_meta(r->bdef, &om)) ||
	    (rc = usv_netdef_validate(r->bdef, r->err, sizeof r->err)) ||
	    (rc = usv_netdef_write(r->bdef, r->a->out, r->err, sizeof r->err))) {
		free(prov_txt);
		return fail(r, rc);
	}
	free(prov_txt);
	if (!r->a->quiet)
		print_summary(r);
	return 0;
}

int usv_cmd_train(int argc, char **argv)
{
	targs a;
	int rc = parse_args(argc, argv, &a);
	if (rc)
		return rc == 1 ? 0 : rc;
	const usv_train_preset *ps = usv_train_preset_find(a.preset);
	if (!ps) {
		fprintf(stderr, "usview " CMD ": unknown preset '%s'\n", a.preset);
		return 2;
	}
	char err[USV_ERRBUF] = "";
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usview " CMD ": %s\n", err);
		return 1;
	}
	trun *r = calloc(1, sizeof *r);
	int status = 1;
	if (!r) {
		fprintf(stderr, "usview " CMD ": %s\n", usv_strerror(-ENOMEM));
	} else {
		r->a = &a;
		r->ps = ps;
		r->t_start = usv_now();
		if (!load_datasets(r) && !split_datasets(r) && !load_backbone(r) &&
		    !extract_features(r) && !build_head(r) && !train_head(r) && !evaluate_head(r) &&
		    !calibrate_head(r) && !write_model(r))
			status = 0;
		trun_done(r);
		free(r);
	}
	usv_dcm_global_cleanup();
	return status;
}
