/*
 * NAME
 *	test_nn_modelfile.c - model file round trip, corrupted model files,
 *	.npy round trip
 *
 * DESCRIPTION
 *	Corruptions are made by editing the JSON header of a valid file with
 *	cJSON (an independent JSON library use, not our writer) or by
 *	truncating / overwriting bytes; every one must give an error naming
 *	the file, never a crash (these also run under ASan/UBSan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "nn_test_util.h"
#include "usv/err.h"
#include "usv/nn.h"
#include "usv/npy.h"
#include "usv/sha256.h"

static char tmpdir[256];

static int setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/usv_nn_test_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* conv (SAME, relu6) -> maxpool -> fc -> softmax, with full metadata */
static usv_netdef *make_net(void)
{
	usv_netdef *d = tu_netdef(3, 9, 7);
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "c1");
	l.type = USV_LAYER_CONV;
	l.n_inputs = 1;
	snprintf(l.inputs[0], USV_NAME_MAX, "data");
	l.num_output = 4, l.kernel_h = 3, l.kernel_w = 2, l.stride_h = 2, l.stride_w = 1;
	l.pad_mode = USV_PAD_SAME, l.group = 1, l.has_bias = 1, l.act = USV_ACT_RELU6;
	tu_layer(d, &l, 3, 9, 7);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "p1");
	l.type = USV_LAYER_MAXPOOL;
	l.n_inputs = 1;
	snprintf(l.inputs[0], USV_NAME_MAX, "c1");
	l.kernel_h = l.kernel_w = 2, l.stride_h = l.stride_w = 2, l.ceil_mode = 1;
	l.pad_t = 1, l.pad_b = 1, l.pad_l = 0, l.pad_r = 1;
	tu_layer(d, &l, 0, 0, 0);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "fc");
	l.type = USV_LAYER_FC;
	l.n_inputs = 1;
	snprintf(l.inputs[0], USV_NAME_MAX, "p1");
	l.num_output = 3, l.has_bias = 1;
	tu_layer(d, &l, 4, 3, 4);
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "prob");
	l.type = USV_LAYER_SOFTMAX;
	l.n_inputs = 1;
	snprintf(l.inputs[0], USV_NAME_MAX, "fc");
	tu_layer(d, &l, 0, 0, 0);
	usv_model_meta m = *usv_netdef_meta(d);
	snprintf(m.arch, sizeof m.arch, "custom");
	snprintf(m.name, sizeof m.name, "round trip \"quoted\" \xc3\xa9");
	m.resize_h = 11, m.resize_w = 10;
	m.channel_order = USV_BGR;
	m.scale = 0.0078125f;
	m.mean_rgb[0] = 104.5f, m.mean_rgb[1] = 117.25f, m.mean_rgb[2] = 123.125f;
	static const char *labels[] = {"liver", "kidney, left", "sp\"leen"};
	m.n_labels = 3;
	m.labels = labels;
	m.output_layer = "prob";
	m.output_is_prob = 1;
	m.provenance_json = "{\"source\":\"test\",\"sha256\":\"00ff\"}";
	float *mean = tu_alloc_rand(3 * 11 * 10);
	m.mean_image = mean;
	assert_int_equal(usv_netdef_set_meta(d, &m), 0);
	free(mean);
	return d;
}

static void test_roundtrip(void **state)
{
	tu_seed(21);
	usv_netdef *d = make_net();
	char p[300], eb[512];
	path_of(p, sizeof p, "rt.usvm");
	int rc = usv_netdef_write(d, p, eb, sizeof eb);
	if (rc)
		print_error("%s\n", eb);
	assert_int_equal(rc, 0);
	/* netdef read back: layers, tensors and meta identical */
	usv_netdef *r;
	rc = usv_netdef_read(p, &r, eb, sizeof eb);
	if (rc)
		print_error("%s\n", eb);
	assert_int_equal(rc, 0);
	assert_int_equal(usv_netdef_n_layers(r), usv_netdef_n_layers(d));
	for (int i = 0; i < usv_netdef_n_layers(d); i++)
		assert_memory_equal(usv_netdef_layer(d, i), usv_netdef_layer(r, i),
		                    sizeof(usv_layer_def));
	static const char *tn[] = {"c1.weight", "c1.bias", "fc.weight", "fc.bias"};
	for (int i = 0; i < 4; i++) {
		int na, nb;
		int64_t sa[4], sb[4];
		float *a = usv_netdef_tensor(d, tn[i], &na, sa);
		float *b = usv_netdef_tensor(r, tn[i], &nb, sb);
		assert_non_null(b);
		assert_int_equal(na, nb);
		size_t cnt = 1;
		for (int k = 0; k < na; k++) {
			assert_int_equal(sa[k], sb[k]);
			cnt *= (size_t)sa[k];
		}
		assert_memory_equal(a, b, cnt * sizeof(float));
	}
	const usv_model_meta *ma = usv_netdef_meta(d), *mb = usv_netdef_meta(r);
	assert_string_equal(ma->arch, mb->arch);
	assert_string_equal(ma->name, mb->name);
	assert_int_equal(mb->input_c, 3);
	assert_int_equal(mb->input_h, 9);
	assert_int_equal(mb->input_w, 7);
	assert_int_equal(mb->resize_h, 11);
	assert_int_equal(mb->resize_w, 10);
	assert_int_equal(mb->channel_order, USV_BGR);
	assert_true(mb->scale == ma->scale);
	assert_memory_equal(ma->mean_rgb, mb->mean_rgb, sizeof ma->mean_rgb);
	assert_int_equal(mb->n_labels, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(ma->labels[i], mb->labels[i]);
	assert_string_equal(mb->output_layer, "prob");
	assert_int_equal(mb->output_is_prob, 1);
	cJSON *pa = cJSON_Parse(ma->provenance_json), *pb = cJSON_Parse(mb->provenance_json);
	assert_true(cJSON_Compare(pa, pb, 1));
	cJSON_Delete(pa);
	cJSON_Delete(pb);
	assert_non_null(mb->mean_image);
	assert_memory_equal(ma->mean_image, mb->mean_image, 3 * 11 * 10 * sizeof(float));
	/* the loaded (mmap) model computes what the in-memory one computes */
	usv_model *ml, *mm;
	rc = usv_model_load(p, &ml, eb, sizeof eb);
	if (rc)
		print_error("%s\n", eb);
	assert_int_equal(rc, 0);
	assert_int_equal(usv_model_from_netdef(d, &mm, eb, sizeof eb), 0);
	char hex[65];
	assert_int_equal(usv_sha256_file(p, hex), 0);
	assert_string_equal(usv_model_get_meta(ml)->sha256, hex);
	assert_string_equal(usv_model_get_meta(ml)->labels[1], "kidney, left");
	float *x = tu_alloc_rand(2 * 3 * 9 * 7);
	usv_session *sl, *sm;
	usv_session_opts o = {.max_batch = 2, .threads = 1};
	assert_int_equal(usv_session_new(ml, &o, &sl), 0);
	assert_int_equal(usv_session_new(mm, &o, &sm), 0);
	const float *yl, *ym;
	int cl[3], cm[3];
	assert_int_equal(usv_session_run(sl, x, 2, &yl, cl), 0);
	assert_int_equal(usv_session_run(sm, x, 2, &ym, cm), 0);
	assert_int_equal(cl[0], 3);
	assert_memory_equal(yl, ym, 2 * 3 * sizeof(float));
	usv_session_free(sl);
	usv_session_free(sm);
	usv_model_free(ml);
	usv_model_free(mm);
	free(x);
	/* the file is a valid safetensors layout: header length, 64-byte alignment */
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	uint8_t le[8];
	assert_int_equal(fread(le, 1, 8, f), 8);
	fclose(f);
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)le[i] << (8 * i);
	assert_int_equal((8 + hl) % 64, 0);
	usv_netdef_free(r);
	usv_netdef_free(d);
}

/* Reads a file into memory. */
static uint8_t *slurp(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)n);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void spit(const char *p, const void *b, size_t len)
{
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	if (len)
		assert_int_equal(fwrite(b, 1, len, f), len);
	fclose(f);
}

/* Loading p must fail with an error line naming the file. */
static void expect_bad(const char *p, const char *what)
{
	usv_model *m = (usv_model *)1;
	char eb[512] = "";
	int rc = usv_model_load(p, &m, eb, sizeof eb);
	if (rc >= 0)
		print_error("%s: loaded\n", what);
	assert_true(rc < 0);
	assert_null(m);
	assert_non_null(strstr(eb, p));
	assert_null(strchr(eb, '\n'));
	usv_netdef *d = (usv_netdef *)1;
	assert_true(usv_netdef_read(p, &d, eb, sizeof eb) < 0);
	assert_null(d);
}

/* Writes the valid data with a modified JSON header. */
static void write_with_header(const char *p, const uint8_t *orig, size_t len, cJSON *hdr)
{
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)orig[i] << (8 * i);
	char *txt = cJSON_PrintUnformatted(hdr);
	size_t tl = strlen(txt);
	size_t padded = (8 + tl + 63) / 64 * 64 - 8;
	size_t dl = len - 8 - hl;
	uint8_t *b = malloc(8 + padded + dl);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)padded >> (8 * i));
	memcpy(b + 8, txt, tl);
	memset(b + 8 + tl, ' ', padded - tl);
	memcpy(b + 8 + padded, orig + 8 + hl, dl);
	spit(p, b, 8 + padded + dl);
	free(b);
	free(txt);
}

static cJSON *header_of(const uint8_t *b)
{
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)b[i] << (8 * i);
	cJSON *h = cJSON_ParseWithLength((const char *)b + 8, hl);
	assert_non_null(h);
	return h;
}

/* Edits the "usview" document inside __metadata__. */
static void edit_doc(cJSON *hdr, void (*fn)(cJSON *doc))
{
	cJSON *md = cJSON_GetObjectItem(hdr, "__metadata__");
	cJSON *doc = cJSON_Parse(cJSON_GetObjectItem(md, "usview")->valuestring);
	fn(doc);
	char *t = cJSON_PrintUnformatted(doc);
	cJSON_ReplaceItemInObject(md, "usview", cJSON_CreateString(t));
	free(t);
	cJSON_Delete(doc);
}

static void doc_unknown_type(cJSON *doc)
{
	cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "layers"), 1);
	cJSON_ReplaceItemInObject(l, "type", cJSON_CreateString("deconv"));
}

static void doc_bad_input(cJSON *doc)
{
	cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "layers"), 0);
	cJSON_ReplaceItemInObject(l, "inputs", cJSON_CreateString("data"));
}

static void doc_bad_kernel(cJSON *doc)
{
	cJSON *l = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "layers"), 0);
	int k[2] = {3000000, 3};
	cJSON_ReplaceItemInObject(l, "kernel", cJSON_CreateIntArray(k, 2));
}

static void doc_version(cJSON *doc)
{
	cJSON_ReplaceItemInObject(doc, "format_version", cJSON_CreateNumber(2));
}

static void doc_huge_input(cJSON *doc)
{
	cJSON *m = cJSON_GetObjectItem(doc, "meta");
	int in[3] = {3, 100000, 7};
	cJSON_ReplaceItemInObject(m, "input", cJSON_CreateIntArray(in, 3));
}

static void test_corrupt(void **state)
{
	tu_seed(22);
	usv_netdef *d = make_net();
	char p[300], q[300], eb[512];
	path_of(p, sizeof p, "good.usvm");
	path_of(q, sizeof q, "bad.usvm");
	assert_int_equal(usv_netdef_write(d, p, eb, sizeof eb), 0);
	usv_netdef_free(d);
	size_t len;
	uint8_t *b = slurp(p, &len);
	/* truncations everywhere */
	for (size_t cut = 0; cut < len; cut += (cut < 16 ? 1 : 53)) {
		spit(q, b, cut);
		expect_bad(q, "truncated");
	}
	/* header length too big / huge */
	uint8_t *c = malloc(len);
	memcpy(c, b, len);
	uint64_t big[2] = {len, (uint64_t)1 << 40};
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 8; i++)
			c[i] = (uint8_t)(big[k] >> (8 * i));
		spit(q, c, len);
		expect_bad(q, "header length");
	}
	/* garbage JSON */
	memcpy(c, b, len);
	memcpy(c + 8, "{{{ not json", 12);
	spit(q, c, len);
	expect_bad(q, "garbage json");
	free(c);
	/* header edits */
	for (int k = 0; k < 12; k++) {
		cJSON *h = header_of(b);
		cJSON *t = cJSON_GetObjectItem(h, "fc.weight");
		cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
		switch (k) {
		case 0: /* offsets beyond the file */
			cJSON_ReplaceItemInArray(off, 1, cJSON_CreateNumber(1e9));
			break;
		case 1: /* shape does not match the byte span */
			cJSON_ReplaceItemInArray(cJSON_GetObjectItem(t, "shape"), 0,
			                         cJSON_CreateNumber(4));
			break;
		case 2: /* consistent but wrong shape for the layer */
			cJSON_ReplaceItemInObject(t, "shape", cJSON_Parse("[1, 3, 48]"));
			break;
		case 3:
			cJSON_ReplaceItemInObject(t, "dtype", cJSON_CreateString("F16"));
			break;
		case 4: /* missing weight */
			cJSON_DeleteItemFromObject(h, "fc.weight");
			break;
		case 5: /* negative / fractional offsets */
			cJSON_ReplaceItemInArray(off, 0, cJSON_CreateNumber(-64));
			break;
		case 6:
			cJSON_ReplaceItemInArray(off, 0, cJSON_CreateNumber(0.5));
			break;
		case 7:
			edit_doc(h, doc_unknown_type);
			break;
		case 8:
			edit_doc(h, doc_bad_input);
			break;
		case 9:
			edit_doc(h, doc_bad_kernel);
			break;
		case 10:
			edit_doc(h, doc_version);
			break;
		case 11:
			edit_doc(h, doc_huge_input);
			break;
		}
		write_with_header(q, b, len, h);
		cJSON_Delete(h);
		char what[32];
		snprintf(what, sizeof what, "edit %d", k);
		expect_bad(q, what);
	}
	/* random byte flips in the header: load or fail, never crash */
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)b[i] << (8 * i);
	c = malloc(len);
	for (int it = 0; it < 300; it++) {
		memcpy(c, b, len);
		for (int k = 0; k < 3; k++)
			c[8 + tu_rand() % hl] = (uint8_t)tu_rand();
		spit(q, c, len);
		usv_model *m = NULL;
		if (usv_model_load(q, &m, eb, sizeof eb) == 0) {
			usv_session *s;
			usv_session_opts o = {.max_batch = 1};
			if (usv_session_new(m, &o, &s) == 0) {
				const usv_model_meta *mm = usv_model_get_meta(m);
				size_t n = (size_t)mm->input_c * mm->input_h * mm->input_w;
				float *x = calloc(n, sizeof(float));
				const float *y;
				int chw[3];
				assert_int_equal(usv_session_run(s, x, 1, &y, chw), 0);
				free(x);
				usv_session_free(s);
			}
			usv_model_free(m);
		}
	}
	free(c);
	free(b);
	/* a missing file */
	path_of(q, sizeof q, "missing.usvm");
	expect_bad(q, "missing");
}

static void test_npy(void **state)
{
	tu_seed(23);
	char p[300], eb[512];
	path_of(p, sizeof p, "a.npy");
	int64_t shp[3] = {3, 5, 4};
	float *x = tu_alloc_rand(60);
	assert_int_equal(usv_npy_write(p, x, 3, shp, eb, sizeof eb), 0);
	float *y;
	int nd;
	int64_t s2[USV_NPY_MAX_DIMS];
	assert_int_equal(usv_npy_read(p, &y, &nd, s2, eb, sizeof eb), 0);
	assert_int_equal(nd, 3);
	assert_memory_equal(shp, s2, sizeof shp);
	assert_memory_equal(x, y, 60 * sizeof(float));
	free(y);
	/* header is 64-aligned, starts with the magic and version 1.0 */
	size_t len;
	uint8_t *b = slurp(p, &len);
	assert_int_equal(len, 128 + 240);
	assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
	/* truncated / bad dtype / fortran order are refused */
	spit(p, b, len - 4);
	assert_true(usv_npy_read(p, &y, &nd, s2, eb, sizeof eb) < 0);
	assert_non_null(strstr(eb, p));
	char *hd = (char *)b + 10;
	char *dt = strstr(hd, "<f4");
	dt[1] = 'i';
	spit(p, b, len);
	assert_int_equal(usv_npy_read(p, &y, &nd, s2, eb, sizeof eb), -USV_ERR_UNSUPPORTED);
	dt[1] = 'f';
	char *fo = strstr(hd, "False");
	memcpy(fo, "True ", 5);
	spit(p, b, len);
	assert_int_equal(usv_npy_read(p, &y, &nd, s2, eb, sizeof eb), -USV_ERR_UNSUPPORTED);
	free(b);
	/* a float64 file written by hand (version 2.0 header) is converted */
	const char *h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
	size_t hlen = 128 - 12;
	uint8_t f8[128 + 16];
	memset(f8, ' ', sizeof f8);
	memcpy(f8, "\x93NUMPY\x02\x00", 8);
	f8[8] = (uint8_t)hlen, f8[9] = f8[10] = f8[11] = 0;
	memcpy(f8 + 12, h, strlen(h));
	f8[127] = '\n';
	double dv[2] = {1.5, -2.25};
	memcpy(f8 + 128, dv, 16);
	spit(p, f8, sizeof f8);
	assert_int_equal(usv_npy_read(p, &y, &nd, s2, eb, sizeof eb), 0);
	assert_int_equal(nd, 1);
	assert_int_equal(s2[0], 2);
	assert_true(y[0] == 1.5f && y[1] == -2.25f);
	free(y);
	free(x);
	/* the ImageNet mean shipped with the shared data, if present */
	const char *sd = getenv("USV_SHARED_DIR");
	if (sd) {
		snprintf(p, sizeof p, "%s/models/caffe/ilsvrc_2012_mean.npy", sd);
		if (access(p, R_OK) == 0) {
			assert_int_equal(usv_npy_read(p, &y, &nd, s2, eb, sizeof eb), 0);
			assert_int_equal(nd, 3);
			assert_int_equal(s2[0], 3);
			assert_int_equal(s2[1], 256);
			double s = 0;
			for (int i = 0; i < 256 * 256; i++)
				s += y[i];
			/* blue-channel mean of ImageNet is about 104 */
			assert_true(fabs(s / 65536 - 104) < 3);
			free(y);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_corrupt),
	    cmocka_unit_test(test_npy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
