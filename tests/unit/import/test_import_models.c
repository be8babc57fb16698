/*
 * NAME
 *	test_import_models.c - Caffe and TFLite import of real and damaged files
 *
 * DESCRIPTION
 *	The shared models ($USV_SHARED_DIR/models) are imported as they are,
 *	then as damaged copies made here (every kind of truncation, random
 *	bytes, flipped bytes, an unknown layer / op patched in): each damaged
 *	file must give an error naming the file, never a crash (this test
 *	also runs under ASan/UBSan). The flatbuffer accessors are checked on
 *	hand-made buffers with offsets pointing outside.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tflite_fb.h"
#include "window.h"
#include "usv/err.h"
#include "usv/import.h"

static char shared[1024];
static char tmpdir[256];

static void path_of(char *out, size_t n, const char *sub)
{
	snprintf(out, n, "%s/models/%s", shared, sub);
}

static uint8_t *slurp(const char *p, size_t *n)
{
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long l = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)l + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)l, f), (size_t)l);
	fclose(f);
	*n = (size_t)l;
	return b;
}

static void spit(const char *p, const void *b, size_t n)
{
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

static uint32_t rng = 2463534242u;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

static int setup(void **state)
{
	const char *s = getenv("USV_SHARED_DIR");
	snprintf(shared, sizeof shared, "%s", s ? s : "../shared");
	snprintf(tmpdir, sizeof tmpdir, "/tmp/usv-import-test-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---------------- Caffe ---------------- */

static void test_caffe_good(void **state)
{
	char pt[1200], cm[1200], mean[1200];
	path_of(pt, sizeof pt, "caffe/mini_caffenet_deploy.prototxt");
	path_of(cm, sizeof cm, "caffe/mini_caffenet.caffemodel");
	path_of(mean, sizeof mean, "caffe/ilsvrc_2012_mean.npy");
	usv_netdef *d = NULL;
	char err[512] = "";
	int rc = usv_import_caffe(pt, cm, NULL, mean, &d, err, sizeof err);
	if (rc)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
	const usv_model_meta *m = usv_netdef_meta(d);
	assert_int_equal(m->input_c, 3);
	assert_int_equal(m->input_h, 227);
	assert_int_equal(m->resize_h, 256);
	assert_int_equal(m->channel_order, USV_BGR);
	assert_non_null(m->mean_image);
	assert_true(m->output_is_prob);
	/* conv2 has group 2: weight [16, 4, 5, 5] (norm1 has 8 channels) */
	int nd;
	int64_t sh[4];
	const float *w = usv_netdef_tensor(d, "conv2.weight", &nd, sh);
	assert_non_null(w);
	assert_int_equal(nd, 4);
	assert_int_equal(sh[0], 16);
	assert_int_equal(sh[1], 4);
	assert_int_equal(sh[2], 5);
	usv_netdef_free(d);

	/* the legacy V1 format */
	path_of(pt, sizeof pt, "caffe/cifar10_quick.prototxt");
	path_of(cm, sizeof cm, "caffe/cifar10_quick_iter_5000.caffemodel");
	rc = usv_import_caffe(pt, cm, NULL, NULL, &d, err, sizeof err);
	if (rc)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
	w = usv_netdef_tensor(d, "ip1.weight", &nd, sh);
	assert_non_null(w);
	assert_int_equal(sh[0], 64);
	assert_int_equal(sh[1], 64 * 4 * 4);
	usv_netdef_free(d);
}

/* A BlobProto mean of [1, ch, 256, 256] with value(i) = i % 251 - 100. */
static void write_mean(const char *path, int ch)
{
	size_t n = (size_t)ch * 256 * 256;
	size_t cap = 32 + n * 4;
	uint8_t *b = malloc(cap);
	assert_non_null(b);
	size_t k = 0;
	const int dims[4] = {1, ch, 256, 256};
	for (int i = 0; i < 4; i++) {
		b[k++] = (uint8_t)((i + 1) << 3); /* varint field i + 1 */
		unsigned v = (unsigned)dims[i];
		while (v >= 0x80) {
			b[k++] = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		b[k++] = (uint8_t)v;
	}
	b[k++] = (5 << 3) | 2; /* data, packed */
	size_t len = n * 4;
	while (len >= 0x80) {
		b[k++] = (uint8_t)(len | 0x80);
		len >>= 7;
	}
	b[k++] = (uint8_t)len;
	for (size_t i = 0; i < n; i++) {
		float f = (float)((int)(i % 251) - 100);
		memcpy(b + k, &f, 4);
		k += 4;
	}
	spit(path, b, k);
	free(b);
}

static void test_caffe_mean_binaryproto(void **state)
{
	char pt[1200], cm[1200], mp[512];
	path_of(pt, sizeof pt, "caffe/mini_caffenet_deploy.prototxt");
	path_of(cm, sizeof cm, "caffe/mini_caffenet.caffemodel");
	snprintf(mp, sizeof mp, "%s/mean.binaryproto", tmpdir);
	write_mean(mp, 3);
	usv_netdef *d = NULL;
	char err[512] = "";
	int rc = usv_import_caffe(pt, cm, NULL, mp, &d, err, sizeof err);
	if (rc)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
	const usv_model_meta *m = usv_netdef_meta(d);
	assert_int_equal(m->resize_h, 256);
	assert_int_equal(m->resize_w, 256);
	assert_non_null(m->mean_image);
	for (size_t i = 0; i < 3 * 256 * 256; i += 997)
		assert_true(m->mean_image[i] == (float)((int)(i % 251) - 100));
	usv_netdef_free(d);
	/* one channel: refused, naming the mean file */
	write_mean(mp, 1);
	d = NULL;
	assert_true(usv_import_caffe(pt, cm, NULL, mp, &d, err, sizeof err) < 0);
	assert_null(d);
	assert_non_null(strstr(err, "mean.binaryproto"));
}

static void expect_fail(const char *pt, const char *cm, const char *name_in_err)
{
	usv_netdef *d = NULL;
	char err[512] = "";
	int rc = usv_import_caffe(pt, cm, NULL, NULL, &d, err, sizeof err);
	assert_true(rc < 0);
	assert_null(d);
	assert_null(strchr(err, '\n'));
	if (name_in_err && !strstr(err, name_in_err)) {
		fprintf(stderr, "error '%s' lacks '%s'\n", err, name_in_err);
		fail();
	}
}

static void test_caffe_damaged(void **state)
{
	char pt[1200], cm[1200], bad[512];
	path_of(pt, sizeof pt, "caffe/mini_caffenet_deploy.prototxt");
	path_of(cm, sizeof cm, "caffe/mini_caffenet.caffemodel");
	size_t n;
	uint8_t *b = slurp(cm, &n);
	snprintf(bad, sizeof bad, "%s/bad.caffemodel", tmpdir);

	/* truncations: every cut below 200 bytes, then a spread over the file */
	for (size_t cut = 0; cut < n; cut += cut < 200 ? 1 : 997) {
		spit(bad, b, cut);
		expect_fail(pt, bad, "bad.caffemodel");
	}
	/* random bytes */
	uint8_t *r = malloc(n);
	assert_non_null(r);
	for (int it = 0; it < 20; it++) {
		size_t len = 1 + rnd() % 4096;
		for (size_t i = 0; i < len; i++)
			r[i] = (uint8_t)rnd();
		spit(bad, r, len);
		expect_fail(pt, bad, "bad.caffemodel");
	}
	/* flipped bytes: may still import (a flipped weight), must not crash */
	int failed = 0;
	for (int it = 0; it < 60; it++) {
		memcpy(r, b, n);
		for (int k = 0; k < 4; k++)
			r[rnd() % 512] ^= (uint8_t)(1 + rnd() % 255);
		spit(bad, r, n);
		usv_netdef *d = NULL;
		char err[512];
		if (usv_import_caffe(pt, bad, NULL, NULL, &d, err, sizeof err) < 0) {
			assert_null(d);
			assert_non_null(strstr(err, "bad"));
			failed++;
		}
		usv_netdef_free(d);
	}
	assert_true(failed > 0);
	free(r);
	free(b);

	/* a prototxt with an unknown layer type, one with a syntax error */
	size_t pn;
	uint8_t *p = slurp(pt, &pn);
	char *txt = malloc(pn + 200);
	assert_non_null(txt);
	memcpy(txt, p, pn);
	txt[pn] = 0;
	char *at = strstr(txt, "\"LRN\"");
	assert_non_null(at);
	memcpy(at, "\"LRQ\"", 5);
	snprintf(bad, sizeof bad, "%s/bad.prototxt", tmpdir);
	spit(bad, txt, pn);
	expect_fail(bad, cm, "norm1");
	expect_fail(bad, cm, "bad.prototxt");
	memcpy(at, "\"LRN\"", 5);
	at = strstr(txt, "layer {");
	at[6] = '(';
	spit(bad, txt, pn);
	expect_fail(bad, cm, "bad.prototxt: line");
	free(txt);
	free(p);
	/* missing files */
	expect_fail("/nonexistent/x.prototxt", cm, "/nonexistent/x.prototxt");
	expect_fail(pt, "/nonexistent/y.caffemodel", "/nonexistent/y.caffemodel");
}

/* ---------------- flatbuffers ---------------- */

static void test_fb_bounds(void **state)
{
	/* root -> table at 12 with vtable at 4: fields 0 (u32 = 7) and 1 (ref
	 * to a vector of 2 u32 at 24) */
	uint8_t b[40] = {0};
	b[0] = 12;                       /* root offset */
	b[4] = 8, b[6] = 12;             /* vtable: 8 bytes, table 12 bytes */
	b[8] = 4, b[10] = 8;             /* field 0 at +4, field 1 at +8 */
	b[12] = 8;                       /* soffset: vtable = 12 - 8 = 4 */
	b[16] = 7;                       /* field 0 */
	b[20] = 4;                       /* field 1: 20 + 4 = 24 */
	b[24] = 2, b[28] = 5, b[32] = 6; /* vector [5, 6] */
	fb_buf f = {b, sizeof b};
	fb_table t;
	assert_int_equal(fb_root(&f, &t), 0);
	uint32_t v = 99;
	assert_int_equal(fb_scalar(&t, 0, 4, &v), 0);
	assert_int_equal(v, 7);
	v = 99;
	assert_int_equal(fb_scalar(&t, 5, 4, &v), 0); /* absent: default kept */
	assert_int_equal(v, 99);
	size_t st;
	uint32_t n;
	assert_int_equal(fb_vector(&t, 1, 4, &st, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(fb_u32(b + st + 4), 6);
	assert_int_equal(fb_vector(&t, 2, 4, &st, &n), -ENOENT);
	/* vector count too large for the buffer */
	b[24] = 4;
	assert_int_equal(fb_vector(&t, 1, 4, &st, &n), -USV_ERR_FORMAT);
	b[24] = 2;
	/* reference past the end */
	b[20] = 200;
	assert_int_equal(fb_vector(&t, 1, 4, &st, &n), -USV_ERR_FORMAT);
	b[20] = 4;
	/* field offset beyond the table's inline size */
	b[10] = 12;
	assert_int_equal(fb_scalar(&t, 1, 4, &v), -USV_ERR_FORMAT);
	b[10] = 8;
	/* vtable outside the buffer, root outside, odd sizes */
	b[12] = 0xf0, b[13] = 0xff, b[14] = 0xff, b[15] = 0xff; /* soffset -16: vt = 28 */
	assert_int_equal(fb_root(&f, &t), -USV_ERR_FORMAT);     /* vtlen 5 at 28 */
	b[12] = 8, b[13] = b[14] = b[15] = 0;
	b[0] = 200;
	assert_int_equal(fb_root(&f, &t), -USV_ERR_FORMAT);
	b[0] = 12;
	b[4] = 3;
	assert_int_equal(fb_root(&f, &t), -USV_ERR_FORMAT);
	fb_buf small = {b, 6};
	assert_int_equal(fb_root(&small, &t), -USV_ERR_FORMAT);
}

static void tfl_expect_fail(const char *p, const char *in_err)
{
	usv_netdef *d = NULL;
	char err[512] = "";
	int rc = usv_import_tflite(p, NULL, &d, err, sizeof err);
	assert_true(rc < 0);
	assert_null(d);
	if (in_err && !strstr(err, in_err)) {
		fprintf(stderr, "error '%s' lacks '%s'\n", err, in_err);
		fail();
	}
}

static void test_tflite(void **state)
{
	char p[1200], bad[512];
	path_of(p, sizeof p, "mobilenet/mobilenet_v1_0.25_128_quant.tflite");
	usv_netdef *d = NULL;
	char err[512] = "";
	int rc = usv_import_tflite(p, NULL, &d, err, sizeof err);
	if (rc)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(rc, 0);
	const usv_model_meta *m = usv_netdef_meta(d);
	assert_int_equal(m->input_h, 128);
	assert_int_equal(m->channel_order, USV_RGB);
	assert_true(m->mean_rgb[0] == 128.0f);
	assert_true(m->scale == 1.0f / 128);
	assert_true(m->output_is_prob);
	usv_netdef_free(d);

	size_t n;
	uint8_t *b = slurp(p, &n);
	snprintf(bad, sizeof bad, "%s/bad.tflite", tmpdir);
	/* the file may carry unreferenced bytes at its end (this one has a
	 * zip of labels appended): cuts must fail up to the operator code
	 * tables, which the converter writes last */
	size_t need = 0;
	{
		fb_buf ff = {b, n};
		fb_table rt, ot;
		size_t vs;
		uint32_t vc;
		assert_int_equal(fb_root(&ff, &rt), 0);
		assert_int_equal(fb_vector(&rt, 1, 4, &vs, &vc), 0);
		for (uint32_t i = 0; i < vc; i++) {
			assert_int_equal(fb_vec_table(&ff, vs, vc, i, &ot), 0);
			if (ot.pos + ot.tlen > need)
				need = ot.pos + ot.tlen;
		}
	}
	for (size_t cut = 0; cut < need; cut += cut < 64 ? 1 : 7919) {
		spit(bad, b, cut);
		tfl_expect_fail(bad, "bad.tflite");
	}
	uint8_t *r = malloc(n);
	assert_non_null(r);
	for (int it = 0; it < 20; it++) {
		size_t len = 8 + rnd() % 4096;
		for (size_t i = 0; i < len; i++)
			r[i] = (uint8_t)rnd();
		if (it % 2)
			memcpy(r + 4, "TFL3", 4);
		spit(bad, r, len);
		tfl_expect_fail(bad, "bad.tflite");
	}
	/* flips in the structural part (offsets, vtables, options) */
	for (int it = 0; it < 40; it++) {
		memcpy(r, b, n);
		for (int k = 0; k < 3; k++) {
			size_t pos = rnd() % 2048;
			if (it % 2)
				pos = n - 1 - rnd() % 8192;
			r[pos] ^= (uint8_t)(1 + rnd() % 255);
		}
		spit(bad, r, n);
		d = NULL;
		if (usv_import_tflite(bad, NULL, &d, err, sizeof err) < 0)
			assert_non_null(strstr(err, "bad.tflite"));
		usv_netdef_free(d);
	}
	free(r);

	/* an unsupported op: patch every operator code to MUL (18) */
	fb_buf f = {b, n};
	fb_table root, oc;
	size_t st;
	uint32_t cnt;
	assert_int_equal(fb_root(&f, &root), 0);
	assert_int_equal(fb_vector(&root, 1, 4, &st, &cnt), 0);
	for (uint32_t i = 0; i < cnt; i++) {
		assert_int_equal(fb_vec_table(&f, st, cnt, i, &oc), 0);
		/* field 0 (deprecated int8 code) and field 3 (int32 code) */
		for (int id = 0; id < 4; id += 3) {
			unsigned vo = 4 + 2 * (unsigned)id;
			if (vo + 2 > oc.vtlen)
				continue;
			unsigned off = b[oc.vt + vo] | b[oc.vt + vo + 1] << 8;
			if (off)
				b[oc.pos + off] = 18;
		}
	}
	spit(bad, b, n);
	tfl_expect_fail(bad, "MUL");
	tfl_expect_fail(bad, "bad.tflite");
	free(b);
	tfl_expect_fail("/nonexistent.tflite", "/nonexistent.tflite");
}

static void test_labels(void **state)
{
	char p[512], err[512];
	snprintf(p, sizeof p, "%s/labels.txt", tmpdir);
	const char *txt = "background\r\nEgyptian cat \ntabby, tabby cat\n\n\n";
	spit(p, txt, strlen(txt));
	char **l;
	int n;
	assert_int_equal(usv_labels_read(p, &l, &n, err, sizeof err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(l[0], "background");
	assert_string_equal(l[1], "Egyptian cat");
	assert_string_equal(l[2], "tabby, tabby cat");
	usv_labels_free(l, n);
	/* a label over USV_LABEL_MAX - 1 bytes */
	char big[USV_LABEL_MAX + 8];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	spit(p, big, strlen(big));
	assert_int_equal(usv_labels_read(p, &l, &n, err, sizeof err), -USV_ERR_LIMIT);
	assert_non_null(strstr(err, "labels.txt"));
	/* the shared ImageNet list: 1001 labels, background first */
	char in[1200];
	path_of(in, sizeof in, "mobilenet/imagenet_labels.txt");
	assert_int_equal(usv_labels_read(in, &l, &n, err, sizeof err), 0);
	assert_int_equal(n, 1001);
	assert_string_equal(l[0], "background");
	usv_labels_free(l, n);
}

/*
 * The output extent rule that the Caffe importer and netdef's shape
 * inference share (window.h), on extents Caffe itself computes.
 */
static void test_window_rule(void **state)
{
	(void)state;
	static const struct {
		int64_t in, k, s, p0, p1;
		int ceil_mode;
		int64_t want;
	} cases[] = {
	    {227, 11, 4, 0, 0, 0, 55}, /* CaffeNet conv1 */
	    {55, 3, 2, 0, 0, 1, 27},   /* CaffeNet pool1 */
	    {112, 3, 2, 0, 0, 1, 56},  /* GoogLeNet pool1: ceil rounds up */
	    {112, 3, 2, 0, 0, 0, 55},  /* where floor rounds down */
	    {5, 2, 2, 1, 1, 1, 3},     /* ceil: 4, but window 4 starts in the trailing pad */
	    {6, 1, 3, 0, 0, 1, 3},     /* past the input but no pad: kept (as Caffe) */
	    {6, 2, 2, 1, 1, 1, 4},     /* last window starts at in + p0 - 1: kept */
	    {7, 3, 1, 1, 1, 0, 7},     /* "same" convolution */
	    {3, 3, 1, 0, 0, 1, 1},     /* window as large as the input */
	    {2, 3, 1, 0, 0, 0, -1},    /* larger: no output */
	    {2, 3, 1, 0, 0, 1, -1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(usv__window_out(cases[i].in, cases[i].k, cases[i].s, cases[i].p0,
		                                 cases[i].p1, cases[i].ceil_mode),
		                 cases[i].want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_window_rule),   cmocka_unit_test(test_caffe_good),
	    cmocka_unit_test(test_caffe_damaged), cmocka_unit_test(test_caffe_mean_binaryproto),
	    cmocka_unit_test(test_labels),        cmocka_unit_test(test_fb_bounds),
	    cmocka_unit_test(test_tflite),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
