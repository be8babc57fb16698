/*
 * NAME
 *	test_ocr.c - reading burned-in text lines with Tesseract
 *
 * DESCRIPTION
 *	Synthetic: 50 typical annotation lines drawn with the phantom's 5 x 7
 *	bitmap font (cli/font5x7.c) at scale 2 and 3, grey and RGB, next to
 *	a box of speckle, with a bright grey bar and a sector edge inside
 *	the box that is read; the text read back is compared with the drawn
 *	string after upper-casing and collapsing spaces (the font has no
 *	lower case). At least 40 of 50 must match exactly at each scale, and
 *	every line must be found, in order, with a box around its ink.
 *	Several lines in one box come back top to bottom. A black box gives
 *	no line and does not call Tesseract. Argument checks; a missing
 *	tessdata folder.
 *	Real files ($USV_SHARED_DIR/data/dicom/us): the LOGIQ 700 title
 *	line of US1_UNCI reads "LYMPH NODE"; the EPIQ right strip reads the
 *	heart rate "65bpm"; the Acuson right strip reads "HUMERAL"; the top
 *	banner of the Acuson and Sequoia frames does hold the patient's name
 *	(read here to show the check below can fail), and no annotation
 *	area of those frames reads any part of it. fo-dicom GH364 (iU22):
 *	"Pancreas TR" and "Dist 1.43" are read, two crosses found (its
 *	pixels through pydicom: usview refuses that malformed file).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "phantom.h"
#include "usv/annot.h"
#include "usv/dcm_image.h"
#include "usv/dicom.h"
#include "usv/image.h"
#include "usv/ocr.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static usv_ocr *ocr;

static const char *shared(void)
{
	const char *s = getenv("USV_SHARED_DIR");
	return s ? s : "../shared";
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Upper case, runs of spaces to one, trimmed. */
static void norm(const char *s, char *d, size_t n)
{
	size_t j = 0;
	int sp = 0;
	for (; *s && j + 1 < n; s++) {
		if (isspace((unsigned char)*s)) {
			sp = j > 0;
			continue;
		}
		if (sp && j + 2 < n)
			d[j++] = ' ';
		sp = 0;
		d[j++] = (char)toupper((unsigned char)*s);
	}
	d[j] = 0;
}

static const char *strings[] = {
    "LT KIDNEY LONG",
    "RT KIDNEY LONG",
    "LT KIDNEY TRANS",
    "RT KIDNEY TRANS",
    "GALLBLADDER",
    "GB LONG",
    "GB TRANS",
    "RT LIVER TRANS",
    "RT LIVER LONG",
    "LT LIVER LONG",
    "LT LIVER TRANS",
    "SPLEEN",
    "SPLEEN LONG",
    "PANCREAS",
    "PANCREAS TR",
    "PANCREAS HEAD",
    "D1 3.2 CM",
    "D2 11.4 CM",
    "DIST 1.43 CM",
    "VOL 45.6 ML",
    "L 10.2 CM",
    "W 4.8 CM",
    "H 5.1 CM",
    "CBD 0.4 CM",
    "AORTA",
    "IVC",
    "PORTAL VEIN",
    "MPV",
    "HEPATIC VEINS",
    "RUQ",
    "LUQ",
    "EPIGASTRIC",
    "RT KIDNEY UPPER",
    "LT KIDNEY LOWER",
    "MID LIVER",
    "LIVER 15.2 CM",
    "C5-1",
    "28HZ",
    "16CM",
    "GN 60",
    "2D 64",
    "TIS 0.4 MI 1.4",
    "FR 31",
    "DR 60",
    "ABDOMEN",
    "BLADDER",
    "LT RENAL",
    "RT RENAL",
    "SAG LIVER",
    "TRV PANCREAS",
};

enum { NSTR = sizeof strings / sizeof strings[0] };

/* A 640 x 120 frame: black; speckle in x 400..640; a bright bar and a
 * diagonal sector edge in the read box; the text at (20, 40). */
static usv_image *frame(int c, int scale, const char *text, unsigned seed)
{
	usv_image *img;
	if (usv_image_new(640, 120, c, &img) != 0)
		return NULL;
	memset(img->px, 0, (size_t)640 * 120 * c);
	uint8_t *g = calloc(640 * 120, 1);
	for (int y = 0; y < 120; y++)
		for (int x = 400; x < 640; x++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) % 256;
			g[y * 640 + x] = (uint8_t)(r * r / 300);
		}
	for (int y = 5; y < 115; y++)
		for (int x = 370; x < 382; x++)
			g[y * 640 + x] = 200; /* grey bar */
	for (int k = 0; k < 110; k++) {
		g[(5 + k) * 640 + 300 + k / 2] = 230; /* sector edge */
		g[(5 + k) * 640 + 301 + k / 2] = 230;
	}
	usv_phantom_text(g, 640, 120, 20, 40, scale, 255, text);
	for (size_t i = 0; i < (size_t)640 * 120; i++)
		for (int ch = 0; ch < c; ch++)
			img->px[i * c + ch] = (ch == 2 && c == 3 && g[i] == 255) ? 40 : g[i];
	free(g);
	return img;
}

static void test_synthetic(void **state)
{
	(void)state;
	for (int scale = 2; scale <= 3; scale++) {
		int exact = 0, nl = 0;
		double t = 0;
		for (int i = 0; i < NSTR; i++) {
			/* RGB text is yellow (blue low): max(R, G, B) sees it */
			usv_image *img = frame(i % 2 ? 3 : 1, scale, strings[i], (unsigned)i);
			assert_non_null(img);
			usv_box box = {0, 0, 400, 120};
			usv_ocr_line lines[4];
			size_t n = 0;
			char err[256];
			double t0 = now();
			assert_int_equal(
			    usv_ocr_read_box(ocr, img, &box, lines, 4, &n, err, sizeof err), 0);
			t += now() - t0;
			assert_int_equal(n, 1);
			nl += (int)n;
			/* the box holds the ink: x 20.., y 40..40 + 7 * scale */
			assert_true(lines[0].box.x <= 20 && lines[0].box.y <= 40);
			assert_true(lines[0].box.x + lines[0].box.w >=
			            20 + (int)(6 * strlen(strings[i]) - 1) * scale);
			assert_true(lines[0].box.y + lines[0].box.h >= 40 + 7 * scale);
			assert_true(lines[0].box.x + lines[0].box.w <= 400);
			assert_in_range(lines[0].conf, 0, 100);
			char got[USV_OCR_LINE_MAX], want[USV_OCR_LINE_MAX];
			norm(lines[0].text, got, sizeof got);
			norm(strings[i], want, sizeof want);
			if (strcmp(got, want) == 0)
				exact++;
			else
				print_message("scale %d: line %d read differently\n", scale, i);
			usv_image_free(img);
		}
		print_message("scale %d: %d/%d exact, %.2f ms per line\n", scale, exact, NSTR,
		              1e3 * t / nl);
		/* the misreadings are the font's own ambiguities: its zero is
		 * slashed (read as 6 or 8) and its V has a round bottom (U) */
		assert_true(exact >= 40);
	}
}

static void test_lines_order(void **state)
{
	(void)state;
	usv_image *img;
	assert_int_equal(usv_image_new(300, 200, 1, &img), 0);
	memset(img->px, 0, 300 * 200);
	usv_phantom_text(img->px, 300, 200, 10, 20, 2, 255, "SPLEEN");
	usv_phantom_text(img->px, 300, 200, 10, 60, 2, 255, "LONG");
	usv_phantom_text(img->px, 300, 200, 10, 100, 2, 240, "D1 3.2 CM");
	usv_ocr_line lines[8];
	size_t n;
	usv_box box = {0, 0, 300, 200};
	assert_int_equal(usv_ocr_read_box(ocr, img, &box, lines, 8, &n, NULL, 0), 0);
	assert_int_equal(n, 3);
	assert_true(lines[0].box.y < lines[1].box.y && lines[1].box.y < lines[2].box.y);
	char got[USV_OCR_LINE_MAX];
	norm(lines[0].text, got, sizeof got);
	assert_string_equal(got, "SPLEEN");
	norm(lines[1].text, got, sizeof got);
	assert_string_equal(got, "LONG");
	norm(lines[2].text, got, sizeof got);
	assert_string_equal(got, "D1 3.2 CM");
	/* max 2: the first two */
	assert_int_equal(usv_ocr_read_box(ocr, img, &box, lines, 2, &n, NULL, 0), 0);
	assert_int_equal(n, 2);
	/* a box offset inside the image: boxes in image coordinates */
	usv_box sub = {5, 50, 200, 40};
	assert_int_equal(usv_ocr_read_box(ocr, img, &sub, lines, 8, &n, NULL, 0), 0);
	assert_int_equal(n, 1);
	assert_true(lines[0].box.x >= 5 && lines[0].box.y >= 50);
	assert_true(lines[0].box.y <= 60 && lines[0].box.y + lines[0].box.h >= 74);
	norm(lines[0].text, got, sizeof got);
	assert_string_equal(got, "LONG");
	/* black: nothing, fast */
	memset(img->px, 0, 300 * 200);
	double t0 = now();
	assert_int_equal(usv_ocr_read_box(ocr, img, &box, lines, 8, &n, NULL, 0), 0);
	assert_true(now() - t0 < 0.05);
	assert_int_equal(n, 0);
	usv_image_free(img);
}

/* Reads img in full with o: the lines' upper-cased texts into got. */
static size_t read_all(usv_ocr *o, const usv_image *img, usv_ocr_line *lines, size_t max)
{
	usv_box box = {0, 0, img->w, img->h};
	size_t n = 0;
	char err[256];
	assert_int_equal(usv_ocr_read_box(o, img, &box, lines, max, &n, err, sizeof err), 0);
	for (size_t i = 0; i < n; i++) {
		char t[USV_OCR_LINE_MAX];
		norm(lines[i].text, t, sizeof t);
		memcpy(lines[i].text, t, sizeof t);
	}
	return n;
}

static void draw_lines(usv_image *img, int x, int y, const char *const *text, size_t n)
{
	memset(img->px, 0, (size_t)img->w * img->h);
	for (size_t i = 0; i < n; i++)
		usv_phantom_text(img->px, img->w, img->h, x, y + 30 * (int)i, 2, 255, text[i]);
}

/* The line cache: a line drawn again (elsewhere in the frame) is answered
 * from the cache with what Tesseract read the first time and the box of
 * the new frame; a line one glyph apart is read again; the least recently
 * used line leaves first. A fresh engine reading the second frame gives
 * the same texts and confidences as the cached answers. */
static void test_cache(void **state)
{
	(void)state;
	usv_ocr *o = NULL, *fresh = NULL;
	char err[256];
	size_t hits = 99, misses = 99;
	usv_ocr_cache_stats(NULL, &hits, &misses);
	assert_int_equal(hits, 0);
	assert_int_equal(misses, 0);
	assert_int_equal(usv_ocr_new(NULL, &o, err, sizeof err), 0);
	assert_int_equal(usv_ocr_new(NULL, &fresh, err, sizeof err), 0);
	usv_image *img;
	assert_int_equal(usv_image_new(320, 140, 1, &img), 0);
	usv_ocr_line a[8], b[8], c[8];

	static const char *const first[] = {"FR 31", "ABD GEN", "LT KIDNEY LONG"};
	draw_lines(img, 10, 10, first, 3);
	assert_int_equal(read_all(o, img, a, 8), 3);
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 0);
	assert_int_equal(misses, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(a[i].text, first[i]);

	/* moved by (37, 21), the last line one glyph different */
	static const char *const second[] = {"FR 31", "ABD GEN", "LT KIDNEY TRANS"};
	draw_lines(img, 47, 31, second, 3);
	assert_int_equal(read_all(o, img, b, 8), 3);
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 2);
	assert_int_equal(misses, 4);
	assert_int_equal(read_all(fresh, img, c, 8), 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(b[i].text, second[i]);
		assert_string_equal(b[i].text, c[i].text);
		assert_int_equal(b[i].conf, c[i].conf);
		assert_memory_equal(&b[i].box, &c[i].box, sizeof b[i].box);
		if (i < 2) {
			assert_int_equal(b[i].box.x, a[i].box.x + 37);
			assert_int_equal(b[i].box.y, a[i].box.y + 21);
			assert_int_equal(b[i].conf, a[i].conf);
		}
	}
	/* "FR 31" to "FR 34": another image, read by Tesseract */
	static const char *const third[] = {"FR 34"};
	draw_lines(img, 10, 10, third, 1);
	assert_int_equal(read_all(o, img, b, 8), 1);
	assert_string_equal(b[0].text, "FR 34");
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 2);
	assert_int_equal(misses, 5);

	/* USV_OCR_CACHE_LINES other lines push the first ones out; "ABD GEN",
	 * read again on the way, stays */
	size_t m0 = misses;
	for (int i = 0; i < USV_OCR_CACHE_LINES; i += 4) {
		char t[4][16];
		const char *p[4];
		for (int k = 0; k < 4; k++) {
			snprintf(t[k], sizeof t[k], "GN %d", 100 + i + k);
			p[k] = t[k];
		}
		draw_lines(img, 10, 10, p, 4);
		assert_int_equal(read_all(o, img, b, 8), 4);
		if (i == USV_OCR_CACHE_LINES / 2) {
			static const char *const keep[] = {"ABD GEN"};
			draw_lines(img, 10, 10, keep, 1);
			assert_int_equal(read_all(o, img, b, 8), 1);
		}
	}
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(misses - m0, USV_OCR_CACHE_LINES);
	assert_int_equal(hits, 3);
	draw_lines(img, 10, 10, second, 3);
	assert_int_equal(read_all(o, img, b, 8), 3);
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 4); /* ABD GEN */
	assert_int_equal(misses - m0, USV_OCR_CACHE_LINES + 2);
	usv_image_free(img);
	usv_ocr_free(o);
	usv_ocr_free(fresh);
}

/* The word cache (usv_ocr_set_word_cache): lines made of words read
 * before, in other lines and at other places, are answered without
 * Tesseract, with the texts a fresh engine reads; a line with a new word
 * is read by Tesseract. Off by default: the same frames then all miss. */
static void test_word_cache(void **state)
{
	(void)state;
	usv_ocr *o = NULL, *fresh = NULL, *plain = NULL;
	char err[256];
	size_t hits = 0, misses = 0;
	assert_int_equal(usv_ocr_new(NULL, &o, err, sizeof err), 0);
	assert_int_equal(usv_ocr_new(NULL, &fresh, err, sizeof err), 0);
	assert_int_equal(usv_ocr_new(NULL, &plain, err, sizeof err), 0);
	assert_int_equal(usv_ocr_set_word_cache(o, 1), 0);
	assert_int_equal(usv_ocr_set_word_cache(NULL, 1), -EINVAL);
	usv_image *img;
	assert_int_equal(usv_image_new(360, 140, 1, &img), 0);
	usv_ocr_line a[8], b[8];

	static const char *const first[] = {"FR 31", "ABD GEN", "LT KIDNEY LONG"};
	draw_lines(img, 10, 10, first, 3);
	assert_int_equal(read_all(o, img, a, 8), 3);
	assert_int_equal(read_all(plain, img, b, 8), 3);
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 0);
	assert_int_equal(misses, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(a[i].text, first[i]);

	/* the same words in other lines, elsewhere */
	static const char *const second[] = {"GEN 31", "LONG LT KIDNEY", "FR ABD"};
	draw_lines(img, 43, 17, second, 3);
	assert_int_equal(read_all(o, img, a, 8), 3);
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 3);
	assert_int_equal(misses, 3);
	assert_int_equal(read_all(fresh, img, b, 8), 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(a[i].text, second[i]);
		assert_string_equal(a[i].text, b[i].text);
		assert_memory_equal(&a[i].box, &b[i].box, sizeof a[i].box);
	}
	/* a new word: Tesseract */
	static const char *const third[] = {"LT KIDNEY TRANS"};
	draw_lines(img, 10, 10, third, 1);
	assert_int_equal(read_all(o, img, a, 8), 1);
	assert_string_equal(a[0].text, "LT KIDNEY TRANS");
	usv_ocr_cache_stats(o, &hits, &misses);
	assert_int_equal(hits, 3);
	assert_int_equal(misses, 4);

	/* off (the default): the second frame is read by Tesseract */
	draw_lines(img, 43, 17, second, 3);
	assert_int_equal(read_all(plain, img, b, 8), 3);
	usv_ocr_cache_stats(plain, &hits, &misses);
	assert_int_equal(hits, 0);
	assert_int_equal(misses, 6);
	usv_image_free(img);
	usv_ocr_free(o);
	usv_ocr_free(fresh);
	usv_ocr_free(plain);
}

static void test_args(void **state)
{
	(void)state;
	usv_image *img;
	assert_int_equal(usv_image_new(100, 50, 3, &img), 0);
	memset(img->px, 0, 100 * 50 * 3);
	usv_ocr_line lines[2];
	size_t n = 7;
	char err[256];
	usv_box out = {90, 0, 20, 10}, ok = {0, 0, 100, 50}, empty = {0, 0, 0, 10};
	assert_int_equal(usv_ocr_read_box(ocr, img, &out, lines, 2, &n, err, sizeof err), -EINVAL);
	assert_int_equal(n, 0);
	assert_int_equal(usv_ocr_read_box(ocr, img, &empty, lines, 2, &n, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(usv_ocr_read_box(NULL, img, &ok, lines, 2, &n, err, sizeof err), -EINVAL);
	assert_int_equal(usv_ocr_read_box(ocr, NULL, &ok, lines, 2, &n, err, sizeof err), -EINVAL);
	assert_int_equal(usv_ocr_read_box(ocr, img, &ok, NULL, 2, &n, err, sizeof err), -EINVAL);
	assert_int_equal(usv_ocr_read_box(ocr, img, &ok, lines, 2, NULL, err, sizeof err), -EINVAL);
	img->c = 2;
	assert_int_equal(usv_ocr_read_box(ocr, img, &ok, lines, 2, &n, err, sizeof err), -EINVAL);
	img->c = 3;
	usv_image_free(img);
	usv_ocr *o = (usv_ocr *)1;
	assert_int_equal(usv_ocr_new("/nonexistent/tessdata", &o, err, sizeof err), -ENOENT);
	assert_null(o);
	assert_non_null(strstr(err, "/nonexistent/tessdata/eng.traineddata"));
	assert_int_equal(usv_ocr_new(NULL, NULL, err, sizeof err), -EINVAL);
	usv_ocr_free(NULL);
}

static usv_image *load(const char *name, usv_crop_attrs *a, usv_box *us, usv_dcm **hp)
{
	char path[PATH_MAX], err[512];
	snprintf(path, sizeof path, "%s/data/dicom/us/%s", shared(), name);
	usv_dcm *h = NULL;
	if (usv_dcm_open(path, &h, err, sizeof err) != 0) {
		print_error("%s\n", err);
		return NULL;
	}
	const usv_dcm_info *in = usv_dcm_get_info(h);
	usv_image *img = NULL;
	if (usv_dcm_decode_frame(h, 0, &img, err, sizeof err) != 0) {
		print_error("%s\n", err);
		usv_dcm_free(h);
		return NULL;
	}
	*a = (usv_crop_attrs){in->manufacturer, in->model,   in->rows,
	                      in->cols,         in->regions, in->nregions};
	size_t ncr;
	const usv_crop_rule *cr = usv_crop_default_rules(&ncr);
	enum usv_crop_source src;
	assert_int_equal(usv_crop_choose(cr, ncr, a, us, &src, NULL), 0);
	*hp = h;
	return img;
}

/* Reads every annotation area; 1 if some line contains needle
 * (case-insensitive, spaces collapsed). */
static int areas_read(const usv_image *img, const usv_crop_attrs *a, const usv_box *us,
                      const char *needle, double *ms, int *lines_read)
{
	size_t nr, na;
	const usv_annot_rule *rules = usv_annot_default_rules(&nr);
	usv_box areas[USV_ANNOT_MAX_AREAS];
	assert_int_equal(usv_annot_areas(rules, nr, a, us, areas, USV_ANNOT_MAX_AREAS, &na), 0);
	char want[USV_OCR_LINE_MAX];
	norm(needle, want, sizeof want);
	int found = 0;
	double t0 = now();
	for (size_t i = 0; i < na; i++) {
		usv_ocr_line lines[USV_OCR_MAX_LINES];
		size_t n;
		assert_int_equal(
		    usv_ocr_read_box(ocr, img, &areas[i], lines, USV_OCR_MAX_LINES, &n, NULL, 0),
		    0);
		*lines_read += (int)n;
		for (size_t k = 0; k < n; k++) {
			char got[USV_OCR_LINE_MAX];
			norm(lines[k].text, got, sizeof got);
			if (strstr(got, want))
				found = 1;
		}
	}
	*ms = 1e3 * (now() - t0);
	return found;
}

static int box_reads(const usv_image *img, usv_box box, const char *needle)
{
	usv_ocr_line lines[USV_OCR_MAX_LINES];
	size_t n;
	assert_int_equal(usv_ocr_read_box(ocr, img, &box, lines, USV_OCR_MAX_LINES, &n, NULL, 0),
	                 0);
	char want[USV_OCR_LINE_MAX];
	norm(needle, want, sizeof want);
	for (size_t k = 0; k < n; k++) {
		char got[USV_OCR_LINE_MAX];
		norm(lines[k].text, got, sizeof got);
		if (strstr(got, want))
			return 1;
	}
	return 0;
}

static void test_real(void **state)
{
	(void)state;
	static const struct {
		const char *file;
		const char *reads;  /* some area reads this */
		const char *banner; /* the top banner reads this, no area does */
		const char *banner2;
	} cases[] = {
	    {"pydicom-data__US1_UNCI.dcm", "LYMPH NODE", NULL, NULL},
	    {"pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm", "65bpm", NULL, NULL},
	    {"pylibjpeg-data__JPEGExtended_3s_1f_u_08_08.dcm", "HUMERAL", "BERNARD", "SOPHIE"},
	    {"dcm4che__YBR_FULL-RLE.dcm", "Thyroid", "DOE", "JOHN"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		usv_crop_attrs a;
		usv_box us;
		usv_dcm *h = NULL;
		usv_image *img = load(cases[i].file, &a, &us, &h);
		assert_non_null(img);
		double ms;
		int nl = 0;
		int ok = areas_read(img, &a, &us, cases[i].reads, &ms, &nl);
		print_message("%s: %d lines in %.1f ms\n", cases[i].file, nl, ms);
		if (!ok)
			print_error("%s: no area reads the expected line\n", cases[i].file);
		assert_true(ok);
		if (cases[i].banner) {
			usv_box top = {0, 0, img->w, 24};
			assert_true(box_reads(img, top, cases[i].banner));
			assert_false(areas_read(img, &a, &us, cases[i].banner, &ms, &nl));
			assert_false(areas_read(img, &a, &us, cases[i].banner2, &ms, &nl));
		}
		usv_image_free(img);
		usv_dcm_free(h);
	}
}

/* fo-dicom GH364 (Philips iU22, 1024 x 768, no ultrasound regions): the
 * view label "Pancreas TR" under the image and the measurement
 * "Dist 1.43 cm" bottom left, both in the iU22 rule's boxes, and two '+'
 * calipers (the search reports 4 marks in the box today). usview's DICOM reader refuses this file
 * on purpose (an item tag stands at data set level: tests/integration/ingest/test_decode.py), so
 * its pixels come through pydicom, as a PNG written by Debian's python3, and the frame attributes
 * are the file's own. */
static void test_gh364(void **state)
{
	(void)state;
	char png[] = "/tmp/usv-test-ocr-gh364-XXXXXX", cmd[2 * PATH_MAX], err[512];
	int fd = mkstemp(png);
	assert_true(fd >= 0);
	close(fd);
	snprintf(cmd, sizeof cmd,
	         "/usr/bin/python3 -c 'import sys, pydicom; from PIL import Image; "
	         "Image.fromarray(pydicom.dcmread(sys.argv[1]).pixel_array).save(sys.argv[2], "
	         "\"PNG\")' '%s/data/dicom/us/fo-dicom__GH364.dcm' '%s'",
	         shared(), png);
	assert_int_equal(system(cmd), 0);
	usv_image *img = NULL;
	int rc = usv_image_load(png, &img, err, sizeof err);
	unlink(png);
	assert_int_equal(rc, 0);
	assert_int_equal(img->w, 1024);
	assert_int_equal(img->h, 768);
	usv_crop_attrs a = {"Philips Medical Systems", "iU22", 768, 1024, NULL, 0};
	usv_box us;
	size_t ncr;
	const usv_crop_rule *cr = usv_crop_default_rules(&ncr);
	enum usv_crop_source src;
	assert_int_equal(usv_crop_choose(cr, ncr, &a, &us, &src, NULL), 0);
	double ms;
	int nl = 0;
	assert_true(areas_read(img, &a, &us, "Pancreas TR", &ms, &nl));
	assert_true(areas_read(img, &a, &us, "Dist 1.43", &ms, &nl));
	usv_caliper_report r;
	assert_int_equal(usv_annot_find_calipers(img, &us, &r), 0);
	/* the two calipers, at least: the measurement excludes the image */
	assert_true(r.crosses >= 2);
	usv_image_free(img);
}

static int setup(void **state)
{
	(void)state;
	char err[512];
	if (usv_dcm_global_init(err, sizeof err) != 0)
		return -1;
	if (usv_ocr_new(NULL, &ocr, err, sizeof err) != 0) {
		print_error("%s\n", err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	usv_ocr_free(ocr);
	usv_dcm_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_args),       cmocka_unit_test(test_lines_order),
	    cmocka_unit_test(test_synthetic),  cmocka_unit_test(test_real),
	    cmocka_unit_test(test_gh364),      cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_word_cache),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
