/*
 * NAME
 *	cmd_eval.c - usview eval: accuracy of a model on a labelled dataset
 *
 * SYNOPSIS
 *	usview eval -m MODEL --data TEST [--out DIR] [--json] [--group-sep C]
 *	            [--threads T] [--batch B] [--skip-unreadable] [--temperature T]
 *	            [--bootstrap N] [--bootstrap-seed S] [--views 1|2|10]
 *	usview eval --predictions PRED.csv [--json] [--group-sep C] [--bootstrap N]
 *	            [--bootstrap-seed S]
 *
 * DESCRIPTION
 *	Classifies every image of TEST (centre crop, the model's own
 *	preprocessing; DICOM through the daemon's decode + crop pipeline) and
 *	reports top-1 and top-2 accuracy, the confusion matrix (rows = truth,
 *	columns = prediction), per-class precision and recall, accuracy per
 *	manufacturer, the ROC AUC (Mann-Whitney form, ties 1/2; for two
 *	classes of the probability of the second label, for more the mean of
 *	the one-vs-rest AUCs) with a bootstrap interval, the same per group
 *	(patient) when images share groups, and the calibration
 *	of the top-1 probability: the expected calibration error over 15
 *	equal-width confidence bins (ece; mce, the largest gap of a bin),
 *	each bin's count, mean confidence and accuracy (the reliability
 *	diagram of usview report), and the mean negative log-likelihood of
 *	the true class (nll). The probabilities are the model's: calibrated
 *	by its meta.temperature (usview train fits it); --temperature T
 *	evaluates with T instead (1: the uncalibrated softmax).
 *	--views V averages the calibrated probabilities of V test views per
 *	image (usv_preprocess_view(): 1 the centre crop, 2 with its mirror,
 *	10 the paper's centre and corners, each mirrored), as usviewd does
 *	with model.test_views; default the model's meta.test_views. The JSON
 *	says test_views.
 *
 *	AUC and intervals (stats.h: usv_auc_stat, usv_auc_bootstrap): the
 *	interval is the 95 % percentile bootstrap of N replicates (--bootstrap
 *	N, default 2000, 0: none) drawn with seed S (--bootstrap-seed, default
 *	1), so the same data give the same interval. When some group (the
 *	dataset's third column or, with --group-sep, the file name before C;
 *	dataset.h) holds more than one image, the units resampled are the
 *	groups with all their images, since images of one patient are not
 *	independent; otherwise the images. Per group: the score of a group is
 *	the mean of its images' probabilities (per class), its label the
 *	label most of its images have (the first label in label order on a
 *	tie; groups whose images disagree are counted in groups_mixed), and
 *	auc_group is usv_auc_stat over the groups with a bootstrap over them.
 *
 *	With --out DIR it writes predictions.csv (file, truth, manufacturer,
 *	top1, p1, top2, p2, top3, p3, then p_<label> for every label, then
 *	group),
 *	metrics.json (the --json object) and features.f32 + features.json:
 *	the activations of the model's feature layer (the last hidden FC
 *	layer named in the provenance, else the layer before the output) for
 *	every image, float32 row-major [n][dim], for usview report.
 *	--skip-unreadable drops (with a warning each) the images that the
 *	pipeline excludes or cannot decode; n counts the others.
 *	--predictions recomputes the metrics from a predictions file (columns
 *	file, truth, optional manufacturer, p_<label> for every label, in
 *	label order, and optional group; without it the group comes from the
 *	file name with --group-sep, else each image is its own) without a
 *	model.
 *	--json prints the metrics object on stdout: n, top1, top2, labels,
 *	confusion, per_class {label: {precision, recall, support}},
 *	per_manufacturer {name: {n, top1}}, ece, mce, nll, calibration
 *	{bins: [{lo, hi, n, conf, acc}]}, (with a model) temperature, and
 *	the AUC keys:
 *	  auc            the AUC (two classes: of auc_positive's probability;
 *	                 more: the mean of auc_per_class over the classes
 *	                 present with positives and negatives)
 *	  auc_positive   two classes: the positive label
 *	  auc_per_class  more than two classes: {label: one-vs-rest AUC or null}
 *	  auc_ci         [lo, hi]: the 95 % bootstrap interval of auc
 *	  bootstrap      {n, seed, by: "group" or "image", valid: replicates
 *	                 with both positives and negatives of every class}
 *	and, when images share groups:
 *	  n_groups       the number of groups
 *	  groups_mixed   groups whose images do not all have one label
 *	  auc_group      the AUC over groups (mean probability, majority label)
 *	  auc_group_ci   [lo, hi]: its 95 % bootstrap interval over groups.
 *	The text output prints these on the line after the first.
 */
#include "cli.h"
#include "csv.h"
#include "opt.h"
#include "dataset.h"
#include "feature_cache.h"
#include "stats.h"
#include "train_common.h"

#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/nn.h"
#include "usv/parse.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: usview eval -m MODEL --data TEST [--out DIR] [--json] [--group-sep C]\n"
	           "                   [--threads T] [--batch B] [--skip-unreadable]\n"
	           "                   [--temperature T] [--bootstrap N] [--bootstrap-seed S]\n"
	           "                   [--views 1|2|10]\n"
	           "       usview eval --predictions PRED.csv [--json] [--group-sep C]\n"
	           "                   [--bootstrap N] [--bootstrap-seed S]\n");
}

/* How eval's AUC intervals are drawn. */
typedef struct boot_opts {
	long n;    /* replicates; 0: no interval */
	long seed; /* of SplitMix64 */
} boot_opts;

/* The [lo, hi] array. */
static void add_interval(cJSON *o, const char *key, double lo, double hi)
{
	cJSON *a = cJSON_AddArrayToObject(o, key);
	if (!a)
		return;
	cJSON_AddItemToArray(a, cJSON_CreateNumber(lo));
	cJSON_AddItemToArray(a, cJSON_CreateNumber(hi));
}

typedef struct gix {
	const char *g;
	int i;
} gix;

static int cmp_gix(const void *a, const void *b)
{
	const gix *x = a, *y = b;
	int c = strcmp(x->g, y->g);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* unit[i]: the group of image i, groups numbered in the order of their
 * first images; the number of groups, or -ENOMEM. */
static int group_units(const usv_dataset *d, int *unit)
{
	int n = d->n, ng = 0, next = 0;
	gix *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
	int *newno = malloc((size_t)(n > 0 ? n : 1) * sizeof *newno);
	if (!v || !newno) {
		free(v);
		free(newno);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		v[i].g = d->items[i].group ? d->items[i].group : d->items[i].name;
		v[i].i = i;
	}
	qsort(v, (size_t)n, sizeof *v, cmp_gix);
	for (int a = 0; a < n; ng++) {
		int b = a;
		while (b < n && !strcmp(v[b].g, v[a].g))
			unit[v[b++].i] = ng;
		newno[ng] = -1;
		a = b;
	}
	for (int i = 0; i < n; i++) {
		if (newno[unit[i]] < 0)
			newno[unit[i]] = next++;
		unit[i] = newno[unit[i]];
	}
	free(v);
	free(newno);
	return ng;
}

/* The AUC keys (see the header) of prob[n][nc] into o; 0 or -ENOMEM. */
static int add_auc(cJSON *o, const usv_dataset *d, const double *prob, int nc, const boot_opts *bo)
{
	int n = d->n, rc = -ENOMEM;
	size_t nn = (size_t)(n > 0 ? n : 1);
	int *truth = malloc(nn * sizeof *truth), *unit = malloc(nn * sizeof *unit);
	double *pc = malloc((size_t)nc * sizeof *pc), *gp = NULL;
	int *gl = NULL, *votes = NULL, *gcnt = NULL;
	double auc, lo, hi;
	int valid = 0;
	if (!truth || !unit || !pc)
		goto out;
	for (int i = 0; i < n; i++)
		truth[i] = d->items[i].label;
	if (usv_auc_stat(prob, truth, (size_t)n, nc, pc, &auc)) {
		rc = 0; /* no class with positives and negatives: no AUC */
		goto out;
	}
	cJSON_AddNumberToObject(o, "auc", auc);
	if (nc == 2) {
		cJSON_AddStringToObject(o, "auc_positive", d->labels[1]);
	} else {
		cJSON *pj = cJSON_AddObjectToObject(o, "auc_per_class");
		for (int k = 0; pj && k < nc; k++) {
			if (isnan(pc[k]))
				cJSON_AddNullToObject(pj, d->labels[k]);
			else
				cJSON_AddNumberToObject(pj, d->labels[k], pc[k]);
		}
	}
	int ng = group_units(d, unit);
	if (ng < 0)
		goto out;
	int grouped = ng < n;
	if (bo->n > 0 &&
	    !usv_auc_bootstrap(prob, truth, grouped ? unit : NULL, (size_t)n, nc, ng, (int)bo->n,
	                       (unsigned long long)bo->seed, 0.95, &lo, &hi, &valid)) {
		add_interval(o, "auc_ci", lo, hi);
		cJSON *bj = cJSON_AddObjectToObject(o, "bootstrap");
		if (bj) {
			cJSON_AddNumberToObject(bj, "n", (double)bo->n);
			cJSON_AddNumberToObject(bj, "seed", (double)bo->seed);
			cJSON_AddStringToObject(bj, "by", grouped ? "group" : "image");
			cJSON_AddNumberToObject(bj, "valid", valid);
		}
	}
	if (!grouped) {
		rc = 0;
		goto out;
	}
	/* per group: mean probabilities (summed in image order), majority label */
	gp = calloc((size_t)ng * nc, sizeof *gp);
	gl = malloc((size_t)ng * sizeof *gl);
	votes = calloc((size_t)ng * nc, sizeof *votes);
	gcnt = calloc((size_t)ng, sizeof *gcnt);
	if (!gp || !gl || !votes || !gcnt)
		goto out;
	for (int i = 0; i < n; i++) {
		int g = unit[i];
		for (int k = 0; k < nc; k++)
			gp[(size_t)g * nc + k] += prob[(size_t)i * nc + k];
		votes[(size_t)g * nc + truth[i]]++;
		gcnt[g]++;
	}
	int mixed = 0;
	for (int g = 0; g < ng; g++) {
		int best = 0;
		for (int k = 0; k < nc; k++) {
			gp[(size_t)g * nc + k] /= gcnt[g];
			if (votes[(size_t)g * nc + k] > votes[(size_t)g * nc + best])
				best = k;
		}
		gl[g] = best;
		mixed += votes[(size_t)g * nc + best] != gcnt[g];
	}
	cJSON_AddNumberToObject(o, "n_groups", ng);
	cJSON_AddNumberToObject(o, "groups_mixed", mixed);
	double gauc;
	if (!usv_auc_stat(gp, gl, (size_t)ng, nc, NULL, &gauc)) {
		cJSON_AddNumberToObject(o, "auc_group", gauc);
		if (bo->n > 0 &&
		    !usv_auc_bootstrap(gp, gl, NULL, (size_t)ng, nc, ng, (int)bo->n,
		                       (unsigned long long)bo->seed, 0.95, &lo, &hi, NULL))
			add_interval(o, "auc_group_ci", lo, hi);
	}
	rc = 0;
out:
	free(truth);
	free(unit);
	free(pc);
	free(gp);
	free(gl);
	free(votes);
	free(gcnt);
	return rc;
}

/* ece, mce, nll and calibration.bins of d's predictions into o; 0 or
 * -ENOMEM. */
static int add_calibration(cJSON *o, const usv_dataset *d, const float *prob, int nc)
{
	struct usv_calib_bin bins[USV_CALIB_BINS];
	double ece, mce, nll;
	int *truth = malloc((size_t)(d->n > 0 ? d->n : 1) * sizeof(int));
	if (!truth)
		return -ENOMEM;
	for (int i = 0; i < d->n; i++)
		truth[i] = d->items[i].label;
	int rc = usv_calibration(prob, truth, (size_t)d->n, nc, USV_CALIB_BINS, bins, &ece, &mce);
	if (!rc)
		rc = usv_nll(prob, truth, (size_t)d->n, nc, &nll);
	free(truth);
	if (rc)
		return d->n < 1 ? 0 : rc; /* nothing to bin */
	cJSON_AddNumberToObject(o, "ece", ece);
	cJSON_AddNumberToObject(o, "mce", mce);
	cJSON_AddNumberToObject(o, "nll", nll);
	cJSON *cal = cJSON_AddObjectToObject(o, "calibration");
	cJSON *ba = cal ? cJSON_AddArrayToObject(cal, "bins") : NULL;
	if (!ba)
		return -ENOMEM;
	for (int b = 0; b < USV_CALIB_BINS; b++) {
		cJSON *e = cJSON_CreateObject();
		if (!e)
			return -ENOMEM;
		cJSON_AddNumberToObject(e, "lo", bins[b].lo);
		cJSON_AddNumberToObject(e, "hi", bins[b].hi);
		cJSON_AddNumberToObject(e, "n", (double)bins[b].n);
		cJSON_AddNumberToObject(e, "conf", bins[b].conf);
		cJSON_AddNumberToObject(e, "acc", bins[b].acc);
		cJSON_AddItemToArray(ba, e);
	}
	return 0;
}

/* Metrics of n predictions with probabilities prob[n][nc]; the AUCs from
 * dprob[n][nc] (the same in double, as read from a predictions file), or
 * NULL: from prob. */
static cJSON *metrics(const usv_dataset *d, const float *prob, int nc, const double *dprob,
                      const boot_opts *bo)
{
	int n = d->n;
	long *conf = calloc((size_t)nc * nc, sizeof(long));
	int *idx = malloc((size_t)nc * sizeof(int));
	if (!conf || !idx) {
		free(conf);
		free(idx);
		return NULL;
	}
	long top1 = 0, top2 = 0;
	for (int i = 0; i < n; i++) {
		const float *p = prob + (size_t)i * nc;
		usv_topk(p, nc, nc < 2 ? nc : 2, idx);
		int t = d->items[i].label;
		conf[(size_t)t * nc + idx[0]]++;
		top1 += idx[0] == t;
		top2 += idx[0] == t || (nc > 1 && idx[1] == t);
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "n", n);
	cJSON_AddNumberToObject(o, "top1", n ? (double)top1 / n : 0);
	cJSON_AddNumberToObject(o, "top2", n ? (double)top2 / n : 0);
	cJSON *lb = cJSON_AddArrayToObject(o, "labels");
	for (int k = 0; k < nc; k++)
		cJSON_AddItemToArray(lb, cJSON_CreateString(d->labels[k]));
	cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
	for (int r = 0; r < nc; r++) {
		cJSON *row = cJSON_CreateArray();
		for (int c = 0; c < nc; c++)
			cJSON_AddItemToArray(row,
			                     cJSON_CreateNumber((double)conf[(size_t)r * nc + c]));
		cJSON_AddItemToArray(cm, row);
	}
	cJSON *pc = cJSON_AddObjectToObject(o, "per_class");
	for (int k = 0; k < nc; k++) {
		long tp = conf[(size_t)k * nc + k], rs = 0, cs = 0;
		for (int j = 0; j < nc; j++) {
			rs += conf[(size_t)k * nc + j];
			cs += conf[(size_t)j * nc + k];
		}
		cJSON *e = cJSON_CreateObject();
		if (cs)
			cJSON_AddNumberToObject(e, "precision", (double)tp / cs);
		else
			cJSON_AddNullToObject(e, "precision");
		if (rs)
			cJSON_AddNumberToObject(e, "recall", (double)tp / rs);
		else
			cJSON_AddNullToObject(e, "recall");
		cJSON_AddNumberToObject(e, "support", (double)rs);
		cJSON_AddItemToObject(pc, d->labels[k], e);
	}
	cJSON *pm = cJSON_AddObjectToObject(o, "per_manufacturer");
	for (int i = 0; i < n; i++) {
		const char *m = d->items[i].manufacturer[0] ? d->items[i].manufacturer : "unknown";
		if (cJSON_GetObjectItemCaseSensitive(pm, m))
			continue;
		long mn = 0, mc = 0;
		for (int j = 0; j < n; j++) {
			const char *m2 =
			    d->items[j].manufacturer[0] ? d->items[j].manufacturer : "unknown";
			if (strcmp(m, m2))
				continue;
			mn++;
			const float *p = prob + (size_t)j * nc;
			usv_topk(p, nc, 1, idx);
			mc += idx[0] == d->items[j].label;
		}
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "n", (double)mn);
		cJSON_AddNumberToObject(e, "top1", (double)mc / mn);
		cJSON_AddItemToObject(pm, m, e);
	}
	if (add_calibration(o, d, prob, nc)) {
		cJSON_Delete(o);
		o = NULL;
		goto out;
	}
	double *dp = NULL;
	if (!dprob) {
		dp = malloc((size_t)(n > 0 ? n : 1) * nc * sizeof *dp);
		if (dp)
			for (size_t i = 0; i < (size_t)n * nc; i++)
				dp[i] = prob[i];
		dprob = dp;
	}
	if (!dprob || add_auc(o, d, dprob, nc, bo)) {
		cJSON_Delete(o);
		o = NULL;
	}
	free(dp);
out:
	free(conf);
	free(idx);
	return o;
}

/* The layer whose activations usview report maps with t-SNE. */
static void feature_layer(const usv_model *m, char *out, size_t len)
{
	const usv_model_meta *mm = usv_model_get_meta(m);
	out[0] = 0;
	if (mm->provenance_json) {
		cJSON *p = cJSON_Parse(mm->provenance_json);
		const cJSON *f = p ? cJSON_GetObjectItemCaseSensitive(p, "feature_layer") : NULL;
		if (cJSON_IsString(f))
			snprintf(out, len, "%s", f->valuestring);
		cJSON_Delete(p);
	}
	int chw[3];
	if (out[0] && !usv_model_layer_shape(m, out, chw))
		return;
	/* else: the last FC layer's input, i.e. the layer two before the output */
	int n = usv_model_n_layers(m);
	int last_fc = -1;
	for (int i = 0; i < n; i++)
		if (!strcmp(usv_model_layer_name(m, i), mm->output_layer))
			last_fc = i;
	int k = last_fc >= 2 ? last_fc - 2 : (n > 1 ? n - 2 : 0);
	snprintf(out, len, "%s", usv_model_layer_name(m, k));
}

/* The AUC keys on one line. */
static void print_auc_line(const cJSON *met)
{
	const cJSON *au = cJSON_GetObjectItem(met, "auc"), *ci = cJSON_GetObjectItem(met, "auc_ci"),
	            *bs = cJSON_GetObjectItem(met, "bootstrap"),
	            *pc = cJSON_GetObjectItem(met, "auc_per_class"),
	            *ga = cJSON_GetObjectItem(met, "auc_group"),
	            *gci = cJSON_GetObjectItem(met, "auc_group_ci"),
	            *ng = cJSON_GetObjectItem(met, "n_groups"),
	            *gm = cJSON_GetObjectItem(met, "groups_mixed");
	printf("AUC %.4f", au->valuedouble);
	if (cJSON_GetArraySize(ci) == 2)
		printf(" (95%% CI %.4f-%.4f, %d bootstrap replicates by %s)",
		       cJSON_GetArrayItem(ci, 0)->valuedouble,
		       cJSON_GetArrayItem(ci, 1)->valuedouble,
		       (int)cJSON_GetObjectItem(bs, "n")->valuedouble,
		       cJSON_GetObjectItem(bs, "by")->valuestring);
	if (ga) {
		printf("; per group (%d groups, %d mixed) AUC %.4f", (int)ng->valuedouble,
		       (int)gm->valuedouble, ga->valuedouble);
		if (cJSON_GetArraySize(gci) == 2)
			printf(" (95%% CI %.4f-%.4f)", cJSON_GetArrayItem(gci, 0)->valuedouble,
			       cJSON_GetArrayItem(gci, 1)->valuedouble);
	}
	if (pc) {
		const cJSON *e;
		printf("; one-vs-rest:");
		cJSON_ArrayForEach(e, pc)
		{
			if (cJSON_IsNumber(e))
				printf(" %s %.4f", e->string, e->valuedouble);
			else
				printf(" %s -", e->string);
		}
	}
	printf("\n");
}

static void print_metrics(const cJSON *met, const char *what, int n, int nc,
                          const char *const *labels, int json)
{
	if (json) {
		char *txt = cJSON_PrintUnformatted(met);
		if (txt)
			printf("%s\n", txt);
		free(txt);
		return;
	}
	const cJSON *t1 = cJSON_GetObjectItem(met, "top1"), *t2 = cJSON_GetObjectItem(met, "top2"),
	            *au = cJSON_GetObjectItem(met, "auc");
	printf("%s: %d images, top-1 %.4f, top-2 %.4f", what, n, t1->valuedouble, t2->valuedouble);
	if (au)
		printf(", AUC %.4f", au->valuedouble);
	printf("\n");
	if (au)
		print_auc_line(met);
	const cJSON *ece = cJSON_GetObjectItem(met, "ece"), *nll = cJSON_GetObjectItem(met, "nll"),
	            *tj = cJSON_GetObjectItem(met, "temperature");
	if (ece && nll) {
		printf("calibration: ECE %.4f (%d bins), NLL %.4f", ece->valuedouble,
		       USV_CALIB_BINS, nll->valuedouble);
		if (tj)
			printf(", temperature %.4f", tj->valuedouble);
		printf("\nreliability (confidence bin: n, mean confidence, accuracy):\n");
		const cJSON *bins =
		    cJSON_GetObjectItem(cJSON_GetObjectItem(met, "calibration"), "bins");
		const cJSON *b;
		cJSON_ArrayForEach(b, bins)
		{
			double bn = cJSON_GetObjectItem(b, "n")->valuedouble;
			if (bn > 0)
				printf("  (%.3f, %.3f]: %5.0f  %.4f  %.4f\n",
				       cJSON_GetObjectItem(b, "lo")->valuedouble,
				       cJSON_GetObjectItem(b, "hi")->valuedouble, bn,
				       cJSON_GetObjectItem(b, "conf")->valuedouble,
				       cJSON_GetObjectItem(b, "acc")->valuedouble);
		}
	}
	const cJSON *cm = cJSON_GetObjectItem(met, "confusion");
	printf("confusion (rows = truth, columns = prediction):\n");
	for (int r = 0; r < nc; r++) {
		printf("  %-20s", labels[r]);
		const cJSON *row = cJSON_GetArrayItem(cm, r);
		for (int c = 0; c < nc; c++)
			printf(" %5d", (int)cJSON_GetArrayItem(row, c)->valuedouble);
		printf("\n");
	}
}

/* usview eval --predictions: metrics of an existing predictions file. */
static int eval_predictions(const char *path, int json, char gsep, const boot_opts *bo)
{
	char err[USV_ERRBUF];
	usv_csv *c = NULL;
	int status = 1;
	usv_dataset d = {0};
	float *prob = NULL;
	double *dprob = NULL;
	char **groups = NULL;
	cJSON *met = NULL;
	if (usv_csv_read(path, &c, err, sizeof err)) {
		fprintf(stderr, "usview eval: %s\n", err);
		return 1;
	}
	int cf = usv_csv_col(c, "file"), ct = usv_csv_col(c, "truth"),
	    cm = usv_csv_col(c, "manufacturer"), cg = usv_csv_col(c, "group");
	int pc[USV_CSV_MAX_FIELDS], nc = 0;
	for (int i = 0; c->n_rows > 0 && i < c->rows[0].n; i++)
		if (!strncmp(c->rows[0].f[i], "p_", 2))
			pc[nc++] = i;
	if (cf < 0 || ct < 0 || nc < 2 || c->n_rows < 2) {
		fprintf(stderr,
		        "usview eval: %s: needs columns file, truth and p_<label> for two "
		        "or more labels, and rows\n",
		        path);
		goto out;
	}
	d.n_labels = nc;
	d.labels = calloc((size_t)nc, sizeof(char *));
	d.items = calloc((size_t)c->n_rows, sizeof *d.items);
	prob = malloc((size_t)c->n_rows * nc * sizeof(float));
	dprob = malloc((size_t)c->n_rows * nc * sizeof(double));
	groups = calloc((size_t)c->n_rows, sizeof(char *));
	if (!d.labels || !d.items || !prob || !dprob || !groups)
		goto out;
	for (int k = 0; k < nc; k++)
		d.labels[k] = c->rows[0].f[pc[k]] + 2;
	for (int i = 1; i < c->n_rows; i++) {
		usv_csv_row *r = &c->rows[i];
		usv_ds_item *it = &d.items[d.n];
		if (r->n != c->rows[0].n) {
			fprintf(stderr, "usview eval: %s: row %d has %d fields, not %d\n", path,
			        i + 1, r->n, c->rows[0].n);
			goto out;
		}
		it->name = r->f[cf];
		it->manufacturer = cm >= 0 ? r->f[cm] : (char *)"";
		if (cg >= 0) {
			it->group = r->f[cg];
		} else {
			/* as dataset.h: the base name before gsep, else the file */
			const char *base = strrchr(it->name, '/');
			base = base ? base + 1 : it->name;
			const char *sep = gsep ? strchr(base, gsep) : NULL;
			if (sep) {
				groups[d.n] = strndup(base, (size_t)(sep - base));
				if (!groups[d.n])
					goto out;
				it->group = groups[d.n];
			} else {
				it->group = it->name;
			}
		}
		it->label = -1;
		for (int k = 0; k < nc; k++)
			if (!strcmp(d.labels[k], r->f[ct]))
				it->label = k;
		if (it->label < 0) {
			fprintf(stderr, "usview eval: %s: row %d: truth '%s' has no p_ column\n",
			        path, i + 1, r->f[ct]);
			goto out;
		}
		for (int k = 0; k < nc; k++) {
			double v;
			if (usv_parse_float(r->f[pc[k]], 0, 1, &v)) {
				fprintf(stderr, "usview eval: %s: row %d: bad probability '%s'\n",
				        path, i + 1, r->f[pc[k]]);
				goto out;
			}
			prob[(size_t)d.n * nc + k] = (float)v;
			dprob[(size_t)d.n * nc + k] = v;
		}
		d.n++;
	}
	met = metrics(&d, prob, nc, dprob, bo);
	if (!met)
		goto out;
	print_metrics(met, path, d.n, nc, (const char *const *)d.labels, json);
	status = 0;
out:
	cJSON_Delete(met);
	free(prob);
	free(dprob);
	for (int i = 0; groups && c && i < c->n_rows; i++)
		free(groups[i]);
	free(groups);
	free(d.labels);
	free(d.items);
	usv_csv_free(c);
	return status;
}

/* The options of one evaluation. */
typedef struct eval_opts {
	const char *model, *data, *outdir, *preds;
	int json, skip_bad;
	long threads, batch;
	char gsep;
	double temperature; /* 0: the model's */
	int views;          /* test views averaged; 0: the model's */
	boot_opts boot;
} eval_opts;

/* One evaluation of a model on a dataset. */
typedef struct eval_state {
	usv_model *m;
	const usv_model_meta *mm; /* of m */
	usv_dataset *d;
	usv_session *s;
	int nc;                    /* classes (labels of the model) */
	int batch;                 /* network inputs per forward (images x views) */
	int views;                 /* test views averaged per image */
	size_t in_sz;              /* floats of one preprocessed image */
	char flayer[USV_NAME_MAX]; /* feature layer */
	int fdim;                  /* its values per image */
	int want_feat;             /* keep features (for --out) */
	float *prob, *feat, *in;   /* [n][nc], [n][fdim], [batch][in_sz] */
} eval_state;

/* Phase 1: the options into *o; -1 to go on, otherwise the exit status. */
static int eval_parse_args(int argc, char **argv, eval_opts *o)
{
	enum {
		OPT_DATA = 256,
		OPT_PREDICTIONS,
		OPT_OUT,
		OPT_JSON,
		OPT_GROUP_SEP,
		OPT_THREADS,
		OPT_BATCH,
		OPT_SKIP_UNREADABLE,
		OPT_TEMPERATURE,
		OPT_BOOTSTRAP,
		OPT_BOOTSTRAP_SEED,
		OPT_VIEWS
	};
	static const struct option opts[] = {
	    {"model", required_argument, NULL, 'm'},
	    {"data", required_argument, NULL, OPT_DATA},
	    {"predictions", required_argument, NULL, OPT_PREDICTIONS},
	    {"out", required_argument, NULL, OPT_OUT},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"group-sep", required_argument, NULL, OPT_GROUP_SEP},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"batch", required_argument, NULL, OPT_BATCH},
	    {"skip-unreadable", no_argument, NULL, OPT_SKIP_UNREADABLE},
	    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
	    {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
	    {"bootstrap-seed", required_argument, NULL, OPT_BOOTSTRAP_SEED},
	    {"views", required_argument, NULL, OPT_VIEWS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	int c, bad = 0;
	*o = (eval_opts){.threads = 2, .batch = 16, .boot = {.n = 2000, .seed = 1}};
	optind = 1;
	while (!bad && (c = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->model = optarg;
			break;
		case OPT_DATA:
			o->data = optarg;
			break;
		case OPT_PREDICTIONS:
			o->preds = optarg;
			break;
		case OPT_OUT:
			o->outdir = optarg;
			break;
		case OPT_JSON:
			o->json = 1;
			break;
		case OPT_GROUP_SEP:
			if (strlen(optarg) != 1) {
				fprintf(stderr,
				        "usview eval: --group-sep: '%s' is not one character\n",
				        optarg);
				return 2;
			}
			o->gsep = optarg[0];
			break;
		case OPT_THREADS:
			bad = usv_opt_long("eval", "--threads", optarg, 1, 256, &o->threads);
			break;
		case OPT_BATCH:
			bad = usv_opt_long("eval", "--batch", optarg, 1, 1024, &o->batch);
			break;
		case OPT_SKIP_UNREADABLE:
			o->skip_bad = 1;
			break;
		case OPT_TEMPERATURE:
			bad = usv_opt_double("eval", "--temperature", optarg, USV_TEMPERATURE_MIN,
			                     USV_TEMPERATURE_MAX, &o->temperature);
			break;
		case OPT_BOOTSTRAP:
			bad = usv_opt_long("eval", "--bootstrap", optarg, 0, 1000000, &o->boot.n);
			break;
		case OPT_VIEWS: {
			long v = 0;
			bad = usv_opt_long("eval", "--views", optarg, 1, USV_MAX_VIEWS, &v);
			if (!bad && !usv_views_valid((int)v)) {
				fprintf(stderr, "usview eval: --views: %ld is not 1, 2 or 10\n", v);
				bad = 1;
			}
			o->views = (int)v;
			break;
		}
		case OPT_BOOTSTRAP_SEED:
			bad = usv_opt_long("eval", "--bootstrap-seed", optarg, 0, 2147483647L,
			                   &o->boot.seed);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("eval", c, argv);
		}
	}
	if (bad)
		return 2;
	if (optind != argc) {
		fprintf(stderr, "usview eval: %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	if (!(o->preds && !o->model && !o->data) && (!o->model || !o->data)) {
		fprintf(stderr, "usview eval: %s: required\n", !o->model ? "--model" : "--data");
		return 2;
	}
	return -1;
}

static void eval_state_done(eval_state *e)
{
	free(e->prob);
	free(e->feat);
	free(e->in);
	usv_session_free(e->s);
	usv_model_free(e->m);
	usv_dataset_free(e->d);
}

/* Phase 2: the model and the dataset (less the unreadable images with
 * --skip-unreadable); 0 or -1 after a message. */
static int eval_load(const eval_opts *o, eval_state *e)
{
	char err[USV_ERRBUF] = "";
	int rc;
	usv_model_opts mo = usv_model_opts_default();
	mo.temperature = (float)o->temperature;
	if (usv_model_load_ex(o->model, &mo, &e->m, err, sizeof err)) {
		fprintf(stderr, "usview eval: %s\n", err);
		return -1;
	}
	e->mm = usv_model_get_meta(e->m);
	if (e->mm->n_labels < 1) {
		fprintf(stderr, "usview eval: %s: the model has no labels\n", o->model);
		return -1;
	}
	e->nc = e->mm->n_labels;
	usv_ds_opts dso = {.group_sep = o->gsep, .labels = e->mm->labels, .n_labels = e->nc};
	if (usv_dataset_load(o->data, &dso, &e->d, err, sizeof err)) {
		fprintf(stderr, "usview eval: %s\n", err);
		return -1;
	}
	if (o->skip_bad) {
		int dropped = 0;
		if ((rc = usv_dataset_drop_unloadable(e->d, e->mm->resize_w, stderr, &dropped))) {
			fprintf(stderr, "usview eval: %s\n", usv_strerror(rc));
			return -1;
		}
		if (dropped)
			fprintf(stderr, "usview eval: skipped %d unreadable or excluded images\n",
			        dropped);
		if (e->d->n < 1) {
			fprintf(stderr, "usview eval: no usable images left\n");
			return -1;
		}
	}
	return 0;
}

/* Phase 3: the feature layer, the batch size (capped when every layer's
 * output is kept), the session and the buffers; 0 or -1. */
static int eval_prepare(const eval_opts *o, eval_state *e)
{
	const usv_model_meta *mm = e->mm;
	long batch = o->batch;
	int rc;
	feature_layer(e->m, e->flayer, sizeof e->flayer);
	int fchw[3] = {0, 0, 0};
	usv_model_layer_shape(e->m, e->flayer, fchw);
	e->fdim = fchw[0] * fchw[1] * fchw[2];
	e->want_feat = o->outdir && e->fdim > 0 && e->fdim <= 65536;
	/* keep_all holds every layer's output of the batch (VGG16: about
	 * 0.15 GB per image): keep that under 1 GB */
	if (e->want_feat) {
		double per = 0;
		for (int i = 0; i < usv_model_n_layers(e->m); i++) {
			int c3[3];
			if (!usv_model_layer_shape(e->m, usv_model_layer_name(e->m, i), c3))
				per += 4.0 * c3[0] * c3[1] * c3[2];
		}
		long fit = per > 0 ? (long)(1e9 / per) : batch;
		if (fit < 1)
			fit = 1;
		if (batch > fit)
			batch = fit;
	}
	/* each image is its views, one after the other, in one forward */
	e->views = o->views ? o->views : usv_views_valid(mm->test_views) ? mm->test_views : 1;
	if (batch < e->views)
		batch = e->views;
	batch -= batch % e->views;
	e->batch = (int)batch;
	usv_session_opts so = {
	    .max_batch = e->batch, .threads = (int)o->threads, .keep_all = e->want_feat};
	if ((rc = usv_session_new(e->m, &so, &e->s))) {
		fprintf(stderr, "usview eval: %s: cannot create a session: %s\n", o->model,
		        usv_strerror(rc));
		return -1;
	}
	e->in_sz = (size_t)mm->input_c * mm->input_h * mm->input_w;
	e->prob = malloc((size_t)e->d->n * e->nc * sizeof(float));
	e->in = malloc((size_t)e->batch * e->in_sz * sizeof(float));
	if (e->want_feat)
		e->feat = malloc((size_t)e->d->n * e->fdim * sizeof(float));
	if (!e->prob || !e->in || (e->want_feat && !e->feat))
		return -1;
	return 0;
}

/* Phase 4: every image through the network, batch by batch, into
 * e->prob (and e->feat); 0 or -1 after a message. */
static int eval_classify(eval_state *e)
{
	const usv_model_meta *mm = e->mm;
	usv_dataset *d = e->d;
	int nc = e->nc, rc;
	char err[USV_ERRBUF] = "";
	double t0 = usv_now();
	int V = e->views, bimg = e->batch / V;
	for (int i0 = 0; i0 < d->n; i0 += bimg) {
		int nb = d->n - i0 < bimg ? d->n - i0 : bimg;
		for (int k = 0; k < nb; k++) {
			usv_image *im = NULL;
			if (usv_ds_load_image(d->items[i0 + k].path, mm->resize_w, &im, err,
			                      sizeof err)) {
				fprintf(stderr, "usview eval: %s\n", err);
				return -1;
			}
			rc = 0;
			for (int v = 0; v < V && !rc; v++) {
				int ox, oy, flip;
				usv_preprocess_view(mm, v, &ox, &oy, &flip);
				rc = usv_preprocess(mm, im->px, ox, oy, flip,
				                    e->in + ((size_t)k * V + v) * e->in_sz);
			}
			usv_image_free(im);
			if (rc) {
				fprintf(stderr, "usview eval: %s: preprocessing failed\n",
				        d->items[i0 + k].path);
				return -1;
			}
		}
		const float *outp;
		int oc[3];
		if ((rc = usv_session_run(e->s, e->in, nb * V, &outp, oc))) {
			fprintf(stderr, "usview eval: forward failed: %s\n", usv_strerror(rc));
			return -1;
		}
		int per = oc[0] * oc[1] * oc[2];
		float one[USV_MAX_LABELS];
		for (int k = 0; k < nb; k++) {
			float *p = e->prob + (size_t)(i0 + k) * nc;
			memset(p, 0, (size_t)nc * sizeof(float));
			for (int v = 0; v < V; v++) {
				memcpy(one, outp + ((size_t)k * V + v) * per,
				       (size_t)nc * sizeof(float));
				if (!mm->output_is_prob)
					usv_softmax_t(one, nc, usv_model_temperature(e->m));
				for (int c = 0; c < nc; c++)
					p[c] += one[c] / (float)V;
			}
		}
		if (e->want_feat) {
			int c3[3];
			const float *fb = usv_session_blob(e->s, e->flayer, c3);
			if (fb) {
				/* an image's features: the mean of its views' */
				for (int k = 0; k < nb; k++) {
					float *f = e->feat + (size_t)(i0 + k) * e->fdim;
					memset(f, 0, (size_t)e->fdim * sizeof(float));
					for (int v = 0; v < V; v++)
						for (int c = 0; c < e->fdim; c++)
							f[c] +=
							    fb[((size_t)k * V + v) * e->fdim + c] /
							    (float)V;
				}
			} else {
				e->want_feat = 0;
			}
		}
		usv_progress_line("eval", i0 + nb, d->n, t0, "");
	}
	return 0;
}

/* DIR/predictions.csv; 0 or -1 after a message. */
static int eval_write_predictions(const char *outdir, const eval_state *e)
{
	const usv_model_meta *mm = e->mm;
	const usv_dataset *d = e->d;
	int nc = e->nc;
	char p[4096];
	snprintf(p, sizeof p, "%s/predictions.csv", outdir);
	FILE *pf = fopen(p, "w");
	if (!pf) {
		fprintf(stderr, "usview eval: %s: %s\n", p, strerror(errno));
		return -1;
	}
	fprintf(pf, "file,truth,manufacturer,top1,p1,top2,p2,top3,p3");
	for (int k = 0; k < nc; k++) {
		fputs(",", pf);
		char col[USV_LABEL_MAX + 4];
		snprintf(col, sizeof col, "p_%s", mm->labels[k]);
		usv_csv_put(pf, col);
	}
	fputs(",group\n", pf);
	int idx[3];
	for (int i = 0; i < d->n; i++) {
		const float *pr = e->prob + (size_t)i * nc;
		int k3 = nc < 3 ? nc : 3;
		usv_topk(pr, nc, k3, idx);
		usv_csv_put(pf, d->items[i].name);
		fputs(",", pf);
		usv_csv_put(pf, mm->labels[d->items[i].label]);
		fputs(",", pf);
		usv_csv_put(pf, d->items[i].manufacturer);
		for (int k = 0; k < 3; k++) {
			fputs(",", pf);
			if (k < k3) {
				usv_csv_put(pf, mm->labels[idx[k]]);
				fprintf(pf, ",%.6f", pr[idx[k]]);
			} else {
				fputs(",", pf);
			}
		}
		for (int k = 0; k < nc; k++)
			fprintf(pf, ",%.6f", pr[k]);
		fputs(",", pf);
		usv_csv_put(pf, d->items[i].group ? d->items[i].group : d->items[i].name);
		fputs("\n", pf);
	}
	if (fclose(pf)) {
		fprintf(stderr, "usview eval: %s: write error\n", p);
		return -1;
	}
	return 0;
}

/* DIR/metrics.json; 0 or -1 after a message. */
static int eval_write_metrics(const char *outdir, const cJSON *met)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/metrics.json", outdir);
	char *txt = cJSON_Print(met);
	FILE *f = txt ? fopen(p, "w") : NULL;
	int bad = !f || fputs(txt, f) < 0;
	if (f && fclose(f))
		bad = 1;
	free(txt);
	if (bad) {
		fprintf(stderr, "usview eval: %s: cannot write\n", p);
		return -1;
	}
	return 0;
}

/* DIR/features.f32 and DIR/features.json; 0 or -1 after a message. */
static int eval_write_features(const char *outdir, const eval_state *e)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/features.f32", outdir);
	FILE *f = fopen(p, "wb");
	size_t cnt = (size_t)e->d->n * e->fdim;
	int bad = !f || fwrite(e->feat, sizeof(float), cnt, f) != cnt;
	if (f && fclose(f))
		bad = 1;
	if (bad) {
		fprintf(stderr, "usview eval: %s: cannot write\n", p);
		return -1;
	}
	snprintf(p, sizeof p, "%s/features.json", outdir);
	f = fopen(p, "w");
	bad = !f || fprintf(f, "{\"layer\":\"%s\",\"n\":%d,\"dim\":%d}\n", e->flayer, e->d->n,
	                    e->fdim) < 0;
	if (f && fclose(f))
		bad = 1;
	if (bad) {
		fprintf(stderr, "usview eval: %s: cannot write\n", p);
		return -1;
	}
	return 0;
}

/* Phase 5: what --out DIR holds; 0 or -1 after a message. */
static int eval_write_outputs(const char *outdir, const eval_state *e, const cJSON *met)
{
	mkdir(outdir, 0755);
	if (eval_write_predictions(outdir, e) || eval_write_metrics(outdir, met))
		return -1;
	if (e->want_feat && eval_write_features(outdir, e))
		return -1;
	return 0;
}

int usv_cmd_eval(int argc, char **argv)
{
	eval_opts o;
	int rc = eval_parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (o.preds && !o.model && !o.data)
		return eval_predictions(o.preds, o.json, o.gsep, &o.boot);
	char err[USV_ERRBUF] = "";
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usview eval: %s\n", err);
		return 1;
	}
	int status = 1;
	eval_state e = {0};
	cJSON *met = NULL;
	if (eval_load(&o, &e) || eval_prepare(&o, &e) || eval_classify(&e))
		goto out;
	met = metrics(e.d, e.prob, e.nc, NULL, &o.boot);
	if (!met)
		goto out;
	cJSON_AddNumberToObject(met, "temperature", usv_model_temperature(e.m));
	cJSON_AddNumberToObject(met, "test_views", e.views);
	if (o.outdir && eval_write_outputs(o.outdir, &e, met))
		goto out;
	print_metrics(met, o.data, e.d->n, e.nc, e.mm->labels, o.json);
	status = 0;
out:
	cJSON_Delete(met);
	eval_state_done(&e);
	usv_dcm_global_cleanup();
	return status;
}
