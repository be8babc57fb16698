/*
 * Unit tests of the view vocabulary (usv/label_text.h): the built-in table
 * against the view keys of usv_view_lookup() and against label/views.yaml,
 * typed texts with synonyms, word orders, punctuation and OCR slips, texts
 * that must map to nothing, site files, YAML errors with their positions,
 * caps, NULL arguments and the measurement-text test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "usv/err.h"
#include "usv/label_text.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The keys of usv_view_lookup() (dicom/include/usv/dcm_result.h), in order. */
static const char *const view_keys[] = {
    "liver_left_long",
    "liver_left_trans",
    "liver_right_long",
    "liver_right_trans",
    "spleen",
    "pancreas",
    "kidney_left_long",
    "kidney_left_trans",
    "kidney_right_long",
    "kidney_right_trans",
    "gallbladder",
};
#define NVIEWS (sizeof view_keys / sizeof view_keys[0])

struct pos {
	const char *text, *key;
};

/* Texts that must map, and to what. */
static const struct pos positives[] = {
    /* every synonym of side, orientation and organ */
    {"LT KIDNEY LONG", "kidney_left_long"},
    {"LEFT KIDNEY LONG", "kidney_left_long"},
    {"L KIDNEY LONG", "kidney_left_long"},
    {"LFT KIDNEY LONG", "kidney_left_long"},
    {"RT KIDNEY LONG", "kidney_right_long"},
    {"RIGHT KIDNEY LONG", "kidney_right_long"},
    {"R KIDNEY LONG", "kidney_right_long"},
    {"RGT KIDNEY LONG", "kidney_right_long"},
    {"LT KIDNEY LONGITUDINAL", "kidney_left_long"},
    {"LT KIDNEY SAG", "kidney_left_long"},
    {"LT KIDNEY SAGITTAL", "kidney_left_long"},
    {"LT KIDNEY CORONAL", "kidney_left_long"},
    {"LT KIDNEY TRANS", "kidney_left_trans"},
    {"LT KIDNEY TRANSVERSE", "kidney_left_trans"},
    {"LT KIDNEY TRANSV", "kidney_left_trans"},
    {"LT KIDNEY TRV", "kidney_left_trans"},
    {"LT KIDNEY TRX", "kidney_left_trans"},
    {"LT KIDNEY AX", "kidney_left_trans"},
    {"LT KIDNEY AXIAL", "kidney_left_trans"},
    {"LT KIDNEY SHORT AXIS", "kidney_left_trans"},
    {"LT KID TRANS", "kidney_left_trans"},
    {"LT RENAL TRANS", "kidney_left_trans"},
    {"RT KIDNEY TRANS", "kidney_right_trans"},
    {"LIVER LT LONG", "liver_left_long"},
    {"LIV LT LONG", "liver_left_long"},
    {"LIVER LT TRANS", "liver_left_trans"},
    {"LIVER RT LONG", "liver_right_long"},
    {"LIVER RT TRANS", "liver_right_trans"},
    {"SPLEEN", "spleen"},
    {"SPL", "spleen"},
    {"SPLEEN LONG", "spleen"},
    {"SPLEEN TRANS", "spleen"},
    {"LT SPLEEN", "spleen"},
    {"LT SPLEEN LONG", "spleen"},
    {"PANCREAS", "pancreas"},
    {"PANC", "pancreas"},
    {"PANCREAS TRANS", "pancreas"},
    {"PANC LONG", "pancreas"},
    {"GALLBLADDER", "gallbladder"},
    {"GALL BLADDER", "gallbladder"},
    {"GB", "gallbladder"},
    {"GB LONG", "gallbladder"},
    {"GALL BLADDER TRANS", "gallbladder"},
    /* case and word order */
    {"sag liv rt", "liver_right_long"},
    {"Kidney Left Long", "kidney_left_long"},
    {"long kidney lt", "kidney_left_long"},
    {"TRANS LT LIVER", "liver_left_trans"},
    {"gall bladder", "gallbladder"},
    {"Gall-Bladder", "gallbladder"},
    /* punctuation, numbers and unknown words */
    {"LT. KIDNEY - LONG", "kidney_left_long"},
    {"Rt Kidney (Sag)", "kidney_right_long"},
    {"RT KIDNEY LONG 2", "kidney_right_long"},
    {"1. RT KIDNEY, LONG", "kidney_right_long"},
    {"RT KIDNEY UPPER POLE LONG", "kidney_right_long"},
    {"LIVER RT LOBE TRANS", "liver_right_trans"},
    {"GB NECK", "gallbladder"},
    {"PANCREAS HEAD", "pancreas"},
    {"  \tLT\tKIDNEY\nLONG  ", "kidney_left_long"},
    {"LT KIDNEY LONG LT", "kidney_left_long"}, /* a concept twice is one concept */
    {"L T KIDNEY LONG", "kidney_left_long"},   /* 'LT' read as 'L T' */
    /* OCR slips in words of 4 letters or more */
    {"LT KIDNFY LONG", "kidney_left_long"},
    {"GALLBLADOER", "gallbladder"},
    {"RT KIDNEY LONGITUDINA", "kidney_right_long"},
    {"LT KIDNEY L0NG", "kidney_left_long"},
    {"L1VER RT TRANS", "liver_right_trans"},
    {"LlVER RT TRANS", "liver_right_trans"},
    {"SPLEFN", "spleen"},
    {"PANCRAES", "pancreas"}, /* two letters swapped */
    {"GALL BLADOER", "gallbladder"},
    {"RIGHT KIDNEYS TRANSVERSE", "kidney_right_trans"},
    {"LEFTT KIDNEY SAGITAL", "kidney_left_long"},
    /* OCR confusions in words of 2 or 3 characters */
    {"LT KIO LONG", "kidney_left_long"},
    {"RT KI0 TRANS", "kidney_right_trans"},
    {"LT KIQ LONG", "kidney_left_long"},
    {"G8", "gallbladder"},
    {"6B LONG", "gallbladder"},
    {"LT KIDNEY TRU", "kidney_left_trans"},
    {"RT KIDNEY TRY", "kidney_right_trans"},
    {"L1V RT TRANS", "liver_right_trans"},
    {"LIU LT LONG", "liver_left_long"},
    {"SP1", "spleen"},
    {"5PL", "spleen"},
    {"1FT KIDNEY LONG", "kidney_left_long"},
    {"R6T KIDNEY SA6", "kidney_right_long"},
};
#define NPOS (sizeof positives / sizeof positives[0])

struct neg {
	const char *text;
	enum usv_label_match m;
};

/* Texts that must map to nothing. */
static const struct neg negatives[] = {
    {"LT RT KIDNEY LONG", USV_LABEL_AMBIGUOUS},
    {"LIVER SPLEEN", USV_LABEL_AMBIGUOUS},
    {"RT KIDNEY LIVER LONG", USV_LABEL_AMBIGUOUS},
    {"LT KIDNEY LONG TRANS", USV_LABEL_AMBIGUOUS},
    {"GB PANCREAS", USV_LABEL_AMBIGUOUS},
    {"RT SPLEEN", USV_LABEL_AMBIGUOUS}, /* a concept left over */
    {"KIDNEY", USV_LABEL_UNMAPPED},
    {"LT KIDNEY", USV_LABEL_UNMAPPED},
    {"KIDNEY LONG", USV_LABEL_UNMAPPED},
    {"LIVER LONG", USV_LABEL_UNMAPPED},
    {"LIVER", USV_LABEL_UNMAPPED},
    {"RUQ", USV_LABEL_UNMAPPED},
    {"AORTA", USV_LABEL_UNMAPPED},
    {"LYMPH NODE", USV_LABEL_UNMAPPED},
    {"BLADDER", USV_LABEL_UNMAPPED},
    {"GALL", USV_LABEL_UNMAPPED},
    /* short words: only OCR confusions, and 1/I/L not in two letters */
    {"IT KIDNEY LONG", USV_LABEL_UNMAPPED},
    {"1T KIDNEY LONG", USV_LABEL_UNMAPPED},
    {"LX KIDNEY LONG", USV_LABEL_UNMAPPED},
    {"RX KIDNEY LONG", USV_LABEL_UNMAPPED},
    {"KIT", USV_LABEL_UNMAPPED},
    {"LT KIX LONG", USV_LABEL_UNMAPPED},
    {"LT KIDNEY TRW", USV_LABEL_UNMAPPED},
    {"GO", USV_LABEL_UNMAPPED},
    {"G8B", USV_LABEL_UNMAPPED},
    {"K1O LT LONG", USV_LABEL_UNMAPPED}, /* two confusions */
    {"Q", USV_LABEL_UNMAPPED},
    {"LT KIDNEY LNG", USV_LABEL_UNMAPPED},
    {"LT KIDNEY LO", USV_LABEL_UNMAPPED},
    {"C5-1 28Hz 16cm", USV_LABEL_UNMAPPED},
    {"12 3.4", USV_LABEL_UNMAPPED},
    {"LT KIDNXX LONG", USV_LABEL_UNMAPPED}, /* two slips */
    {"", USV_LABEL_EMPTY},
    {"   \t\n", USV_LABEL_EMPTY},
    {"-- . ()", USV_LABEL_EMPTY},
};
#define NNEG (sizeof negatives / sizeof negatives[0])

static const char *src_dir(void)
{
	const char *s = getenv("USV_SOURCE_DIR");
	return s ? s : ".";
}

/* Writes text to a new temporary file; the caller unlinks and frees. */
static char *tmpfile_with(const char *text)
{
	char *path = strdup("/tmp/usv-views-XXXXXX.yaml");
	assert_non_null(path);
	int fd = mkstemps(path, 5);
	assert_true(fd >= 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static int load_text(const char *text, usv_label_table **t, char *err, size_t errlen)
{
	char *path = tmpfile_with(text);
	int r = usv_label_table_load(path, t, err, errlen);
	unlink(path);
	free(path);
	return r;
}

/* Loads text, expects r and an error "<file>:<line>:<col>: ..." naming why. */
static void expect_error(const char *text, int r, int line, int col, const char *why)
{
	char *path = tmpfile_with(text);
	char err[USV_ERRBUF], want[USV_ERRBUF];
	usv_label_table *t = (usv_label_table *)&err; /* must be reset to NULL */

	err[0] = 0;
	assert_int_equal(usv_label_table_load(path, &t, err, sizeof err), r);
	assert_null(t);
	snprintf(want, sizeof want, "%s:%d:%d: ", path, line, col);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, want);
	if (!strstr(err, why))
		fail_msg("error '%s' does not say '%s'", err, why);
	unlink(path);
	free(path);
}

static const char *map_key(const usv_label_table *t, const char *text, enum usv_label_match *m)
{
	int cls = 12345;
	assert_int_equal(usv_label_map(t, text, &cls, m, NULL, 0), 0);
	if (*m == USV_LABEL_MAPPED) {
		assert_true(cls >= 0);
		return usv_label_table_class(t, (size_t)cls);
	}
	assert_int_equal(cls, -1);
	return NULL;
}

static void check_positives(const usv_label_table *t)
{
	for (size_t i = 0; i < NPOS; i++) {
		enum usv_label_match m;
		const char *k = map_key(t, positives[i].text, &m);
		if (m != USV_LABEL_MAPPED || strcmp(k, positives[i].key))
			fail_msg("'%s': %s %s, expected %s", positives[i].text,
			         usv_label_match_name(m), k ? k : "-", positives[i].key);
	}
}

static void check_negatives(const usv_label_table *t)
{
	for (size_t i = 0; i < NNEG; i++) {
		enum usv_label_match m;
		const char *k = map_key(t, negatives[i].text, &m);
		if (m != negatives[i].m)
			fail_msg("'%s': %s %s, expected %s", negatives[i].text,
			         usv_label_match_name(m), k ? k : "-",
			         usv_label_match_name(negatives[i].m));
	}
}

static void test_default_classes(void **state)
{
	usv_label_table *t = NULL;
	assert_int_equal(usv_label_table_default(&t), 0);
	assert_int_equal(usv_label_table_nclasses(t), NVIEWS);
	for (size_t i = 0; i < NVIEWS; i++)
		assert_string_equal(usv_label_table_class(t, i), view_keys[i]);
	assert_null(usv_label_table_class(t, NVIEWS));
	assert_null(usv_label_table_class(t, (size_t)-1));
	/* no rules of its own: exactly the built-in annotation rules */
	size_t n = 99, nd = 0;
	const usv_annot_rule *r = usv_label_table_annot_rules(t, &n);
	const usv_annot_rule *d = usv_annot_default_rules(&nd);
	assert_int_equal(n, nd);
	for (size_t i = 0; i < n; i++)
		assert_memory_equal(&r[i], &d[i], sizeof r[i]);
	usv_label_table_free(t);
}

static void test_default_positives(void **state)
{
	usv_label_table *t = NULL;
	assert_int_equal(usv_label_table_default(&t), 0);
	check_positives(t);
	usv_label_table_free(t);
}

static void test_default_negatives(void **state)
{
	usv_label_table *t = NULL;
	assert_int_equal(usv_label_table_default(&t), 0);
	check_negatives(t);
	usv_label_table_free(t);
}

/* label/views.yaml says what the built-in table holds. */
static void test_views_yaml_is_default(void **state)
{
	char path[4096], err[USV_ERRBUF] = "";
	usv_label_table *def = NULL, *file = NULL;

	snprintf(path, sizeof path, "%s/label/views.yaml", src_dir());
	assert_int_equal(usv_label_table_default(&def), 0);
	if (usv_label_table_load(path, &file, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(usv_label_table_nclasses(file), usv_label_table_nclasses(def));
	for (size_t i = 0; i < usv_label_table_nclasses(def); i++)
		assert_string_equal(usv_label_table_class(file, i), usv_label_table_class(def, i));
	for (size_t i = 0; i < NPOS + NNEG; i++) {
		const char *text = i < NPOS ? positives[i].text : negatives[i - NPOS].text;
		enum usv_label_match m1, m2;
		const char *k1 = map_key(def, text, &m1), *k2 = map_key(file, text, &m2);
		assert_int_equal(m1, m2);
		if (k1 || k2)
			assert_string_equal(k1, k2);
	}
	check_positives(file);
	check_negatives(file);
	usv_label_table_free(file);

	/* the same file as an extension of the defaults adds nothing */
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char text[65536];
	size_t len = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[len] = 0;
	char *p = strstr(text, "\nreplace_defaults: true");
	assert_non_null(p);
	memcpy(p, "\nreplace_defaults: no  ", strlen("\nreplace_defaults: true"));
	if (load_text(text, &file, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(usv_label_table_nclasses(file), NVIEWS);
	check_positives(file);
	check_negatives(file);
	usv_label_table_free(file);
	usv_label_table_free(def);
}

static void test_norm(void **state)
{
	usv_label_table *t = NULL;
	char norm[64];
	int cls;
	enum usv_label_match m;

	assert_int_equal(usv_label_table_default(&t), 0);
	assert_int_equal(
	    usv_label_map(t, "  Lt. kidney - (long)  3.2cm", &cls, &m, norm, sizeof norm), 0);
	assert_string_equal(norm, "LT KIDNEY LONG 3 2CM");
	assert_int_equal(m, USV_LABEL_MAPPED);
	assert_string_equal(usv_label_table_class(t, (size_t)cls), "kidney_left_long");

	assert_int_equal(usv_label_map(t, "Lt. kidney long", &cls, &m, norm, 5), 0);
	assert_string_equal(norm, "LT K");
	assert_int_equal(m, USV_LABEL_MAPPED);
	assert_int_equal(usv_label_map(t, "aorta  prox", &cls, &m, norm, sizeof norm), 0);
	assert_string_equal(norm, "AORTA PROX");
	assert_int_equal(m, USV_LABEL_UNMAPPED);
	assert_int_equal(cls, -1);
	strcpy(norm, "junk");
	assert_int_equal(usv_label_map(t, " .. ", &cls, &m, norm, sizeof norm), 0);
	assert_string_equal(norm, "");
	assert_int_equal(m, USV_LABEL_EMPTY);
	assert_int_equal(usv_label_map(t, "GB", &cls, &m, norm, 1), 0);
	assert_string_equal(norm, "");

	/* a text longer than USV_LABEL_MAX_TEXT: only its start is read */
	char big[3 * USV_LABEL_MAX_TEXT];
	memset(big, ' ', sizeof big);
	memcpy(big, "SPLEEN", 6);
	memcpy(big + sizeof big - 12, "LIVER", 5);
	big[sizeof big - 1] = 0;
	assert_int_equal(usv_label_map(t, big, &cls, &m, norm, sizeof norm), 0);
	assert_int_equal(m, USV_LABEL_MAPPED);
	assert_string_equal(usv_label_table_class(t, (size_t)cls), "spleen");
	assert_string_equal(norm, "SPLEEN");
	usv_label_table_free(t);
}

static void test_nulls(void **state)
{
	usv_label_table *t = NULL;
	int cls = 7;
	enum usv_label_match m = USV_LABEL_MAPPED;
	char err[USV_ERRBUF];

	usv_label_table_free(NULL);
	assert_int_equal(usv_label_table_default(NULL), -EINVAL);
	assert_int_equal(usv_label_table_nclasses(NULL), 0);
	assert_null(usv_label_table_class(NULL, 0));
	assert_int_equal(usv_label_table_load(NULL, &t, err, sizeof err), -EINVAL);
	assert_int_equal(usv_label_table_load("/nonexistent/views.yaml", &t, err, sizeof err),
	                 -ENOENT);
	assert_null(t);
	assert_non_null(strstr(err, "/nonexistent/views.yaml"));
	assert_int_equal(usv_label_table_load("/tmp", &t, NULL, 0), -USV_ERR_LIMIT);
	assert_int_equal(usv_label_is_measurement_text(NULL), 0);
	assert_string_equal(usv_label_match_name(USV_LABEL_EMPTY), "empty");
	assert_string_equal(usv_label_match_name(USV_LABEL_MAPPED), "mapped");
	assert_string_equal(usv_label_match_name(USV_LABEL_UNMAPPED), "unmapped");
	assert_string_equal(usv_label_match_name(USV_LABEL_AMBIGUOUS), "ambiguous");

	assert_int_equal(usv_label_table_default(&t), 0);
	assert_int_equal(usv_label_map(NULL, "GB", &cls, &m, NULL, 0), -EINVAL);
	assert_int_equal(usv_label_map(t, "GB", NULL, &m, NULL, 0), -EINVAL);
	assert_int_equal(usv_label_map(t, "GB", &cls, NULL, NULL, 0), -EINVAL);
	assert_int_equal(usv_label_map(t, NULL, &cls, &m, NULL, 0), 0);
	assert_int_equal(m, USV_LABEL_EMPTY);
	assert_int_equal(cls, -1);
	usv_label_table_free(t);
}

static const char site_yaml[] = "# a site's additions\n"
                                "words:\n"
                                "  left: [it]\n"
                                "  aorta: [aorta, ao]\n"
                                "  bladder: [bladder, urinary bladder]\n"
                                "  lived: lived\n"
                                "  head: head\n"
                                "classes:\n"
                                "  aorta: [\"aorta\", [aorta, long], \"aorta trans\"]\n"
                                "  bladder: bladder\n"
                                "  pancreas: [\"pancreas head\"]\n"
                                "annotation_areas:\n"
                                "  - manufacturer: \"G.E. Medical Systems\"\n"
                                "    model: \"LOGIQ 700\"\n"
                                "    rows: 480\n"
                                "    cols: 640\n"
                                "    banner_px: 0\n"
                                "    boxes: [[150, 0, 340, 20], [0, 400, 100, 30]]\n"
                                "  - manufacturer: ~\n"
                                "    boxes: []\n";

static void test_site_file(void **state)
{
	usv_label_table *t = NULL;
	char err[USV_ERRBUF] = "";
	enum usv_label_match m;

	if (load_text(site_yaml, &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(usv_label_table_nclasses(t), NVIEWS + 2);
	for (size_t i = 0; i < NVIEWS; i++)
		assert_string_equal(usv_label_table_class(t, i), view_keys[i]);
	assert_string_equal(usv_label_table_class(t, NVIEWS), "aorta");
	assert_string_equal(usv_label_table_class(t, NVIEWS + 1), "bladder");
	check_positives(t); /* the defaults still hold */

	assert_string_equal(map_key(t, "AORTA", &m), "aorta");
	assert_string_equal(map_key(t, "Ao long", &m), "aorta");
	assert_string_equal(map_key(t, "TRANS AORTA", &m), "aorta");
	assert_string_equal(map_key(t, "AORTX PROX", &m), "aorta");
	assert_string_equal(map_key(t, "BLADDER", &m), "bladder");
	assert_string_equal(map_key(t, "urinary bladder", &m), "bladder");
	assert_string_equal(map_key(t, "GALL BLADDER", &m), "gallbladder");
	assert_string_equal(map_key(t, "GALL BLADOER", &m), "gallbladder");
	assert_string_equal(map_key(t, "BLADOER", &m), "bladder");
	assert_string_equal(map_key(t, "IT KIDNEY LONG", &m), "kidney_left_long");
	assert_string_equal(map_key(t, "PANC HEAD", &m), "pancreas");
	assert_null(map_key(t, "GB HEAD", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	/* "LIVEX" is one slip from LIVER and from LIVED: no guess */
	assert_null(map_key(t, "LIVEX RT TRANS", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	assert_null(map_key(t, "AORTA KIDNEY", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	assert_null(map_key(t, "LIVER TRANS", &m));
	assert_int_equal(m, USV_LABEL_UNMAPPED);

	size_t n = 0, nd = 0;
	const usv_annot_rule *r = usv_label_table_annot_rules(t, &n);
	const usv_annot_rule *d = usv_annot_default_rules(&nd);
	assert_int_equal(n, 2 + nd);
	assert_string_equal(r[0].manufacturer, "G.E. Medical Systems");
	assert_string_equal(r[0].model, "LOGIQ 700");
	assert_int_equal(r[0].rows, 480);
	assert_int_equal(r[0].cols, 640);
	assert_int_equal(r[0].banner_px, 0);
	assert_int_equal(r[0].nboxes, 2);
	assert_int_equal(r[0].boxes[0].x, 150);
	assert_int_equal(r[0].boxes[0].y, 0);
	assert_int_equal(r[0].boxes[0].w, 340);
	assert_int_equal(r[0].boxes[0].h, 20);
	assert_int_equal(r[0].boxes[1].y, 400);
	assert_int_equal(r[0].boxes[1].h, 30);
	assert_null(r[1].manufacturer);
	assert_null(r[1].model);
	assert_int_equal(r[1].rows, 0);
	assert_int_equal(r[1].banner_px, -1);
	assert_int_equal(r[1].nboxes, 0);
	for (size_t i = 0; i < nd; i++)
		assert_memory_equal(&r[2 + i], &d[i], sizeof r[0]);
	usv_label_table_free(t);

	/* replace_defaults: only the file's classes */
	static const char only[] = "replace_defaults: true\n"
	                           "words: {aorta: [aorta], left: [lt]}\n"
	                           "classes: {aorta: [aorta]}\n";
	if (load_text(only, &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(usv_label_table_nclasses(t), 1);
	assert_string_equal(map_key(t, "AORTA", &m), "aorta");
	assert_null(map_key(t, "LT KIDNEY LONG", &m));
	assert_int_equal(m, USV_LABEL_UNMAPPED);
	assert_null(map_key(t, "LT AORTA", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	usv_label_table_free(t);

	/* a phrase that is part of another class's phrase makes that one
	 * ambiguous: both classes match */
	if (load_text("classes: {liver_left_long: [liver left]}\n", &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_string_equal(map_key(t, "LIVER LT", &m), "liver_left_long");
	assert_string_equal(map_key(t, "LIVER LT LONG", &m), "liver_left_long");
	assert_null(map_key(t, "LIVER LT TRANS", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	usv_label_table_free(t);

	/* a file of comments only is the default table */
	if (load_text("# nothing here\n", &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(usv_label_table_nclasses(t), NVIEWS);
	check_positives(t);
	usv_label_table_free(t);
}

/* An OCR confusion counts only when it reaches one synonym and no synonym
 * of another concept is one slip away; the defaults of the classes do not
 * hold L and R together. */
static void test_short_confusions(void **state)
{
	usv_label_table *t = NULL;
	char err[USV_ERRBUF] = "";
	enum usv_label_match m;

	/* KIO is one confusion from KID and one letter from the site's KIT */
	if (load_text("words: {kit: [kit]}\nclasses: {kit: [kit]}\n", &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_string_equal(map_key(t, "KIT", &m), "kit");
	assert_string_equal(map_key(t, "LT KID LONG", &m), "kidney_left_long");
	assert_null(map_key(t, "LT KIO LONG", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	assert_string_equal(map_key(t, "LT K1D LONG", &m), "kidney_left_long"); /* KIT: 2 away */
	usv_label_table_free(t);

	/* KIO reaches KID (O/D) and the site's KIQ (O/Q): two concepts */
	if (load_text("words: {kiq: [kiq]}\nclasses: {kiq: [kiq]}\n", &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_null(map_key(t, "LT KIO LONG", &m));
	assert_int_equal(m, USV_LABEL_AMBIGUOUS);
	usv_label_table_free(t);

	/* two synonyms of one concept reached: not one reading */
	if (load_text("words: {kidney: [k1d]}\n", &t, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_string_equal(map_key(t, "LT K1D LONG", &m), "kidney_left_long");
	assert_null(map_key(t, "LT KLD LONG", &m)); /* K1D and KID */
	assert_int_equal(m, USV_LABEL_UNMAPPED);
	usv_label_table_free(t);

	/* a side never turns into the other: every one-character change of
	 * L, R, LT, RT, LFT and RGT within the confusion classes keeps the
	 * side or maps to nothing */
	assert_int_equal(usv_label_table_default(&t), 0);
	static const char *const sides[] = {"L", "LT", "LFT", "R", "RT", "RGT"};
	static const char glyphs[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
		int left = sides[i][0] == 'L';
		for (size_t k = 0; sides[i][k]; k++)
			for (const char *g = glyphs; *g; g++) {
				char w[8], text[32];
				snprintf(w, sizeof w, "%s", sides[i]);
				w[k] = *g;
				int exact = 0; /* the other side's own word ("R" for "L") */
				for (size_t j = 0; j < sizeof sides / sizeof sides[0]; j++)
					exact |= !strcmp(w, sides[j]);
				if (exact)
					continue;
				snprintf(text, sizeof text, "%s KIDNEY LONG", w);
				const char *key = map_key(t, text, &m);
				if (key &&
				    strcmp(key, left ? "kidney_left_long" : "kidney_right_long"))
					fail_msg("'%s' maps to %s", text, key);
			}
	}
	usv_label_table_free(t);
}

static void test_yaml_errors(void **state)
{
	expect_error("words:\n  left: [it]\nlabels: {}\n", -EINVAL, 3, 1, "unknown key 'labels'");
	expect_error("classes:\n  aorta: [\"aorta long\"]\n", -EINVAL, 2, 11,
	             "undefined concept 'aorta'");
	expect_error("words:\n  left: [lt]\n  right:\n    - rt\n    - l\n", -EINVAL, 5, 7,
	             "'l' is already a synonym of left");
	expect_error("words:\n  left: [lt, \"12\"]\n", -EINVAL, 2, 14, "digits only");
	expect_error("words:\n  Left: [lt]\n", -EINVAL, 2, 3, "lower-case");
	expect_error("classes:\n  Spleen: [spleen]\n", -EINVAL, 2, 3, "lower-case");
	expect_error("replace_defaults: maybe\n", -EINVAL, 1, 19, "not true or false");
	expect_error("words: [left]\n", -EINVAL, 1, 8, "expected a mapping");
	expect_error("words:\n  left: {a: b}\n", -EINVAL, 2, 9, "expected a list");
	expect_error("classes:\n  spleen: []\n", -EINVAL, 2, 11, "no phrase");
	expect_error("classes:\n  gallbladder: [\"spleen\"]\n", -EINVAL, 2, 17,
	             "already one of spleen");
	expect_error("words: {left: [lt]\n", -EINVAL, 2, 1, "YAML syntax error");
	expect_error("- a\n- b\n", -EINVAL, 1, 1, "expected a mapping");
	expect_error("annotation_areas:\n  - manufacturer: GE\n    box: [[0, 0, 1, 1]]\n", -EINVAL,
	             3, 5, "unknown key 'box'");
	expect_error("annotation_areas:\n  - boxes: [[0, 0, 10]]\n", -EINVAL, 2, 13,
	             "[x, y, w, h]");
	expect_error("annotation_areas:\n  - rows: -4\n", -EINVAL, 2, 11, "out of range");
	expect_error("annotation_areas:\n  - cols: wide\n", -EINVAL, 2, 11, "not an integer");
	expect_error("annotation_areas:\n  - boxes: [[0, 0, 0, 10]]\n", -EINVAL, 2, 20,
	             "out of range");
	expect_error("replace_defaults: true\nreplace_defaults: false\n", -EINVAL, 2, 1,
	             "duplicate key");
}

/* Builds a YAML file with n items of the kind under test. */
static char *cap_yaml(const char *kind, int n)
{
	size_t cap = 256 + (size_t)n * 64;
	char *s = malloc(cap), *p = s;
	assert_non_null(s);
	p += sprintf(p, "replace_defaults: true\n");
	if (!strcmp(kind, "classes")) {
		p += sprintf(p, "words:\n");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "  c%d: [w%d]\n", i, i);
		p += sprintf(p, "classes:\n");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "  k%d: [c%d]\n", i, i);
	} else if (!strcmp(kind, "phrases")) {
		p += sprintf(p, "words:\n  base: [base]\n");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "  c%d: [w%d]\n", i, i);
		p += sprintf(p, "classes:\n  k:\n");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "    - base c%d\n", i);
	} else if (!strcmp(kind, "words")) {
		p += sprintf(p, "words:\n  c:\n");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "    - w%d\n", i);
		p += sprintf(p, "classes: {k: [c]}\n");
	} else {
		p += sprintf(p, "annotation_areas:\n");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "  - {rows: %d}\n", i + 1);
	}
	assert_true((size_t)(p - s) < cap);
	return s;
}

static void test_caps(void **state)
{
	static const struct {
		const char *kind;
		int max;
	} caps[] = {{"classes", USV_LABEL_MAX_CLASSES},
	            {"phrases", USV_LABEL_MAX_PHRASES},
	            {"words", USV_LABEL_MAX_WORDS},
	            {"rules", USV_LABEL_MAX_RULES}};
	char err[USV_ERRBUF];

	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
		usv_label_table *t = NULL;
		char *y = cap_yaml(caps[i].kind, caps[i].max);
		int r = load_text(y, &t, err, sizeof err);
		if (r != 0)
			fail_msg("%s at the cap: %s", caps[i].kind, err);
		if (!strcmp(caps[i].kind, "classes"))
			assert_int_equal(usv_label_table_nclasses(t), USV_LABEL_MAX_CLASSES);
		if (!strcmp(caps[i].kind, "rules")) {
			size_t n = 0, nd = 0;
			usv_label_table_annot_rules(t, &n);
			usv_annot_default_rules(&nd);
			assert_int_equal(n, USV_LABEL_MAX_RULES + nd);
		}
		usv_label_table_free(t);
		free(y);
		y = cap_yaml(caps[i].kind, caps[i].max + 1);
		t = (usv_label_table *)err;
		assert_int_equal(load_text(y, &t, err, sizeof err), -USV_ERR_LIMIT);
		assert_null(t);
		assert_non_null(strstr(err, "more than"));
		free(y);
	}
	/* the class cap counts the built-in classes too */
	usv_label_table *t = NULL;
	char *y = cap_yaml("classes", USV_LABEL_MAX_CLASSES - (int)NVIEWS + 1);
	memcpy(y + 18, "no  ", 4); /* "replace_defaults: true" -> "no" */
	assert_int_equal(load_text(y, &t, err, sizeof err), -USV_ERR_LIMIT);
	assert_null(t);
	assert_non_null(strstr(err, "more than 256 classes"));
	free(y);
}

/* Mapping from several threads at once gives the answers of one thread. */
struct worker {
	const usv_label_table *t;
	int bad;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int round = 0; round < 50; round++)
		for (size_t i = 0; i < NPOS; i++) {
			int cls;
			enum usv_label_match m;
			char norm[32];
			if (usv_label_map(w->t, positives[i].text, &cls, &m, norm, sizeof norm) ||
			    m != USV_LABEL_MAPPED ||
			    strcmp(usv_label_table_class(w->t, (size_t)cls), positives[i].key))
				w->bad++;
		}
	return NULL;
}

static void test_threads(void **state)
{
	usv_label_table *t = NULL;
	pthread_t th[4];
	struct worker w[4];

	assert_int_equal(usv_label_table_default(&t), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.t = t, .bad = 0};
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	usv_label_table_free(t);
}

/* Random texts of vocabulary words, slips, numbers, punctuation and stray
 * bytes: the call succeeds, the key is upper-case words joined by one
 * space, and mapping the key gives the same answer as the text. */
static void test_random_texts(void **state)
{
	static const char *const parts[] = {
	    "LT",   "rt",      "Left",   "RIGHT",  "l",        "R",     "long",   "SAG",   "trans",
	    "AX",   "liver",   "LIV",    "KIDNEY", "kid",      "renal", "SPLEEN", "panc",  "GB",
	    "gall", "bladder", "KIDNFY", "L0NG",   "upper",    "pole",  "12",     "3.4cm", "(",
	    ")",    "-",       ".",      ",",      "\xc3\x97", "\xff",  "\t",     "IT",    "aorta",
	};
	const size_t np = sizeof parts / sizeof parts[0];
	usv_label_table *t = NULL;
	uint32_t x = 12345;
	char text[USV_LABEL_MAX_TEXT - 1], norm[USV_LABEL_MAX_TEXT], norm2[USV_LABEL_MAX_TEXT];
	size_t counts[4] = {0, 0, 0, 0};

	assert_int_equal(usv_label_table_default(&t), 0);
	for (int round = 0; round < 20000; round++) {
		size_t len = 0, nw;
		x = x * 1664525u + 1013904223u;
		nw = (x >> 24) % 7;
		text[0] = 0;
		for (size_t i = 0; i < nw; i++) {
			x = x * 1664525u + 1013904223u;
			const char *w = parts[(x >> 16) % np];
			if (len + strlen(w) + 2 >= sizeof text)
				break;
			len += (size_t)sprintf(text + len, "%s%s",
			                       i ? ((x >> 8) & 1 ? " " : "  ") : "", w);
		}
		int cls, cls2;
		enum usv_label_match m, m2;
		assert_int_equal(usv_label_map(t, text, &cls, &m, norm, sizeof norm), 0);
		counts[m]++;
		assert_true(cls >= -1 && cls < (int)NVIEWS);
		assert_true((m == USV_LABEL_MAPPED) == (cls >= 0));
		for (const char *p = norm; *p; p++) {
			assert_true((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			            *p == ' ');
			if (*p == ' ')
				assert_true(p > norm && p[-1] != ' ' && p[1] && p[1] != ' ');
		}
		assert_int_equal(usv_label_map(t, norm, &cls2, &m2, norm2, sizeof norm2), 0);
		assert_int_equal(m2, m);
		assert_int_equal(cls2, cls);
		assert_string_equal(norm2, norm);
		usv_label_is_measurement_text(text);
	}
	/* the generator reaches every outcome */
	for (int i = 0; i < 4; i++)
		assert_true(counts[i] > 0);
	usv_label_table_free(t);
}

static void test_measurement_text(void **state)
{
	static const char *const yes[] = {
	    "D1 3.2 cm",
	    "Dist 1.43 cm",
	    "+ Dist Mag 1.06 cm",
	    "Vol 12.3 ml",
	    "Area 2.1 cm2",
	    "Circ",
	    "Asc Ao Diam 3.3 cm",
	    "L 4.5cm",
	    "1.2 mm",
	    "D2: 10.4mm",
	    "Dist1 2.0cm",
	    "Distance 4.1 cm",
	    "Volume 80 ml",
	    "Length 9.8 cm",
	    "Len 9.8",
	    "Diameter",
	    "Depth 3.1 cm",
	    "x 2.3 cm",
	    "+ 2.3 cm",
	    "\xc3\x97 2.3cm",
	    "\xe2\x80\xa2 1.1 cm",
	    "W: 3.4 cm",
	    "1.43 cm",
	    "4.2 cm\xc2\xb2",
	    "12 cc",
	    "3.1 cm3",
	    "2,35 cm",
	    "rt kidney long   L 10.2cm  W 4.8cm",
	    /* OCR misreads of the caliper label D1 */
	    "01 4.3 CM",
	    "O1 4.3 CM",
	    "o1: 12.5 mm",
	    "Q1 4.3cm",
	    "Dl 4.3 CM",
	    "DI 4.3 cm",
	    "D 1 4.3 CM",
	    "D 2: 0.8 cm",
	    "02 6.0 cm",
	};
	static const char *const no[] = {
	    "C5-1",
	    "28Hz",
	    "16cm",
	    "11cm",
	    "16 cm",
	    "16.0cm",
	    "TIS0.4 MI 1.4",
	    "Gn 60",
	    "2D",
	    "49Hz",
	    "G 54%",
	    "MI 1.1",
	    "TIB 0.2",
	    "65bpm",
	    "P Low",
	    "HGen",
	    "D 16cm",
	    "Frq 5.0 MHz",
	    "DR 60",
	    "Dyn 63",
	    "FR 31",
	    "LT KIDNEY LONG",
	    "DISTAL CBD",
	    "Areas",
	    "Z 4.5",
	    "3.2",
	    "12 mm",
	    "V 45 cm/s",
	    "",
	    "Gen 4.0MHz",
	    "PRF 1.0kHz",
	    "AO 100%",
	    "Map A/0/0",
	    "Depth",
	    "CHI",
	    /* not a misread D1 with its value */
	    "D 1 6.0cm",
	    "01 16cm",
	    "01",
	    "O1 4 cm",
	    "10 4.3 cm",
	    "D 12 4.3 cm",
	    "CO1 4.3 cm",
	    "2.01 4.3 cm",
	    "01 4.3 Hz",
	    "0 1 4.3 cm",
	    "O1 4.3",
	    "DX 4.3 cm",
	    "D1X 4.3 cm",
	};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (!usv_label_is_measurement_text(yes[i]))
			fail_msg("'%s' is a measurement", yes[i]);
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (usv_label_is_measurement_text(no[i]))
			fail_msg("'%s' is not a measurement", no[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_default_classes),
	    cmocka_unit_test(test_default_positives),
	    cmocka_unit_test(test_default_negatives),
	    cmocka_unit_test(test_views_yaml_is_default),
	    cmocka_unit_test(test_norm),
	    cmocka_unit_test(test_nulls),
	    cmocka_unit_test(test_site_file),
	    cmocka_unit_test(test_short_confusions),
	    cmocka_unit_test(test_yaml_errors),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_random_texts),
	    cmocka_unit_test(test_measurement_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
