/*
 * NAME
 *	cmd_compare.c - usview compare: do two classifiers differ in accuracy?
 *
 * SYNOPSIS
 *	usview compare PRED_A.csv PRED_B.csv [--no-correction] [--json]
 *	usview compare --counts CORRECT/TOTAL CORRECT/TOTAL [--json]
 *	usview compare --table a,b,c,d [--mcnemar] [--json]
 *	usview compare --delong PRED_A.csv PRED_B.csv [--positive LABEL] [--json]
 *
 * DESCRIPTION
 *	Pearson's chi-square test on the 2x2 table (correct, incorrect) x
 *	(A, B) with Yates' continuity correction, as R's chisq.test, df = 1.
 *	From two prediction files (usview eval's predictions.csv: columns
 *	file, truth, top1) it also runs McNemar's test (with continuity
 *	correction, as R's mcnemar.test) on the images both files share,
 *	which is the right test when both models saw the same images.
 *	--table gives a 2x2 table directly (rows a b / c d); with --mcnemar
 *	the table is read as paired outcomes and b, c are the discordant
 *	cells.
 *
 *	--delong compares the ROC AUCs of two classifiers on the same images
 *	with DeLong's test for correlated AUCs (stats.h: usv_delong). It
 *	reads file, truth and p_<LABEL> of two prediction files (usview
 *	eval's predictions.csv); the score of an image is its probability of
 *	the positive label: --positive LABEL, by default the second of
 *	exactly two p_ columns. The images both files hold are paired by
 *	file (a file named twice, or with different truths, is an error);
 *	those of one file only are left out. It prints both AUCs, their
 *	difference A - B, its standard error, z and the two-sided p; --json
 *	as {"test": "delong", "positive", "n", "n_pos", "n_neg", "auc_a",
 *	"auc_b", "diff", "se", "var_a", "var_b", "cov", "z" (null when the
 *	variance of the difference is 0), "p"}.
 */
#include "cli.h"
#include "csv.h"
#include "opt.h"
#include "stats.h"

#include "usv/err.h"
#include "usv/parse.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies the n characters at s into a terminated buffer for usv_parse_int. */
static int parse_count(const char *s, size_t n, long lo, long *out)
{
	char b[32];
	if (n >= sizeof b)
		return -EINVAL;
	memcpy(b, s, n);
	b[n] = 0;
	return usv_parse_int(b, lo, 1000000000L, out);
}

/* CORRECT/TOTAL with 0 <= CORRECT <= TOTAL, 0 < TOTAL <= 1e9. */
static int parse_frac(const char *s, double *num, double *den)
{
	const char *slash = strchr(s, '/');
	long a, b;
	if (!slash || parse_count(s, (size_t)(slash - s), 0, &a) ||
	    usv_parse_int(slash + 1, 1, 1000000000L, &b) || a > b)
		return -EINVAL;
	*num = (double)a;
	*den = (double)b;
	return 0;
}

/* a,b,c,d: four counts in [0, 1e9]. */
static int parse_table(const char *s, double t[4])
{
	const char *p = s;
	for (int i = 0; i < 4; i++) {
		size_t n = i < 3 ? strcspn(p, ",") : strlen(p);
		long v;
		if ((i < 3 && p[n] != ',') || parse_count(p, n, 0, &v))
			return -EINVAL;
		t[i] = (double)v;
		p += n + (i < 3);
	}
	return 0;
}

typedef struct pred {
	const char *file;
	int correct;
} pred;

static int cmp_pred(const void *a, const void *b)
{
	return strcmp(((const pred *)a)->file, ((const pred *)b)->file);
}

/* Reads file,truth,top1 columns; *out sorted by file. */
static int load_preds(const char *path, usv_csv **csv, pred **out, int *n)
{
	char err[USV_ERRBUF];
	int rc = usv_csv_read(path, csv, err, sizeof err);
	if (rc) {
		fprintf(stderr, "usview compare: %s\n", err);
		return rc;
	}
	int cf = usv_csv_col(*csv, "file"), ct = usv_csv_col(*csv, "truth"),
	    cp = usv_csv_col(*csv, "top1");
	if (cf < 0 || ct < 0 || cp < 0) {
		fprintf(stderr, "usview compare: %s: needs columns file, truth, top1\n", path);
		return -USV_ERR_FORMAT;
	}
	int m = (*csv)->n_rows - 1;
	pred *p = calloc(m > 0 ? (size_t)m : 1, sizeof *p);
	if (!p)
		return -ENOMEM;
	int k = 0;
	for (int i = 1; i <= m; i++) {
		usv_csv_row *r = &(*csv)->rows[i];
		if (r->n <= cf || r->n <= ct || r->n <= cp) {
			fprintf(stderr, "usview compare: %s: row %d is short\n", path, i + 1);
			free(p);
			return -USV_ERR_FORMAT;
		}
		p[k].file = r->f[cf];
		p[k].correct = !strcmp(r->f[ct], r->f[cp]);
		k++;
	}
	qsort(p, (size_t)k, sizeof *p, cmp_pred);
	*out = p;
	*n = k;
	return 0;
}

/* One image of a --delong prediction file. */
typedef struct scored {
	const char *file, *truth;
	double p; /* probability of the positive label */
} scored;

static int cmp_scored(const void *a, const void *b)
{
	return strcmp(((const scored *)a)->file, ((const scored *)b)->file);
}

/* Reads file, truth and p_<*positive> (resolved from the p_ columns
 * when NULL: the second of exactly two) of path; *out sorted by file. */
static int load_scores(const char *path, const char **positive, usv_csv **csv, scored **out, int *n)
{
	char err[USV_ERRBUF];
	int rc = usv_csv_read(path, csv, err, sizeof err);
	if (rc) {
		fprintf(stderr, "usview compare: %s\n", err);
		return rc;
	}
	const usv_csv *c = *csv;
	int cf = usv_csv_col(c, "file"), ct = usv_csv_col(c, "truth"), cp = -1;
	if (cf < 0 || ct < 0 || c->n_rows < 1) {
		fprintf(stderr, "usview compare: %s: needs columns file, truth, p_<label>\n", path);
		return -USV_ERR_FORMAT;
	}
	if (!*positive) {
		int pc[2], np = 0;
		for (int i = 0; i < c->rows[0].n; i++)
			if (!strncmp(c->rows[0].f[i], "p_", 2) && np++ < 2)
				pc[np - 1] = i;
		if (np != 2) {
			fprintf(stderr,
			        "usview compare: %s: %d p_<label> columns; --positive LABEL says "
			        "which label's probability is the score\n",
			        path, np);
			return -USV_ERR_FORMAT;
		}
		*positive = c->rows[0].f[pc[1]] + 2;
		cp = pc[1];
	} else {
		for (int i = 0; i < c->rows[0].n; i++)
			if (!strncmp(c->rows[0].f[i], "p_", 2) &&
			    !strcmp(c->rows[0].f[i] + 2, *positive))
				cp = i;
		if (cp < 0) {
			fprintf(stderr, "usview compare: %s: no column p_%s\n", path, *positive);
			return -USV_ERR_FORMAT;
		}
	}
	int m = c->n_rows - 1;
	scored *p = calloc(m > 0 ? (size_t)m : 1, sizeof *p);
	if (!p)
		return -ENOMEM;
	for (int i = 1; i <= m; i++) {
		const usv_csv_row *r = &c->rows[i];
		double v;
		if (r->n <= cf || r->n <= ct || r->n <= cp) {
			fprintf(stderr, "usview compare: %s: row %d is short\n", path, i + 1);
			free(p);
			return -USV_ERR_FORMAT;
		}
		if (usv_parse_float(r->f[cp], -1e308, 1e308, &v)) {
			fprintf(stderr, "usview compare: %s: row %d: bad score '%s'\n", path, i + 1,
			        r->f[cp]);
			free(p);
			return -USV_ERR_FORMAT;
		}
		p[i - 1] = (scored){.file = r->f[cf], .truth = r->f[ct], .p = v};
	}
	qsort(p, (size_t)m, sizeof *p, cmp_scored);
	for (int i = 1; i < m; i++)
		if (!strcmp(p[i].file, p[i - 1].file)) {
			fprintf(stderr, "usview compare: %s: %s appears twice\n", path, p[i].file);
			free(p);
			return -USV_ERR_FORMAT;
		}
	*out = p;
	*n = m;
	return 0;
}

/* usview compare --delong A B; the exit status. */
static int compare_delong(const char *fa, const char *fb, const char *positive, int json)
{
	usv_csv *ca = NULL, *cb = NULL;
	scored *pa = NULL, *pb = NULL;
	double *sa = NULL, *sb = NULL;
	int *pos = NULL, na = 0, nb = 0, n = 0, status = 1;
	if (load_scores(fa, &positive, &ca, &pa, &na) || load_scores(fb, &positive, &cb, &pb, &nb))
		goto out;
	int cap = na < nb ? na : nb;
	sa = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *sa);
	sb = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *sb);
	pos = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *pos);
	if (!sa || !sb || !pos)
		goto out;
	for (int i = 0, j = 0; i < na && j < nb;) {
		int c = strcmp(pa[i].file, pb[j].file);
		if (c < 0) {
			i++;
		} else if (c > 0) {
			j++;
		} else {
			if (strcmp(pa[i].truth, pb[j].truth)) {
				fprintf(stderr,
				        "usview compare: %s: truth '%s' in %s, '%s' in %s\n",
				        pa[i].file, pa[i].truth, fa, pb[j].truth, fb);
				goto out;
			}
			sa[n] = pa[i].p;
			sb[n] = pb[j].p;
			pos[n] = !strcmp(pa[i].truth, positive);
			n++;
			i++;
			j++;
		}
	}
	struct usv_delong r;
	if (usv_delong(sa, sb, pos, (size_t)n, &r)) {
		fprintf(
		    stderr,
		    "usview compare: DeLong needs at least two positive ('%s') and two negative "
		    "images the files share (%d shared)\n",
		    positive, n);
		goto out;
	}
	if (json) {
		cJSON *o = cJSON_CreateObject();
		char *txt = NULL;
		if (o) {
			cJSON_AddStringToObject(o, "test", "delong");
			cJSON_AddStringToObject(o, "positive", positive);
			cJSON_AddNumberToObject(o, "n", n);
			cJSON_AddNumberToObject(o, "n_pos", (double)r.n_pos);
			cJSON_AddNumberToObject(o, "n_neg", (double)r.n_neg);
			cJSON_AddNumberToObject(o, "auc_a", r.auc_a);
			cJSON_AddNumberToObject(o, "auc_b", r.auc_b);
			cJSON_AddNumberToObject(o, "diff", r.diff);
			cJSON_AddNumberToObject(o, "se", r.se);
			cJSON_AddNumberToObject(o, "var_a", r.var_a);
			cJSON_AddNumberToObject(o, "var_b", r.var_b);
			cJSON_AddNumberToObject(o, "cov", r.cov);
			if (r.z_defined)
				cJSON_AddNumberToObject(o, "z", r.z);
			else
				cJSON_AddNullToObject(o, "z");
			cJSON_AddNumberToObject(o, "p", r.p);
			txt = cJSON_PrintUnformatted(o);
		}
		if (!txt) {
			cJSON_Delete(o);
			goto out;
		}
		printf("%s\n", txt);
		free(txt);
		cJSON_Delete(o);
	} else {
		printf(
		    "DeLong's test for two correlated ROC curves: %d paired images, %zu positive "
		    "('%s'), %zu negative\n",
		    n, r.n_pos, positive, r.n_neg);
		printf("AUC A %.4f, AUC B %.4f, difference %.4f, standard error %.4f\n", r.auc_a,
		       r.auc_b, r.diff, r.se);
		if (r.z_defined)
			printf("z = %.4f, p-value = %.4g\n", r.z, r.p);
		else
			printf("z undefined (the difference has variance 0), p-value = %.4g\n",
			       r.p);
	}
	status = 0;
out:
	free(pa);
	free(pb);
	free(sa);
	free(sb);
	free(pos);
	usv_csv_free(ca);
	usv_csv_free(cb);
	return status;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: usview compare PRED_A.csv PRED_B.csv [--no-correction] [--json]\n"
	           "       usview compare --counts CORRECT/TOTAL CORRECT/TOTAL [--json]\n"
	           "       usview compare --table a,b,c,d [--mcnemar] [--json]\n"
	           "       usview compare --delong PRED_A.csv PRED_B.csv [--positive LABEL] "
	           "[--json]\n");
}

int usv_cmd_compare(int argc, char **argv)
{
	enum {
		OPT_JSON = 256,
		OPT_NO_CORRECTION,
		OPT_MCNEMAR,
		OPT_COUNTS,
		OPT_TABLE,
		OPT_DELONG,
		OPT_POSITIVE
	};
	static const struct option opts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"no-correction", no_argument, NULL, OPT_NO_CORRECTION},
	    {"mcnemar", no_argument, NULL, OPT_MCNEMAR},
	    {"counts", required_argument, NULL, OPT_COUNTS},
	    {"table", required_argument, NULL, OPT_TABLE},
	    {"delong", no_argument, NULL, OPT_DELONG},
	    {"positive", required_argument, NULL, OPT_POSITIVE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	int json = 0, yates = 1, mcn_only = 0, delong = 0, opt;
	const char *counts[2] = {0}, *table = NULL, *files[2] = {0}, *positive = NULL;
	int nfiles = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_JSON:
			json = 1;
			break;
		case OPT_NO_CORRECTION:
			yates = 0;
			break;
		case OPT_MCNEMAR:
			mcn_only = 1;
			break;
		case OPT_COUNTS:
			/* --counts takes two values: optarg and the next element */
			if (optind >= argc) {
				fprintf(stderr,
				        "usview compare: --counts: needs CORRECT/TOTAL twice\n");
				return 2;
			}
			counts[0] = optarg;
			counts[1] = argv[optind++];
			break;
		case OPT_TABLE:
			table = optarg;
			break;
		case OPT_DELONG:
			delong = 1;
			break;
		case OPT_POSITIVE:
			positive = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("compare", opt, argv);
		}
	}
	for (; optind < argc; optind++) {
		if (nfiles == 2) {
			fprintf(stderr, "usview compare: %s: unexpected argument\n", argv[optind]);
			return 2;
		}
		files[nfiles++] = argv[optind];
	}
	if (delong || positive) {
		if (!delong || nfiles != 2 || counts[0] || table) {
			usage(stderr);
			return 2;
		}
		return compare_delong(files[0], files[1], positive, json);
	}
	double t[4], chi2, p;
	int have_mc = 0;
	double mb = 0, mc = 0, mchi = 0, mp = 1;
	int npaired = 0;
	if (counts[0]) {
		double a, n1, b, n2;
		if (parse_frac(counts[0], &a, &n1) || parse_frac(counts[1], &b, &n2)) {
			fprintf(stderr, "usview compare: --counts: wants CORRECT/TOTAL twice\n");
			return 2;
		}
		t[0] = a;
		t[1] = n1 - a;
		t[2] = b;
		t[3] = n2 - b;
	} else if (table) {
		if (parse_table(table, t)) {
			fprintf(stderr, "usview compare: --table: wants four counts a,b,c,d\n");
			return 2;
		}
		if (mcn_only) {
			if (usv_mcnemar(t[1], t[2], yates, &chi2, &p)) {
				fprintf(stderr, "usview compare: bad table\n");
				return 1;
			}
			if (json)
				printf("{\"test\":\"mcnemar\",\"chi2\":%.10g,\"df\":1,\"p\":%.10g,"
				       "\"b\":%.0f,\"c\":%.0f}\n",
				       chi2, p, t[1], t[2]);
			else
				printf("McNemar's chi-squared = %.5g, df = 1, p-value = %.4g\n",
				       chi2, p);
			return 0;
		}
	} else if (nfiles == 2) {
		usv_csv *ca = NULL, *cb = NULL;
		pred *pa = NULL, *pb = NULL;
		int na = 0, nb = 0, rc = load_preds(files[0], &ca, &pa, &na);
		if (!rc)
			rc = load_preds(files[1], &cb, &pb, &nb);
		if (rc || na == 0 || nb == 0) {
			if (!rc)
				fprintf(stderr, "usview compare: empty prediction file\n");
			free(pa);
			free(pb);
			usv_csv_free(ca);
			usv_csv_free(cb);
			return 1;
		}
		t[0] = t[1] = t[2] = t[3] = 0;
		for (int i = 0; i < na; i++)
			t[pa[i].correct ? 0 : 1]++;
		for (int i = 0; i < nb; i++)
			t[pb[i].correct ? 2 : 3]++;
		for (int i = 0, j = 0; i < na && j < nb;) {
			int c = strcmp(pa[i].file, pb[j].file);
			if (c < 0) {
				i++;
			} else if (c > 0) {
				j++;
			} else {
				npaired++;
				mb += pa[i].correct && !pb[j].correct;
				mc += !pa[i].correct && pb[j].correct;
				i++;
				j++;
			}
		}
		if (npaired > 0 && !usv_mcnemar(mb, mc, yates, &mchi, &mp))
			have_mc = 1;
		free(pa);
		free(pb);
		usv_csv_free(ca);
		usv_csv_free(cb);
	} else {
		usage(stderr);
		return 2;
	}
	if (usv_chisq_2x2(t, yates, &chi2, &p)) {
		fprintf(stderr, "usview compare: the table has an empty row or column\n");
		return 1;
	}
	double acc_a = t[0] / (t[0] + t[1]), acc_b = t[2] / (t[2] + t[3]);
	if (json) {
		printf("{\"test\":\"chisq\",\"yates\":%s,\"chi2\":%.10g,\"df\":1,\"p\":%.10g,"
		       "\"table\":[%.0f,%.0f,%.0f,%.0f],\"acc_a\":%.10g,\"acc_b\":%.10g",
		       yates ? "true" : "false", chi2, p, t[0], t[1], t[2], t[3], acc_a, acc_b);
		if (have_mc)
			printf(
			    ",\"mcnemar\":{\"n\":%d,\"b\":%.0f,\"c\":%.0f,\"chi2\":%.10g,\"df\":1,"
			    "\"p\":%.10g}",
			    npaired, mb, mc, mchi, mp);
		printf("}\n");
	} else {
		printf("            correct  incorrect  accuracy\n");
		printf("A        %10.0f %10.0f  %.4f\n", t[0], t[1], acc_a);
		printf("B        %10.0f %10.0f  %.4f\n", t[2], t[3], acc_b);
		printf("Pearson's chi-squared test%s: X-squared = %.5g, df = 1, p-value = %.4g\n",
		       yates ? " with Yates' continuity correction" : "", chi2, p);
		if (have_mc)
			printf("McNemar's test on %d paired images (A only correct %.0f, B only "
			       "correct %.0f): chi-squared = %.5g, df = 1, p-value = %.4g\n",
			       npaired, mb, mc, mchi, mp);
	}
	return 0;
}
