/*
 * NAME
 *	harvest_report.c - the HTML report of usview harvest
 *
 * DESCRIPTION
 *	One self-contained HTML file (inline CSS, thumbnails as base64 PNG
 *	data URIs, no script, no external reference): the counts, the classes
 *	and sources of the labels, the annotation strings that named no view
 *	(normalised strings from annotation areas and coded attributes only:
 *	never Image Comments or descriptions, which may hold identifiers),
 *	the exclusions by reason, a few crop thumbnails per class (the
 *	network's input, downscaled) and the files that could not be read.
 *	Every section is a <h2 id="..."> followed by a table with
 *	class="t"; counts sit in <td class="n"> cells.
 */
#include "dataset.h"
#include "harvest.h"
#include "usv/html.h"

#include "usv/err.h"
#include "usv/image.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HV_REPORT_MAX_UNMAPPED 300 /* rows of the unmapped-strings table */
#define HV_REPORT_MAX_REASONS 100
#define HV_REPORT_MAX_FAILED 500
#define HV_THUMB 128

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

static unsigned char *slurp(const char *path, size_t *len, size_t max)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char *b = malloc(max);
	size_t n = b ? fread(b, 1, max, f) : 0;
	fclose(f);
	if (!b || n == max) {
		free(b);
		return NULL;
	}
	*len = n;
	return b;
}

/* The network's input of a file (the same pipeline as train), downscaled,
 * as an inline PNG; 0 or an error. */
static int thumbnail(FILE *f, const char *path, const char *title)
{
	usv_image *im = NULL;
	char err[USV_ERRBUF];
	int rc = usv_ds_load_image(path, HV_THUMB, &im, err, sizeof err);
	if (rc)
		return rc;
	char tmp[] = "/tmp/usv-harvest-XXXXXX";
	int fd = mkstemp(tmp);
	if (fd < 0) {
		usv_image_free(im);
		return -errno;
	}
	close(fd);
	rc = usv_image_write_png(im, tmp, err, sizeof err);
	usv_image_free(im);
	size_t n = 0;
	unsigned char *png = rc ? NULL : slurp(tmp, &n, 4u << 20);
	unlink(tmp);
	if (!png)
		return rc ? rc : -EIO;
	fprintf(f, "<img class=\"th\" width=\"%d\" height=\"%d\" title=\"", HV_THUMB, HV_THUMB);
	usv_html_esc(f, title);
	fputs("\" alt=\"crop\" src=\"data:image/png;base64,", f);
	base64(f, png, n);
	fputs("\">", f);
	free(png);
	return 0;
}

/* A string with a count, for the frequency tables. */
typedef struct tally {
	char *key;
	char *extra; /* source or an example path */
	long n, n2;
} tally;

typedef struct tallies {
	tally *t;
	size_t n, cap;
} tallies;

static tally *tally_get(tallies *ts, const char *key, const char *extra)
{
	for (size_t i = 0; i < ts->n; i++)
		if (!strcmp(ts->t[i].key, key))
			return &ts->t[i];
	if (ts->n == ts->cap) {
		size_t nc = ts->cap ? 2 * ts->cap : 64;
		tally *nt = realloc(ts->t, nc * sizeof *nt);
		if (!nt)
			return NULL;
		ts->t = nt;
		ts->cap = nc;
	}
	tally *t = &ts->t[ts->n];
	t->key = strdup(key);
	t->extra = strdup(extra ? extra : "");
	t->n = t->n2 = 0;
	if (!t->key || !t->extra) {
		free(t->key);
		free(t->extra);
		return NULL;
	}
	ts->n++;
	return t;
}

static void tallies_free(tallies *ts)
{
	for (size_t i = 0; i < ts->n; i++) {
		free(ts->t[i].key);
		free(ts->t[i].extra);
	}
	free(ts->t);
}

static int cmp_tally(const void *a, const void *b)
{
	const tally *x = a, *y = b;
	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* The exclusion reason with its numbers as '#' (one row per kind of reason). */
static void reason_key(const char *r, char *out, size_t len)
{
	size_t o = 0;
	for (; *r && o + 2 < len; r++) {
		if (isdigit((unsigned char)*r)) {
			while (isdigit((unsigned char)r[1]) ||
			       (r[1] == '.' && isdigit((unsigned char)r[2])))
				r++;
			out[o++] = '#';
		} else {
			out[o++] = *r;
		}
	}
	out[o] = 0;
}

static int in_csv(const hv_item *it)
{
	return it->state == HV_READ && !it->duplicate && !it->rec.excl_kind && it->rec.label[0];
}

static void row_n(FILE *f, const char *name, long n)
{
	fputs("<tr><td>", f);
	usv_html_esc(f, name);
	fprintf(f, "</td><td class=\"n\">%ld</td></tr>\n", n);
}

static void write_counts(FILE *f, const hv_report_in *in)
{
	long files = 0, lab = 0, excl = 0, unl = 0, dup = 0, fail = 0, nd = 0, cached = 0;
	for (size_t i = 0; i < in->n; i++) {
		const hv_item *it = &in->items[i];
		if (it->state == HV_NOT_DICOM) {
			nd++;
			continue;
		}
		files++;
		if (it->state != HV_READ)
			fail++;
		else if (it->duplicate)
			dup++;
		else if (it->rec.excl_kind)
			excl++;
		else if (it->rec.label[0])
			lab++;
		else
			unl++;
		cached += it->state == HV_READ && it->cached;
	}
	fputs("<h2 id=\"summary\">Summary</h2>\n<table class=\"t\" id=\"t-summary\">\n", f);
	row_n(f, "files", files);
	row_n(f, "labelled (in the CSV)", lab);
	row_n(f, "excluded", excl);
	row_n(f, "unlabelled", unl);
	row_n(f, "duplicates", dup);
	row_n(f, "unreadable", fail);
	row_n(f, "not DICOM (skipped)", nd);
	row_n(f, "from the cache", cached);
	fputs("</table>\n", f);
}

static void write_classes(FILE *f, const hv_report_in *in)
{
	size_t nc = usv_label_table_nclasses(in->table);
	fputs("<h2 id=\"classes\">Labels per class</h2>\n<table class=\"t\" id=\"t-classes\">"
	      "<tr><th>class</th><th>in the CSV</th><th>excluded</th></tr>\n",
	      f);
	long tot = 0, totx = 0;
	for (size_t k = 0; k < nc; k++) {
		const char *cls = usv_label_table_class(in->table, k);
		long n = 0, x = 0;
		for (size_t i = 0; i < in->n; i++) {
			const hv_item *it = &in->items[i];
			if (it->state != HV_READ || it->duplicate || strcmp(it->rec.label, cls))
				continue;
			if (it->rec.excl_kind)
				x++;
			else
				n++;
		}
		tot += n;
		totx += x;
		fputs("<tr><td>", f);
		usv_html_esc(f, cls);
		fprintf(f, "</td><td class=\"n\">%ld</td><td class=\"n\">%ld</td></tr>\n", n, x);
	}
	fprintf(f,
	        "<tr><td>total</td><td class=\"n\">%ld</td><td class=\"n\">%ld</td></tr>\n"
	        "</table>\n",
	        tot, totx);

	tallies src = {0};
	for (size_t i = 0; i < in->n; i++)
		if (in_csv(&in->items[i])) {
			tally *t = tally_get(&src, in->items[i].rec.source, NULL);
			if (t)
				t->n++;
		}
	qsort(src.t, src.n, sizeof *src.t, cmp_tally);
	fputs("<h2 id=\"sources\">Labels per source</h2>\n<table class=\"t\" id=\"t-sources\">"
	      "<tr><th>source</th><th>images</th></tr>\n",
	      f);
	for (size_t i = 0; i < src.n; i++)
		row_n(f, src.t[i].key, src.t[i].n);
	fputs("</table>\n", f);
	tallies_free(&src);
}

static void write_unmapped(FILE *f, const hv_report_in *in)
{
	tallies ts = {0};
	for (size_t i = 0; i < in->n; i++) {
		const hv_item *it = &in->items[i];
		if (it->state != HV_READ || it->duplicate || !it->rec.unmapped[0])
			continue;
		const char *p = it->rec.unmapped;
		while (*p) {
			const char *e = strchr(p, '\n');
			size_t len = e ? (size_t)(e - p) : strlen(p);
			char line[256];
			snprintf(line, sizeof line, "%.*s", (int)len, p);
			/* source|match|text */
			char *b1 = strchr(line, '|'), *b2 = b1 ? strchr(b1 + 1, '|') : NULL;
			if (b1 && b2) {
				*b1 = 0;
				char key[600];
				snprintf(key, sizeof key, "%s\t%s\t%s", b2 + 1, line,
				         b1[1] == '3' ? "ambiguous" : "unmapped");
				tally *t = tally_get(&ts, key, NULL);
				if (t) {
					t->n++;
					t->n2 += !it->rec.label[0];
				}
			}
			p += len;
			if (*p)
				p++;
		}
	}
	qsort(ts.t, ts.n, sizeof *ts.t, cmp_tally);
	fprintf(f,
	        "<h2 id=\"unmapped\">Unmapped annotation strings</h2>\n<p>%zu distinct strings "
	        "(normalised) from annotation areas and coded attributes that named no single "
	        "view; add the useful ones to the view table (--views).</p>\n"
	        "<table class=\"t\" id=\"t-unmapped\"><tr><th>text</th><th>source</th>"
	        "<th>match</th><th>images</th><th>of them unlabelled</th></tr>\n",
	        ts.n);
	for (size_t i = 0; i < ts.n && i < HV_REPORT_MAX_UNMAPPED; i++) {
		char *k = ts.t[i].key, *s1 = strchr(k, '\t'),
		     *s2 = s1 ? strchr(s1 + 1, '\t') : NULL;
		if (!s1 || !s2)
			continue;
		*s1 = *s2 = 0;
		fputs("<tr><td class=\"s\">", f);
		usv_html_esc(f, k);
		fputs("</td><td>", f);
		usv_html_esc(f, s1 + 1);
		fputs("</td><td>", f);
		usv_html_esc(f, s2 + 1);
		fprintf(f, "</td><td class=\"n\">%ld</td><td class=\"n\">%ld</td></tr>\n",
		        ts.t[i].n, ts.t[i].n2);
	}
	fputs("</table>\n", f);
	tallies_free(&ts);
}

static void write_exclusions(FILE *f, const hv_report_in *in)
{
	tallies ts = {0};
	for (size_t i = 0; i < in->n; i++) {
		const hv_item *it = &in->items[i];
		if (it->state != HV_READ || it->duplicate || !it->rec.excl_kind)
			continue;
		char key[300];
		reason_key(it->rec.reason, key, sizeof key);
		tally *t = tally_get(&ts, key, it->shown ? it->shown : it->path);
		if (t)
			t->n++;
	}
	qsort(ts.t, ts.n, sizeof *ts.t, cmp_tally);
	fputs("<h2 id=\"exclusions\">Exclusions by reason</h2>\n<table class=\"t\" "
	      "id=\"t-exclusions\"><tr><th>reason (# = a number)</th><th>images</th>"
	      "<th>example</th></tr>\n",
	      f);
	for (size_t i = 0; i < ts.n && i < HV_REPORT_MAX_REASONS; i++) {
		fputs("<tr><td>", f);
		usv_html_esc(f, ts.t[i].key);
		fprintf(f, "</td><td class=\"n\">%ld</td><td class=\"s\">", ts.t[i].n);
		usv_html_esc(f, ts.t[i].extra);
		fputs("</td></tr>\n", f);
	}
	fputs("</table>\n", f);
	tallies_free(&ts);
}

static void write_thumbs(FILE *f, const hv_report_in *in)
{
	size_t nc = usv_label_table_nclasses(in->table);
	fprintf(f,
	        "<h2 id=\"thumbnails\">Examples per class</h2>\n<p>The network's input (the "
	        "ultrasound box, resized), at most %d per class, %dx%d.</p>\n",
	        in->thumbs_per_class, HV_THUMB, HV_THUMB);
	for (size_t k = 0; k < nc; k++) {
		const char *cls = usv_label_table_class(in->table, k);
		int shown = 0;
		fputs("<div class=\"cls\"><h3>", f);
		usv_html_esc(f, cls);
		fputs("</h3>", f);
		for (size_t i = 0; i < in->n && shown < in->thumbs_per_class; i++) {
			const hv_item *it = &in->items[i];
			if (!in_csv(it) || strcmp(it->rec.label, cls))
				continue;
			if (!thumbnail(f, it->path, it->shown ? it->shown : it->path))
				shown++;
		}
		if (!shown)
			fputs("<p>(none)</p>", f);
		fputs("</div>\n", f);
	}
}

static void write_failed(FILE *f, const hv_report_in *in)
{
	long n = 0;
	fputs("<h2 id=\"unreadable\">Unreadable files</h2>\n<table class=\"t\" "
	      "id=\"t-unreadable\"><tr><th>file and reason</th></tr>\n",
	      f);
	for (size_t i = 0; i < in->n; i++) {
		const hv_item *it = &in->items[i];
		if (it->state != HV_FAILED)
			continue;
		if (++n > HV_REPORT_MAX_FAILED)
			continue;
		fputs("<tr><td class=\"s\">", f);
		usv_html_esc(f, it->error ? it->error : it->path);
		fputs("</td></tr>\n", f);
	}
	fputs("</table>\n", f);
	if (n > HV_REPORT_MAX_FAILED)
		fprintf(f, "<p>%ld more not shown.</p>\n", n - HV_REPORT_MAX_FAILED);
}

int hv_report_write(const char *path, const hv_report_in *in, char *errbuf, size_t errlen)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
		return usv_seterr(errbuf, errlen, -ENAMETOOLONG, "%s: path too long", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", tmp, strerror(errno));
	fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>usview harvest "
	      "report</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222;"
	      "background:#fff}table.t{border-collapse:collapse;margin-bottom:12px}"
	      "table.t td,table.t th{border:1px solid #bbb;padding:3px 8px;text-align:left}"
	      "td.n{text-align:right}td.s{font-family:monospace}th{background:#1f4e79;"
	      "color:#fff}h2{border-bottom:1px solid #ccc}.cls{display:inline-block;"
	      "vertical-align:top;margin:6px;padding:6px;border:1px solid #ddd}"
	      ".th{margin:2px;image-rendering:auto}</style></head><body>\n"
	      "<h1>usview harvest report</h1>\n<p>CSV: <b>",
	      f);
	usv_html_esc(f, in->csv);
	fputs("</b><br>view table: ", f);
	usv_html_esc(f, in->views ? in->views : "built-in (11 views)");
	fprintf(f, "<br>OCR: %s; %.1f s</p>\n", in->ocr ? "on" : "off", in->seconds);
	write_counts(f, in);
	write_classes(f, in);
	write_unmapped(f, in);
	write_exclusions(f, in);
	write_thumbs(f, in);
	write_failed(f, in);
	fputs("<p style=\"color:#777;font-size:11px\">Generated by usview harvest.</p>\n"
	      "</body></html>\n",
	      f);
	int bad = ferror(f);
	if (fclose(f) || bad) {
		unlink(tmp);
		return usv_seterr(errbuf, errlen, -EIO, "%s: write error", tmp);
	}
	if (rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
	}
	return 0;
}
