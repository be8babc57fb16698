/*
 * NAME
 *	cmd_report.c - usview report: one self-contained HTML evaluation report
 *
 * SYNOPSIS
 *	usview report -m MODEL --eval DIR [--data TEST] [-o FILE.html]
 *	              [--group-sep C] [--max-errors N] [--seed S] [--perplexity P]
 *
 * DESCRIPTION
 *	Reads the model's provenance (preset, dataset table, learning curve)
 *	and the output of `usview eval --out DIR` (metrics.json,
 *	predictions.csv, features.f32) and writes one HTML file with inline
 *	SVG and no external reference: the dataset table (counts and shares
 *	per split, as the paper's Table 2), the metrics, the confusion matrix
 *	as a heat map, the reliability diagram of the top-1 probability
 *	(accuracy against mean confidence per confidence bin, bar width
 *	growing with the bin's count, the diagonal of perfect calibration,
 *	the ECE and the model's temperature in the caption), the learning
 *	curves, a t-SNE map of the feature layer
 *	(PCA to 50 dimensions, then exact t-SNE with perplexity 30, seeded;
 *	at most 2000 points, a seeded subsample beyond) and the misclassified
 *	images (base64 PNG thumbnails, found through --data) with their top-3
 *	probabilities as bars.
 */
#include "cli.h"
#include "usv/html.h"
#include "csv.h"
#include "dataset.h"
#include "opt.h"
#include "tsne.h"

#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/image.h"
#include "usv/nn.h"
#include "usv/parse.h"
#include "usv/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TSNE_MAX_POINTS 2000

static const char *const palette[] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
    "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
};
#define NPAL ((int)(sizeof palette / sizeof palette[0]))

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: usview report -m MODEL --eval DIR [--data TEST] [-o FILE.html]\n"
	    "                     [--group-sep C] [--max-errors N] [--seed S] [--perplexity P]\n");
}

static char *read_file(const char *path, size_t *len, size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap + 1);
	while (b) {
		if (n == cap) {
			if (cap >= max) {
				free(b);
				b = NULL;
				break;
			}
			cap *= 2;
			char *nb = realloc(b, cap + 1);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (!r)
			break;
	}
	fclose(f);
	if (b) {
		b[n] = 0;
		if (len)
			*len = n;
	}
	return b;
}

static void base64(FILE *f, const unsigned char *p, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		fputc(t[(v >> 18) & 63], f);
		fputc(t[(v >> 12) & 63], f);
		fputc(i + 1 < n ? t[(v >> 6) & 63] : '=', f);
		fputc(i + 2 < n ? t[v & 63] : '=', f);
	}
}

/* A thumbnail of a dataset file as an inline PNG; 0 or an error. */
static int thumbnail(FILE *f, const char *path, int size)
{
	usv_image *im = NULL;
	char err[USV_ERRBUF];
	int rc = usv_ds_load_image(path, size, &im, err, sizeof err);
	if (rc)
		return rc;
	char tmp[] = "/tmp/usv-report-XXXXXX";
	int fd = mkstemp(tmp);
	if (fd < 0) {
		usv_image_free(im);
		return -errno;
	}
	close(fd);
	rc = usv_image_write_png(im, tmp, err, sizeof err);
	usv_image_free(im);
	size_t n = 0;
	char *png = rc ? NULL : read_file(tmp, &n, 16u << 20);
	unlink(tmp);
	if (!png)
		return rc ? rc : -EIO;
	fprintf(f, "<img width=\"%d\" height=\"%d\" alt=\"thumbnail\" src=\"data:image/png;base64,",
	        size, size);
	base64(f, (const unsigned char *)png, n);
	fputs("\">", f);
	free(png);
	return 0;
}

static void dataset_table(FILE *f, const cJSON *prov, const usv_csv *pred, int ct, int nl,
                          const char *const *labels)
{
	const cJSON *tab = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(prov, "dataset"), "table");
	const cJSON *splits = cJSON_GetObjectItemCaseSensitive(tab, "splits");
	const cJSON *tl = cJSON_GetObjectItemCaseSensitive(tab, "labels");
	int nsp = splits ? cJSON_GetArraySize(splits) : 0;
	long *test = calloc((size_t)nl, sizeof(long));
	long ntest = 0;
	for (int i = 1; test && i < pred->n_rows; i++)
		for (int k = 0; k < nl; k++)
			if (!strcmp(pred->rows[i].f[ct], labels[k])) {
				test[k]++;
				ntest++;
			}
	fputs("<table class=\"t\"><tr><th>class</th>", f);
	const cJSON *sp;
	cJSON_ArrayForEach(sp, splits)
	{
		fputs("<th>", f);
		usv_html_esc(f, sp->string);
		fputs("</th>", f);
	}
	fputs("<th>test (eval)</th></tr>\n", f);
	for (int k = 0; k <= nl; k++) {
		fputs("<tr><td>", f);
		usv_html_esc(f, k < nl ? labels[k] : "total");
		fputs("</td>", f);
		cJSON_ArrayForEach(sp, splits)
		{
			long c = 0, tot = 0;
			int m = cJSON_GetArraySize(sp);
			for (int j = 0; j < m; j++) {
				long v = (long)cJSON_GetArrayItem(sp, j)->valuedouble;
				tot += v;
				const cJSON *lj = cJSON_GetArrayItem(tl, j);
				if (k == nl ||
				    (cJSON_IsString(lj) && !strcmp(lj->valuestring, labels[k])))
					c += v;
			}
			fprintf(f, "<td>%ld (%.1f%%)</td>", c, tot ? 100.0 * c / tot : 0.0);
		}
		long c = k < nl ? (test ? test[k] : 0) : ntest;
		fprintf(f, "<td>%ld (%.1f%%)</td></tr>\n", c, ntest ? 100.0 * c / ntest : 0.0);
	}
	fputs("</table>\n", f);
	if (!nsp)
		fputs("<p>(the model's provenance has no training table)</p>\n", f);
	free(test);
}

static void confusion_svg(FILE *f, const cJSON *met, int nl, const char *const *labels)
{
	const cJSON *cm = cJSON_GetObjectItemCaseSensitive(met, "confusion");
	int maxlen = 1;
	for (int k = 0; k < nl; k++)
		if ((int)strlen(labels[k]) > maxlen)
			maxlen = (int)strlen(labels[k]);
	/* rotated column labels need about 5.5 px per character */
	int cell = nl > 12 ? 28 : 44, left = 40 + 6 * (maxlen < 22 ? maxlen : 22);
	int top = 20 + 6 * (maxlen < 22 ? maxlen : 22);
	int W = left + nl * cell + 20, H = top + nl * cell + 40;
	fprintf(f,
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "font-family=\"sans-serif\" font-size=\"11\">\n",
	        W, H);
	for (int r = 0; r < nl; r++) {
		const cJSON *row = cJSON_GetArrayItem(cm, r);
		double rs = 0;
		for (int c = 0; c < nl; c++)
			rs += cJSON_GetArrayItem(row, c)->valuedouble;
		fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 6,
		        top + r * cell + cell / 2 + 4);
		usv_html_esc(f, labels[r]);
		fputs("</text>\n", f);
		for (int c = 0; c < nl; c++) {
			double v = cJSON_GetArrayItem(row, c)->valuedouble,
			       sh = rs > 0 ? v / rs : 0;
			int g = (int)(255 - 200 * sh);
			fprintf(f,
			        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
			        "fill=\"rgb(%d,%d,255)\" "
			        "stroke=\"#ccc\"/><text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
			        "fill=\"%s\">%.0f</text>\n",
			        left + c * cell, top + r * cell, cell, cell, g, g,
			        left + c * cell + cell / 2, top + r * cell + cell / 2 + 4,
			        sh > 0.6 ? "#fff" : "#000", v);
		}
	}
	for (int c = 0; c < nl; c++) {
		int x = left + c * cell + cell / 2;
		fprintf(f, "<text transform=\"translate(%d,%d) rotate(-60)\">", x, top - 6);
		usv_html_esc(f, labels[c]);
		fputs("</text>\n", f);
	}
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">predicted</text>\n",
	        left + nl * cell / 2, H - 10);
	fputs("</svg>\n", f);
}

/* The reliability diagram of metrics.json's calibration.bins: per bin a
 * bar up to its accuracy (opacity growing with its share of the images),
 * a dot at its mean confidence, and the diagonal acc = conf. */
static void reliability_svg(FILE *f, const cJSON *met)
{
	const cJSON *bins = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(met, "calibration"), "bins");
	const cJSON *ece = cJSON_GetObjectItemCaseSensitive(met, "ece"),
	            *mce = cJSON_GetObjectItemCaseSensitive(met, "mce"),
	            *nll = cJSON_GetObjectItemCaseSensitive(met, "nll"),
	            *tj = cJSON_GetObjectItemCaseSensitive(met, "temperature");
	int nb = cJSON_GetArraySize(bins);
	if (!cJSON_IsArray(bins) || nb < 1 || !cJSON_IsNumber(ece)) {
		fputs("<p>(no calibration data in metrics.json: evaluate again with this version "
		      "of usview eval)</p>\n",
		      f);
		return;
	}
	double total = 0;
	const cJSON *b;
	cJSON_ArrayForEach(b, bins)
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(b, "n");
		total += cJSON_IsNumber(n) ? n->valuedouble : 0;
	}
	int S = 360, l = 50, t = 16, r = 16, bt = 44;
	int W = l + S + r, H = t + S + bt;
	fputs("<figure style=\"margin:0\">\n", f);
	fprintf(f,
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "font-family=\"sans-serif\" font-size=\"11\">\n",
	        W, H);
	fprintf(f,
	        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" "
	        "stroke=\"#999\"/>\n",
	        l, t, S, S);
	for (int k = 0; k <= 5; k++) {
		double v = k / 5.0;
		int x = l + (int)(S * v), y = t + S - (int)(S * v);
		fprintf(f,
		        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e4e4e4\"/>"
		        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e4e4e4\"/>\n",
		        l, y, l + S, y, x, t, x, t + S);
		fprintf(f,
		        "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.1f</text>"
		        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.1f</text>\n",
		        l - 4, y + 4, v, x, t + S + 14, v);
	}
	cJSON_ArrayForEach(b, bins)
	{
		const cJSON *lo = cJSON_GetObjectItemCaseSensitive(b, "lo"),
		            *hi = cJSON_GetObjectItemCaseSensitive(b, "hi"),
		            *n = cJSON_GetObjectItemCaseSensitive(b, "n"),
		            *cf = cJSON_GetObjectItemCaseSensitive(b, "conf"),
		            *ac = cJSON_GetObjectItemCaseSensitive(b, "acc");
		if (!cJSON_IsNumber(lo) || !cJSON_IsNumber(hi) || !cJSON_IsNumber(n) ||
		    !cJSON_IsNumber(cf) || !cJSON_IsNumber(ac) || n->valuedouble <= 0)
			continue;
		double x0 = l + S * lo->valuedouble, x1 = l + S * hi->valuedouble;
		double ya = t + S * (1 - ac->valuedouble), yc = t + S * (1 - cf->valuedouble);
		double share = total > 0 ? n->valuedouble / total : 0;
		/* the gap between accuracy and confidence, shaded red */
		fprintf(
		    f,
		    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
		    "fill=\"#1f77b4\" fill-opacity=\"%.2f\" stroke=\"#1f77b4\"><title>confidence "
		    "(%.3f, %.3f]: %.0f images, mean confidence %.3f, accuracy %.3f</title>"
		    "</rect>\n",
		    x0 + 1, ya, x1 - x0 - 2, t + S - ya, 0.25 + 0.75 * share, lo->valuedouble,
		    hi->valuedouble, n->valuedouble, cf->valuedouble, ac->valuedouble);
		fprintf(f,
		        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
		        "fill=\"#d62728\" fill-opacity=\"0.35\"/>"
		        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n",
		        x0 + 1, ya < yc ? ya : yc, x1 - x0 - 2, fabs(ya - yc), (x0 + x1) / 2, yc);
	}
	fprintf(f,
	        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\" "
	        "stroke-dasharray=\"4,3\"/>\n",
	        l, t + S, l + S, t);
	fprintf(f,
	        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">confidence (top-1 "
	        "probability)</text>\n",
	        l + S / 2, H - 12);
	fprintf(f,
	        "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">"
	        "accuracy</text>\n",
	        14, t + S / 2);
	fputs("</svg>\n<figcaption>", f);
	fprintf(f, "Reliability diagram, %d equal-width confidence bins: <b>ECE %.4f</b>", nb,
	        ece->valuedouble);
	if (cJSON_IsNumber(mce))
		fprintf(f, ", MCE %.4f", mce->valuedouble);
	if (cJSON_IsNumber(nll))
		fprintf(f, ", NLL %.4f", nll->valuedouble);
	if (cJSON_IsNumber(tj))
		fprintf(f, "; temperature %.4f%s", tj->valuedouble,
		        tj->valuedouble == 1 ? " (uncalibrated softmax)" : "");
	fputs(". Bars: accuracy of the images whose top-1 probability falls in the bin "
	      "(darker = more images); dots: their mean confidence; red: the gap. Bars below "
	      "the dashed diagonal are over-confident, above it under-confident.</figcaption>\n"
	      "</figure>\n",
	      f);
}

static void curve_svg(FILE *f, const cJSON *curve)
{
	int n = cJSON_GetArraySize(curve);
	if (n < 1) {
		fputs("<p>(no learning curve in the model)</p>\n", f);
		return;
	}
	int W = 640, H = 300, l = 60, r = 60, t = 20, b = 40;
	double maxit = 1, maxloss = 1e-9;
	const cJSON *p;
	cJSON_ArrayForEach(p, curve)
	{
		double it = cJSON_GetObjectItem(p, "iter")->valuedouble;
		maxit = it > maxit ? it : maxit;
		const cJSON *a = cJSON_GetObjectItem(p, "train_loss"),
		            *v = cJSON_GetObjectItem(p, "val_loss");
		if (a && a->valuedouble > maxloss)
			maxloss = a->valuedouble;
		if (v && v->valuedouble > maxloss)
			maxloss = v->valuedouble;
	}
	fprintf(f,
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "font-family=\"sans-serif\" font-size=\"11\">\n",
	        W, H);
	fprintf(f,
	        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" "
	        "stroke=\"#999\"/>\n",
	        l, t, W - l - r, H - t - b);
	for (int k = 0; k <= 4; k++) {
		int y = t + (H - t - b) * k / 4;
		fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.2f</text>", l - 4, y + 4,
		        maxloss * (4 - k) / 4);
		fprintf(f, "<text x=\"%d\" y=\"%d\">%.2f</text>\n", W - r + 4, y + 4,
		        (4 - k) / 4.0);
	}
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">iteration (max %.0f)</text>\n",
	        W / 2, H - 8, maxit);
	const char *keys[3] = {"train_loss", "val_loss", "val_acc"};
	const char *cols[3] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
	for (int s = 0; s < 3; s++) {
		int any = 0;
		cJSON_ArrayForEach(p, curve)
		{
			const cJSON *v = cJSON_GetObjectItem(p, keys[s]);
			if (!v)
				continue;
			double it = cJSON_GetObjectItem(p, "iter")->valuedouble;
			double val = s == 2 ? v->valuedouble : v->valuedouble / maxloss;
			double x = l + (W - l - r) * it / maxit, y = t + (H - t - b) * (1 - val);
			fprintf(f, "%s%.1f,%.1f",
			        any ? " " : "<polyline fill=\"none\" stroke-width=\"2\" points=\"",
			        x, y);
			any = 1;
		}
		if (any)
			fprintf(f, "\" stroke=\"%s\"/>\n", cols[s]);
		fprintf(f,
		        "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
		        "<text x=\"%d\" y=\"%d\">%s%s</text>\n",
		        l + 10 + 150 * s, t + 8, cols[s], l + 24 + 150 * s, t + 17, keys[s],
		        s == 2 ? " (right axis)" : "");
	}
	fputs("</svg>\n", f);
}

static void tsne_svg(FILE *f, const double *y, const int *lab, const int *wrong, int n, int nl,
                     const char *const *labels)
{
	double mnx = INFINITY, mxx = -INFINITY, mny = INFINITY, mxy = -INFINITY;
	for (int i = 0; i < n; i++) {
		mnx = fmin(mnx, y[2 * i]), mxx = fmax(mxx, y[2 * i]);
		mny = fmin(mny, y[2 * i + 1]), mxy = fmax(mxy, y[2 * i + 1]);
	}
	int S = 560, L = 200;
	double sx = (S - 20) / (mxx - mnx + 1e-9), sy = (S - 20) / (mxy - mny + 1e-9);
	fprintf(f,
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "font-family=\"sans-serif\" font-size=\"11\">\n",
	        S + L, S);
	fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#999\"/>\n", S, S);
	for (int i = 0; i < n; i++)
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"%s/>\n",
		        10 + (y[2 * i] - mnx) * sx, 10 + (y[2 * i + 1] - mny) * sy,
		        wrong[i] ? 4 : 3, palette[lab[i] % NPAL],
		        wrong[i] ? " stroke=\"#000\" stroke-width=\"1.5\"" : "");
	for (int k = 0; k < nl; k++) {
		fprintf(f,
		        "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">",
		        S + 16, 20 + 18 * k, palette[k % NPAL], S + 26, 24 + 18 * k);
		usv_html_esc(f, labels[k]);
		fputs("</text>\n", f);
	}
	fprintf(f, "<text x=\"%d\" y=\"%d\">black ring = misclassified</text>\n", S + 10,
	        30 + 18 * nl);
	fputs("</svg>\n", f);
}

/* The options of one report. */
typedef struct report_opts {
	const char *model, *evdir, *data, *out;
	long maxerr, seed;
	double perplexity;
	char gsep;
} report_opts;

/* What the report is made of: the model and the output of usview eval. */
typedef struct report_in {
	usv_model *m;
	const usv_model_meta *mm; /* of m */
	cJSON *prov, *met;        /* provenance ({} if none), metrics.json */
	usv_csv *pred;            /* predictions.csv */
	usv_dataset *ds;          /* --data, or NULL */
	int cf, ct, c1;           /* columns file, truth, top1 of pred */
	int n;                    /* images (rows of pred) */
} report_in;

/* Phase 1: the options into *o; -1 to go on, otherwise the exit status. */
static int report_parse_args(int argc, char **argv, report_opts *o)
{
	enum { OPT_EVAL = 256, OPT_DATA, OPT_GROUP_SEP, OPT_MAX_ERRORS, OPT_SEED, OPT_PERPLEXITY };
	static const struct option opts[] = {
	    {"model", required_argument, NULL, 'm'},
	    {"eval", required_argument, NULL, OPT_EVAL},
	    {"data", required_argument, NULL, OPT_DATA},
	    {"out", required_argument, NULL, 'o'},
	    {"group-sep", required_argument, NULL, OPT_GROUP_SEP},
	    {"max-errors", required_argument, NULL, OPT_MAX_ERRORS},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"perplexity", required_argument, NULL, OPT_PERPLEXITY},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	int c, bad = 0;
	*o = (report_opts){.out = "report.html", .maxerr = 24, .seed = 1, .perplexity = 30};
	optind = 1;
	while (!bad && (c = getopt_long(argc, argv, ":m:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->model = optarg;
			break;
		case OPT_EVAL:
			o->evdir = optarg;
			break;
		case OPT_DATA:
			o->data = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case OPT_GROUP_SEP:
			if (strlen(optarg) != 1) {
				fprintf(stderr,
				        "usview report: --group-sep: '%s' is not one character\n",
				        optarg);
				return 2;
			}
			o->gsep = optarg[0];
			break;
		case OPT_MAX_ERRORS:
			bad = usv_opt_long("report", "--max-errors", optarg, 0, 10000, &o->maxerr);
			break;
		case OPT_SEED:
			bad = usv_opt_long("report", "--seed", optarg, 0, 0x7fffffffL, &o->seed);
			break;
		case OPT_PERPLEXITY:
			bad = usv_opt_double("report", "--perplexity", optarg, 2, 100,
			                     &o->perplexity);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("report", c, argv);
		}
	}
	if (bad)
		return 2;
	if (!o->model || !o->evdir) {
		fprintf(stderr, "usview report: %s: required\n", !o->model ? "--model" : "--eval");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usview report: %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	return -1;
}

static void report_in_done(report_in *in)
{
	cJSON_Delete(in->prov);
	cJSON_Delete(in->met);
	usv_csv_free(in->pred);
	usv_dataset_free(in->ds);
	usv_model_free(in->m);
	*in = (report_in){0};
}

/* Phase 2: model, provenance, metrics, predictions and the dataset; 0 or
 * -1 after a message. */
static int report_load(const report_opts *o, report_in *in)
{
	char err[USV_ERRBUF], p[4096];
	if (usv_model_load(o->model, &in->m, err, sizeof err)) {
		fprintf(stderr, "usview report: %s\n", err);
		return -1;
	}
	in->mm = usv_model_get_meta(in->m);
	in->prov = in->mm->provenance_json ? cJSON_Parse(in->mm->provenance_json) : NULL;
	if (!in->prov)
		in->prov = cJSON_CreateObject();
	snprintf(p, sizeof p, "%s/metrics.json", o->evdir);
	char *txt = read_file(p, NULL, 64u << 20);
	in->met = txt ? cJSON_Parse(txt) : NULL;
	free(txt);
	if (!in->met) {
		fprintf(stderr, "usview report: %s: missing or not JSON (run usview eval --out)\n",
		        p);
		return -1;
	}
	snprintf(p, sizeof p, "%s/predictions.csv", o->evdir);
	if (usv_csv_read(p, &in->pred, err, sizeof err)) {
		fprintf(stderr, "usview report: %s\n", err);
		return -1;
	}
	in->cf = usv_csv_col(in->pred, "file");
	in->ct = usv_csv_col(in->pred, "truth");
	in->c1 = usv_csv_col(in->pred, "top1");
	if (in->cf < 0 || in->ct < 0 || in->c1 < 0) {
		fprintf(stderr, "usview report: %s: needs file, truth, top1 columns\n", p);
		return -1;
	}
	in->n = in->pred->n_rows - 1;
	if (o->data) {
		usv_ds_opts dso = {
		    .group_sep = o->gsep, .labels = in->mm->labels, .n_labels = in->mm->n_labels};
		if (usv_dataset_load(o->data, &dso, &in->ds, err, sizeof err)) {
			fprintf(stderr, "usview report: %s\n", err);
			return -1;
		}
	}
	return 0;
}

/* Phase 3a: head, data table, accuracy, confusion matrix, learning curve. */
static void report_write_summary(FILE *f, const report_opts *o, const report_in *in)
{
	const usv_model_meta *mm = in->mm;
	int nl = mm->n_labels;
	fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>usview report</title>\n"
	      "<style>body{font-family:sans-serif;margin:24px;color:#222;background:#fff}"
	      "table.t{border-collapse:collapse}table.t td,table.t th{border:1px solid #bbb;"
	      "padding:3px 8px;text-align:right}table.t td:first-child{text-align:left}"
	      ".err{display:inline-block;width:250px;margin:6px;vertical-align:top;"
	      "border:1px solid #ddd;padding:6px}.bar{height:10px;background:#1f77b4}"
	      ".lbl{font-size:11px}h2{border-bottom:1px solid #ccc}</style></head><body>\n",
	      f);
	fputs("<h1>usview evaluation report</h1>\n<p>model: <b>", f);
	usv_html_esc(f, mm->name);
	fputs("</b> (", f);
	usv_html_esc(f, o->model);
	fputs(")<br>preset: ", f);
	const cJSON *pj = cJSON_GetObjectItemCaseSensitive(in->prov, "preset");
	usv_html_esc(f, cJSON_IsString(pj) ? pj->valuestring : "?");
	fprintf(f, "; model SHA-256 %s<br>evaluation: ", mm->sha256);
	usv_html_esc(f, o->evdir);
	fputs("</p>\n<h2>Data</h2>\n", f);
	dataset_table(f, in->prov, in->pred, in->ct, nl, mm->labels);
	const cJSON *t1 = cJSON_GetObjectItem(in->met, "top1"),
	            *t2 = cJSON_GetObjectItem(in->met, "top2"),
	            *au = cJSON_GetObjectItem(in->met, "auc");
	fprintf(f, "<h2>Accuracy</h2>\n<p>%d images: top-1 <b>%.2f%%</b>, top-2 %.2f%%", in->n,
	        t1 ? 100 * t1->valuedouble : 0, t2 ? 100 * t2->valuedouble : 0);
	if (au)
		fprintf(f, ", ROC AUC <b>%.3f</b>", au->valuedouble);
	fputs("</p>\n<h2>Confusion matrix</h2>\n<p>rows: truth, columns: prediction; colour: share "
	      "of the row</p>\n",
	      f);
	confusion_svg(f, in->met, nl, mm->labels);
	fputs("<h2>Calibration</h2>\n", f);
	reliability_svg(f, in->met);
	fputs("<h2>Learning curve</h2>\n", f);
	curve_svg(f, cJSON_GetObjectItemCaseSensitive(in->prov, "curve"));
}

/* Phase 3b: the t-SNE map of the feature layer (features.json and
 * features.f32 of the evaluation); 0, or -ENOMEM. */
static int report_write_tsne(FILE *f, const report_opts *o, const report_in *in)
{
	const usv_model_meta *mm = in->mm;
	int nl = mm->n_labels, n = in->n, rc = 0;
	char p[4096];
	float *feat = NULL;
	double *pca = NULL, *y = NULL;
	int *lab = NULL, *wrong = NULL, *pick = NULL;

	fputs("<h2>t-SNE map of the features</h2>\n", f);
	snprintf(p, sizeof p, "%s/features.json", o->evdir);
	char *txt = read_file(p, NULL, 1 << 20);
	cJSON *fj = txt ? cJSON_Parse(txt) : NULL;
	free(txt);
	const cJSON *fn = cJSON_GetObjectItem(fj, "n"), *fd = cJSON_GetObjectItem(fj, "dim"),
	            *fl = cJSON_GetObjectItem(fj, "layer");
	size_t flen = 0;
	snprintf(p, sizeof p, "%s/features.f32", o->evdir);
	if (!(fn && fd && (int)fn->valuedouble == n && n >= 10 &&
	      (feat = (float *)read_file(p, &flen, 1u << 31)) &&
	      flen == (size_t)n * (size_t)fd->valuedouble * sizeof(float))) {
		fputs("<p>(no features: run usview eval with --out)</p>\n", f);
		goto out;
	}
	int dim = (int)fd->valuedouble, np = n < TSNE_MAX_POINTS ? n : TSNE_MAX_POINTS;
	pick = malloc((size_t)n * sizeof(int));
	lab = malloc((size_t)np * sizeof(int));
	wrong = malloc((size_t)np * sizeof(int));
	float *sub = malloc((size_t)np * dim * sizeof(float));
	pca = malloc((size_t)np * 50 * sizeof(double));
	y = malloc((size_t)np * 2 * sizeof(double));
	if (!pick || !lab || !wrong || !sub || !pca || !y) {
		free(sub);
		rc = -ENOMEM;
		goto out;
	}
	usv_rng rng;
	usv_rng_seed(&rng, (uint64_t)o->seed);
	for (int i = 0; i < n; i++)
		pick[i] = i;
	for (int i = 0; i < np; i++) { /* partial Fisher-Yates: a seeded subsample */
		int j = i + (int)usv_rng_below(&rng, (uint32_t)(n - i));
		int t = pick[i];
		pick[i] = pick[j];
		pick[j] = t;
	}
	for (int i = 0; i < np; i++) {
		usv_csv_row *r = &in->pred->rows[pick[i] + 1];
		memcpy(sub + (size_t)i * dim, feat + (size_t)pick[i] * dim,
		       (size_t)dim * sizeof(float));
		lab[i] = 0;
		for (int k = 0; k < nl; k++)
			if (!strcmp(r->f[in->ct], mm->labels[k]))
				lab[i] = k;
		wrong[i] = strcmp(r->f[in->ct], r->f[in->c1]) != 0;
	}
	int k = 0;
	int trc = usv_pca(sub, np, dim, 50, (uint64_t)o->seed, pca, &k);
	free(sub);
	if (!trc)
		trc = usv_tsne(pca, np, k, o->perplexity, 1000, (uint64_t)o->seed, y);
	if (trc) {
		fprintf(f, "<p>(t-SNE failed: %s)</p>\n", usv_strerror(trc));
	} else {
		fprintf(f, "<p>layer <code>");
		usv_html_esc(f, cJSON_IsString(fl) ? fl->valuestring : "?");
		fprintf(f,
		        "</code> (%d dimensions), %d images; PCA to %d dimensions, then "
		        "exact t-SNE, perplexity %.0f, seed %ld</p>\n",
		        dim, np, k, o->perplexity, o->seed);
		tsne_svg(f, y, lab, wrong, np, nl, mm->labels);
	}
out:
	free(feat);
	free(pca);
	free(y);
	free(lab);
	free(wrong);
	free(pick);
	cJSON_Delete(fj);
	return rc;
}

/* A probability column of predictions.csv for the bars; 0 if unreadable. */
static double prob_field(const char *s)
{
	double v;
	return usv_parse_float(s, -1e308, 1e308, &v) ? 0 : v;
}

/* Phase 3c: the misclassified images with their top-3 bars, and the end. */
static void report_write_errors(FILE *f, const report_opts *o, const report_in *in)
{
	const usv_csv *pred = in->pred;
	int cf = in->cf, ct = in->ct, c1 = in->c1;
	fputs("<h2>Misclassified examples</h2>\n<div>\n", f);
	int shown = 0, nwrong = 0;
	int k3[3] = {usv_csv_col(pred, "top1"), usv_csv_col(pred, "top2"),
	             usv_csv_col(pred, "top3")};
	int p3[3] = {usv_csv_col(pred, "p1"), usv_csv_col(pred, "p2"), usv_csv_col(pred, "p3")};
	for (int i = 1; i < pred->n_rows; i++) {
		usv_csv_row *r = &pred->rows[i];
		if (!strcmp(r->f[ct], r->f[c1]))
			continue;
		nwrong++;
		if (shown >= o->maxerr)
			continue;
		shown++;
		fputs("<div class=\"err\">", f);
		const char *path = NULL;
		for (int j = 0; in->ds && j < in->ds->n; j++)
			if (!strcmp(in->ds->items[j].name, r->f[cf]))
				path = in->ds->items[j].path;
		if (!path && access(r->f[cf], R_OK) == 0)
			path = r->f[cf];
		if (!path || thumbnail(f, path, 128))
			fputs("<p>(no image)</p>", f);
		fputs("<div class=\"lbl\">", f);
		usv_html_esc(f, r->f[cf]);
		fputs("<br>truth: <b>", f);
		usv_html_esc(f, r->f[ct]);
		fputs("</b></div>", f);
		for (int k = 0; k < 3; k++) {
			if (k3[k] < 0 || p3[k] < 0 || !r->f[k3[k]][0])
				continue;
			double pv = prob_field(r->f[p3[k]]);
			fputs("<div class=\"lbl\">", f);
			usv_html_esc(f, r->f[k3[k]]);
			fprintf(
			    f,
			    " %.3f</div><div class=\"bar\" style=\"width:%.0fpx;background:%s\">"
			    "</div>",
			    pv, 4 + 230 * pv, k == 0 ? "#d62728" : "#1f77b4");
		}
		fputs("</div>\n", f);
	}
	fprintf(f, "</div>\n<p>%d misclassified, %d shown.</p>\n", nwrong, shown);
	fputs("<p style=\"color:#777;font-size:11px\">Generated by usview report.</p>\n"
	      "</body></html>\n",
	      f);
}

/* Phase 3: the HTML file; 0 or -1 after a message (a partial file may remain). */
static int report_write(const report_opts *o, const report_in *in)
{
	FILE *f = fopen(o->out, "w");
	if (!f) {
		fprintf(stderr, "usview report: %s: %s\n", o->out, strerror(errno));
		return -1;
	}
	report_write_summary(f, o, in);
	if (report_write_tsne(f, o, in)) {
		fclose(f);
		return -1;
	}
	report_write_errors(f, o, in);
	if (fclose(f)) {
		fprintf(stderr, "usview report: %s: write error\n", o->out);
		return -1;
	}
	return 0;
}

int usv_cmd_report(int argc, char **argv)
{
	report_opts o;
	report_in in = {0};
	char err[USV_ERRBUF];
	int rc = report_parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usview report: %s\n", err);
		return 1;
	}
	int status = 1;
	if (!report_load(&o, &in) && !report_write(&o, &in)) {
		printf("wrote %s\n", o.out);
		status = 0;
	}
	report_in_done(&in);
	usv_dcm_global_cleanup();
	return status;
}
