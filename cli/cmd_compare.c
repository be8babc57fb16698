/*
 * NAME
 *	cmd_compare.c - usview compare: do two classifiers differ in accuracy?
 *
 * SYNOPSIS
 *	usview compare PRED_A.csv PRED_B.csv [--no-correction] [--json]
 *	usview compare --counts CORRECT/TOTAL CORRECT/TOTAL [--json]
 *	usview compare --table a,b,c,d [--mcnemar] [--json]
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
 */
#include "cli.h"
#include "csv.h"
#include "opt.h"
#include "stats.h"

#include "usv/err.h"
#include "usv/parse.h"

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

static void usage(FILE *f)
{
	fprintf(f, "usage: usview compare PRED_A.csv PRED_B.csv [--no-correction] [--json]\n"
	           "       usview compare --counts CORRECT/TOTAL CORRECT/TOTAL [--json]\n"
	           "       usview compare --table a,b,c,d [--mcnemar] [--json]\n");
}

int usv_cmd_compare(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_NO_CORRECTION, OPT_MCNEMAR, OPT_COUNTS, OPT_TABLE };
	static const struct option opts[] = {
	    {"json", no_argument, NULL, OPT_JSON},
	    {"no-correction", no_argument, NULL, OPT_NO_CORRECTION},
	    {"mcnemar", no_argument, NULL, OPT_MCNEMAR},
	    {"counts", required_argument, NULL, OPT_COUNTS},
	    {"table", required_argument, NULL, OPT_TABLE},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	int json = 0, yates = 1, mcn_only = 0, opt;
	const char *counts[2] = {0}, *table = NULL, *files[2] = {0};
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
