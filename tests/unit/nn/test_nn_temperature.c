/*
 * NAME
 *	test_nn_temperature.c - the calibration temperature of a model:
 *	engine softmax with T, model file round trip, old files, bad values
 *
 * DESCRIPTION
 *	A small net (fc -> relu fc -> softmax "prob") run by the engine with
 *	meta.temperature T is compared with a naive softmax(logits / T) in
 *	double, the logits taken from the same session (keep_all); the
 *	override usv_model_opts.temperature and a net without a softmax
 *	(caller's usv_softmax_t) are checked the same way. The file side:
 *	T survives write / read / load exactly; a file without the key (as
 *	written before it existed, and as written now for T = 1) loads with
 *	T = 1; out-of-range or non-numeric values are rejected with an error
 *	naming the file and the key. Header edits use cJSON directly.
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

#define NC 5
#define IN 12

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/usv_nn_temp_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void add(usv_netdef *d, const char *name, const char *in, usv_layer_type t, int nout,
                int in_c)
{
	usv_layer_def l;
	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "%s", name);
	snprintf(l.inputs[0], USV_NAME_MAX, "%s", in);
	l.n_inputs = 1;
	l.type = t;
	l.num_output = nout;
	l.has_bias = t == USV_LAYER_FC;
	l.act = t == USV_LAYER_FC && nout != NC ? USV_ACT_RELU : USV_ACT_NONE;
	tu_layer(d, &l, in_c, 1, 1);
}

/* data [IN] -> fc1 (8, relu) -> logits (NC) [-> prob (softmax)], with
 * labels and temperature t (0 = leave unset). The logits are scaled up
 * so that T visibly changes the probabilities. */
static usv_netdef *make_net(int with_softmax, float t)
{
	usv_netdef *d = tu_netdef(IN, 1, 1);
	add(d, "fc1", "data", USV_LAYER_FC, 8, IN);
	add(d, "logits", "fc1", USV_LAYER_FC, NC, 8);
	int nd;
	int64_t shp[4];
	float *w = usv_netdef_tensor(d, "logits.weight", &nd, shp);
	for (int i = 0; i < NC * 8; i++)
		w[i] *= 6;
	if (with_softmax)
		add(d, "prob", "logits", USV_LAYER_SOFTMAX, 0, 0);
	usv_model_meta m = *usv_netdef_meta(d);
	static const char *labels[NC] = {"a", "b", "c", "d", "e"};
	m.n_labels = NC;
	m.labels = labels;
	m.output_layer = with_softmax ? "prob" : "logits";
	m.output_is_prob = with_softmax;
	m.temperature = t;
	assert_int_equal(usv_netdef_set_meta(d, &m), 0);
	return d;
}

/* softmax(z / t) in double, as floats. */
static void naive_softmax_t(const float *z, int n, double t, float *out)
{
	double e[NC], s = 0;
	for (int k = 0; k < n; k++)
		s += e[k] = exp((double)z[k] / t);
	for (int k = 0; k < n; k++)
		out[k] = (float)(e[k] / s);
}

/* Runs B inputs through m; out[B][NC] probabilities (the model's, or
 * the caller's usv_softmax_t when the output is logits), z[B][NC] the
 * logits of the same run. */
static void run(const usv_model *m, const float *x, int B, float *out, float *z)
{
	usv_session *s;
	usv_session_opts o = {.max_batch = B, .threads = 1, .keep_all = 1};
	assert_int_equal(usv_session_new(m, &o, &s), 0);
	const float *y;
	int chw[3];
	assert_int_equal(usv_session_run(s, x, B, &y, chw), 0);
	assert_int_equal(chw[0], NC);
	memcpy(out, y, (size_t)B * NC * sizeof(float));
	const float *lz = usv_session_blob(s, "logits", chw);
	assert_non_null(lz);
	memcpy(z, lz, (size_t)B * NC * sizeof(float));
	const usv_model_meta *mm = usv_model_get_meta(m);
	if (!mm->output_is_prob)
		for (int b = 0; b < B; b++)
			usv_softmax_t(out + (size_t)b * NC, NC, usv_model_temperature(m));
	usv_session_free(s);
}

static void expect_softmax_t(const float *p, const float *z, int B, double t)
{
	for (int b = 0; b < B; b++) {
		float ref[NC];
		naive_softmax_t(z + (size_t)b * NC, NC, t, ref);
		for (int k = 0; k < NC; k++)
			if (!(fabsf(p[b * NC + k] - ref[k]) <= 2e-6f + 1e-5f * ref[k]))
				fail_msg("T %g row %d class %d: %g vs naive %g", t, b, k,
				         (double)p[b * NC + k], (double)ref[k]);
	}
}

/* The engine's softmax output layer divides by T; so does the caller's
 * usv_softmax_t on a logits model; opts.temperature overrides T. */
static void test_engine_softmax_t(void **state)
{
	(void)state;
	enum { B = 16 };
	static const float ts[] = {0.05f, 0.4f, 1.0f, 2.5f, 100.0f};
	tu_seed(31);
	float *x = tu_alloc_rand(B * IN);
	float p[B * NC], z[B * NC], p1[B * NC], z1[B * NC];
	char eb[512];
	for (int i = 0; i < 5; i++) {
		for (int sm = 0; sm < 2; sm++) {
			tu_seed(32); /* same weights for every T */
			usv_netdef *d = make_net(sm, ts[i]);
			usv_model *m;
			assert_int_equal(usv_model_from_netdef(d, &m, eb, sizeof eb), 0);
			assert_true(usv_model_temperature(m) == ts[i]);
			assert_true(usv_model_get_meta(m)->temperature == ts[i]);
			run(m, x, B, p, z);
			expect_softmax_t(p, z, B, ts[i]);
			usv_model_free(m);
			/* the override: T = 1 gives the plain softmax of the same logits */
			usv_model_opts o = usv_model_opts_default();
			o.temperature = 1.0f;
			assert_int_equal(usv_model_from_netdef_ex(d, &o, &m, eb, sizeof eb), 0);
			assert_true(usv_model_temperature(m) == 1.0f);
			run(m, x, B, p1, z1);
			assert_memory_equal(z, z1, sizeof z);
			expect_softmax_t(p1, z1, B, 1.0);
			/* T != 1 does change the probabilities (the logits are large) */
			float diff = 0;
			for (int k = 0; k < B * NC; k++)
				diff = fmaxf(diff, fabsf(p[k] - p1[k]));
			assert_true(ts[i] == 1.0f ? diff == 0 : diff > 1e-3f);
			/* accuracy unchanged: the argmax is the same at every T */
			for (int b = 0; b < B; b++) {
				int a, c;
				usv_topk(p + b * NC, NC, 1, &a);
				usv_topk(p1 + b * NC, NC, 1, &c);
				assert_int_equal(a, c);
			}
			usv_model_free(m);
			usv_netdef_free(d);
		}
	}
	/* unset (0) in a hand-built meta means 1 */
	tu_seed(32);
	usv_netdef *d = make_net(1, 0.0f);
	assert_true(usv_netdef_meta(d)->temperature == 1.0f);
	/* out of range: the meta setter and the override refuse it */
	usv_model_meta mm = *usv_netdef_meta(d);
	float bad[] = {0.01f, -1.0f, 101.0f, NAN, INFINITY};
	for (int i = 0; i < 5; i++) {
		mm.temperature = bad[i];
		assert_int_equal(usv_netdef_set_meta(d, &mm), -EINVAL);
		usv_model_opts o = usv_model_opts_default();
		o.temperature = bad[i];
		usv_model *m = (usv_model *)1;
		eb[0] = 0;
		assert_true(usv_model_from_netdef_ex(d, &o, &m, eb, sizeof eb) < 0);
		assert_null(m);
		assert_non_null(strstr(eb, "temperature"));
	}
	usv_netdef_free(d);
	free(x);
}

static void path_of(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", tmpdir, name);
}

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

static uint64_t hlen_of(const uint8_t *b)
{
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)b[i] << (8 * i);
	return hl;
}

/* The "meta" object of the file's usview document (caller frees *doc). */
static cJSON *file_meta(const char *p, cJSON **hdr, cJSON **doc)
{
	size_t len;
	uint8_t *b = slurp(p, &len);
	*hdr = cJSON_ParseWithLength((const char *)b + 8, hlen_of(b));
	free(b);
	assert_non_null(*hdr);
	cJSON *md = cJSON_GetObjectItem(*hdr, "__metadata__");
	*doc = cJSON_Parse(cJSON_GetObjectItem(md, "usview")->valuestring);
	assert_non_null(*doc);
	return cJSON_GetObjectItem(*doc, "meta");
}

/* Rewrites src into dst with meta.<key> replaced by v (NULL: removed),
 * keeping the data area. */
static void write_with_key(const char *src, const char *dst, const char *key, cJSON *v)
{
	size_t len;
	uint8_t *b = slurp(src, &len);
	cJSON *hdr, *doc;
	cJSON *meta = file_meta(src, &hdr, &doc);
	cJSON_DeleteItemFromObject(meta, key);
	if (v)
		cJSON_AddItemToObject(meta, key, v);
	char *t = cJSON_PrintUnformatted(doc);
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(hdr, "__metadata__"), "usview",
	                          cJSON_CreateString(t));
	free(t);
	char *txt = cJSON_PrintUnformatted(hdr);
	size_t tl = strlen(txt), padded = (8 + tl + 63) / 64 * 64 - 8;
	uint64_t hl = hlen_of(b);
	size_t dl = len - 8 - hl;
	FILE *f = fopen(dst, "wb");
	assert_non_null(f);
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
	assert_int_equal(fwrite(le, 1, 8, f), 8);
	assert_int_equal(fwrite(txt, 1, tl, f), tl);
	for (size_t i = tl; i < padded; i++)
		fputc(' ', f);
	assert_int_equal(fwrite(b + 8 + hl, 1, dl, f), dl);
	assert_int_equal(fclose(f), 0);
	free(txt);
	free(b);
	cJSON_Delete(doc);
	cJSON_Delete(hdr);
}

static void write_with_temperature(const char *src, const char *dst, cJSON *v)
{
	write_with_key(src, dst, "temperature", v);
}

static float loaded_temperature(const char *p)
{
	char eb[512];
	usv_model *m;
	int rc = usv_model_load(p, &m, eb, sizeof eb);
	if (rc)
		fail_msg("%s", eb);
	float t = usv_model_temperature(m);
	usv_model_free(m);
	usv_netdef *d;
	assert_int_equal(usv_netdef_read(p, &d, eb, sizeof eb), 0);
	assert_true(usv_netdef_meta(d)->temperature == t);
	usv_netdef_free(d);
	return t;
}

static void test_file_roundtrip(void **state)
{
	(void)state;
	char p[300], q[300], eb[512];
	path_of(p, sizeof p, "cal.usvm");
	path_of(q, sizeof q, "edit.usvm");
	/* a fitted T (not a short decimal) survives exactly */
	const float t = 1.83726513f;
	tu_seed(33);
	usv_netdef *d = make_net(1, t);
	assert_int_equal(usv_netdef_write(d, p, eb, sizeof eb), 0);
	cJSON *hdr, *doc;
	cJSON *meta = file_meta(p, &hdr, &doc);
	cJSON *tj = cJSON_GetObjectItem(meta, "temperature");
	assert_true(cJSON_IsNumber(tj));
	assert_true((float)tj->valuedouble == t);
	cJSON_Delete(doc);
	cJSON_Delete(hdr);
	assert_true(loaded_temperature(p) == t);
	/* the loaded model computes what the in-memory one computes */
	usv_model *ml, *mm;
	assert_int_equal(usv_model_load(p, &ml, eb, sizeof eb), 0);
	assert_int_equal(usv_model_from_netdef(d, &mm, eb, sizeof eb), 0);
	float *x = tu_alloc_rand(4 * IN), pl[4 * NC], pm[4 * NC], z[4 * NC];
	run(ml, x, 4, pl, z);
	run(mm, x, 4, pm, z);
	assert_memory_equal(pl, pm, sizeof pl);
	expect_softmax_t(pl, z, 4, t);
	free(x);
	usv_model_free(ml);
	usv_model_free(mm);
	usv_netdef_free(d);

	/* T = 1 is written as no key at all: the file of an uncalibrated
	 * model is what it was before the key existed */
	tu_seed(33);
	d = make_net(1, 1.0f);
	assert_int_equal(usv_netdef_write(d, q, eb, sizeof eb), 0);
	usv_netdef_free(d);
	meta = file_meta(q, &hdr, &doc);
	assert_null(cJSON_GetObjectItem(meta, "temperature"));
	cJSON_Delete(doc);
	cJSON_Delete(hdr);
	assert_true(loaded_temperature(q) == 1.0f);

	/* an old file (the key removed from a calibrated one) loads with T = 1,
	 * and so does an explicit null */
	write_with_temperature(p, q, NULL);
	assert_true(loaded_temperature(q) == 1.0f);
	write_with_temperature(p, q, cJSON_CreateNull());
	assert_true(loaded_temperature(q) == 1.0f);
	/* the ends of the range are accepted */
	write_with_temperature(p, q, cJSON_CreateNumber(USV_TEMPERATURE_MIN));
	assert_true(loaded_temperature(q) == USV_TEMPERATURE_MIN);
	write_with_temperature(p, q, cJSON_CreateNumber(100));
	assert_true(loaded_temperature(q) == 100.0f);
}

static void test_file_bad_temperature(void **state)
{
	(void)state;
	char p[300], q[300], eb[512];
	path_of(p, sizeof p, "good.usvm");
	path_of(q, sizeof q, "bad-temperature.usvm");
	tu_seed(34);
	usv_netdef *d = make_net(1, 2.0f);
	assert_int_equal(usv_netdef_write(d, p, eb, sizeof eb), 0);
	usv_netdef_free(d);
	cJSON *bad[] = {cJSON_CreateNumber(0),     cJSON_CreateNumber(-2),
	                cJSON_CreateNumber(0.049), cJSON_CreateNumber(100.5),
	                cJSON_CreateNumber(1e300), cJSON_CreateString("2"),
	                cJSON_CreateTrue(),        cJSON_CreateArray()};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_with_temperature(p, q, bad[i]);
		usv_model *m = (usv_model *)1;
		eb[0] = 0;
		int rc = usv_model_load(q, &m, eb, sizeof eb);
		assert_true(rc < 0);
		assert_null(m);
		/* one line naming the file and the key */
		assert_non_null(strstr(eb, q));
		assert_non_null(strstr(eb, "meta.temperature"));
		assert_null(strchr(eb, '\n'));
		if (i == 0)
			print_message("%s\n", eb);
		usv_netdef *r = (usv_netdef *)1;
		assert_true(usv_netdef_read(q, &r, eb, sizeof eb) < 0);
		assert_null(r);
		assert_non_null(strstr(eb, q));
	}
}

/* meta.test_views: written only when > 1, read back, range-checked with
 * a message naming the key; the views' windows. */
static void test_file_test_views(void **state)
{
	(void)state;
	char p[300], q[300], eb[512];
	path_of(p, sizeof p, "views.usvm");
	path_of(q, sizeof q, "views-edit.usvm");
	tu_seed(35);
	usv_netdef *d = make_net(1, 1.0f);
	usv_model_meta m = *usv_netdef_meta(d);
	assert_int_equal(m.test_views, 1);
	m.test_views = 3;
	assert_int_equal(usv_netdef_set_meta(d, &m), -EINVAL);
	m.test_views = 10;
	assert_int_equal(usv_netdef_set_meta(d, &m), 0);
	assert_int_equal(usv_netdef_write(d, p, eb, sizeof eb), 0);
	usv_netdef_free(d);
	cJSON *hdr, *doc, *meta = file_meta(p, &hdr, &doc);
	assert_int_equal(cJSON_GetObjectItem(meta, "test_views")->valueint, 10);
	cJSON_Delete(doc);
	cJSON_Delete(hdr);
	usv_model *ml;
	assert_int_equal(usv_model_load(p, &ml, eb, sizeof eb), 0);
	assert_int_equal(usv_model_get_meta(ml)->test_views, 10);
	usv_model_free(ml);
	/* absent (older files) and null: 1 */
	write_with_key(p, q, "test_views", NULL);
	assert_int_equal(usv_model_load(q, &ml, eb, sizeof eb), 0);
	assert_int_equal(usv_model_get_meta(ml)->test_views, 1);
	usv_model_free(ml);
	write_with_key(p, q, "test_views", cJSON_CreateNumber(2));
	assert_int_equal(usv_model_load(q, &ml, eb, sizeof eb), 0);
	assert_int_equal(usv_model_get_meta(ml)->test_views, 2);
	usv_model_free(ml);
	cJSON *bad[] = {cJSON_CreateNumber(3), cJSON_CreateNumber(11), cJSON_CreateNumber(-1),
	                cJSON_CreateString("10")};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_with_key(p, q, "test_views", bad[i]);
		usv_model *mb = (usv_model *)1;
		eb[0] = 0;
		assert_true(usv_model_load(q, &mb, eb, sizeof eb) < 0);
		assert_null(mb);
		assert_non_null(strstr(eb, q));
	}
	/* the windows: 256 -> 227, centre (-1 = centred), corners, mirrors */
	usv_model_meta w = {.input_w = 227, .input_h = 227, .resize_w = 256, .resize_h = 256};
	const int want[10][3] = {{-1, -1, 0}, {-1, -1, 1}, {0, 0, 0},  {0, 0, 1},   {29, 0, 0},
	                         {29, 0, 1},  {0, 29, 0},  {0, 29, 1}, {29, 29, 0}, {29, 29, 1}};
	for (int v = 0; v < USV_MAX_VIEWS; v++) {
		int ox, oy, fl;
		usv_preprocess_view(&w, v, &ox, &oy, &fl);
		assert_int_equal(ox, want[v][0]);
		assert_int_equal(oy, want[v][1]);
		assert_int_equal(fl, want[v][2]);
	}
	for (int n = -1; n <= 12; n++)
		assert_int_equal(usv_views_valid(n), n == 1 || n == 2 || n == 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_engine_softmax_t),
	    cmocka_unit_test(test_file_roundtrip),
	    cmocka_unit_test(test_file_bad_temperature),
	    cmocka_unit_test(test_file_test_views),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
