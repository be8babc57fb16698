/*
 * NAME
 *	test_import_proto.c - protobuf wire format and prototxt reader tests
 *
 * DESCRIPTION
 *	Messages are encoded here by a tiny independent encoder (key =
 *	field << 3 | wire, little-endian fixed fields) and read back through
 *	the accessors; bad encodings (truncation, groups, overlong varints)
 *	must fail with -USV_ERR_FORMAT.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "caffe_proto.h"
#include "usv/err.h"

typedef struct enc {
	uint8_t b[4096];
	size_t n;
} enc;

static void put_varint(enc *e, uint64_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		e->b[e->n++] = c | (v ? 0x80 : 0);
	} while (v);
}

static void put_key(enc *e, unsigned f, unsigned w)
{
	put_varint(e, (uint64_t)f << 3 | w);
}

static void put_f32(enc *e, float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	for (int i = 0; i < 4; i++)
		e->b[e->n++] = (uint8_t)(u >> (8 * i));
}

static void put_f64(enc *e, double x)
{
	uint64_t u;
	memcpy(&u, &x, 8);
	for (int i = 0; i < 8; i++)
		e->b[e->n++] = (uint8_t)(u >> (8 * i));
}

static void put_bytes(enc *e, unsigned f, const void *p, size_t n)
{
	put_key(e, f, 2);
	put_varint(e, n);
	memcpy(e->b + e->n, p, n);
	e->n += n;
}

static void test_varint(void **state)
{
	const uint8_t a[] = {0x96, 0x01};
	const uint8_t *p = a;
	uint64_t v;
	assert_int_equal(cp_read_varint(&p, a + 2, &v), 0);
	assert_int_equal(v, 150);
	assert_ptr_equal(p, a + 2);
	/* max uint64: 9 x 0xff then 0x01 */
	uint8_t m[10];
	memset(m, 0xff, 9);
	m[9] = 0x01;
	p = m;
	assert_int_equal(cp_read_varint(&p, m + 10, &v), 0);
	assert_true(v == UINT64_MAX);
	/* truncated */
	p = a;
	assert_int_equal(cp_read_varint(&p, a + 1, &v), -USV_ERR_FORMAT);
	/* 11 bytes / overflow in the 10th */
	uint8_t o[11];
	memset(o, 0x80, 11);
	o[10] = 0;
	p = o;
	assert_int_equal(cp_read_varint(&p, o + 11, &v), -USV_ERR_FORMAT);
	m[9] = 0x02;
	p = m;
	assert_int_equal(cp_read_varint(&p, m + 10, &v), -USV_ERR_FORMAT);
	/* negative int32 is encoded in 10 bytes */
	enc e = {.n = 0};
	put_varint(&e, (uint64_t)(int64_t)-3);
	assert_int_equal(e.n, 10);
	p = e.b;
	assert_int_equal(cp_read_varint(&p, e.b + e.n, &v), 0);
	assert_int_equal((int64_t)v, -3);
}

/* A BlobProto-like message: shape{dim} packed, packed + unpacked floats,
 * doubles, a string, a nested message. */
static void test_wire_fields(void **state)
{
	enc sh = {.n = 0}, e = {.n = 0};
	/* BlobShape dim packed: 2, 3 */
	enc dims = {.n = 0};
	put_varint(&dims, 2);
	put_varint(&dims, 300);
	put_bytes(&sh, 1, dims.b, dims.n);
	put_bytes(&e, 7, sh.b, sh.n);
	/* data: packed [1.5, -2] then unpacked 3.25 */
	enc fl = {.n = 0};
	put_f32(&fl, 1.5f);
	put_f32(&fl, -2.0f);
	put_bytes(&e, 5, fl.b, fl.n);
	put_key(&e, 5, 5);
	put_f32(&e, 3.25f);
	/* double_data unpacked 0.125 */
	put_key(&e, 8, 1);
	put_f64(&e, 0.125);
	/* name-ish string field 9 and varint field 10 twice (last wins) */
	put_bytes(&e, 9, "conv1", 5);
	put_key(&e, 10, 0);
	put_varint(&e, 7);
	put_key(&e, 10, 0);
	put_varint(&e, 9);
	assert_int_equal(cp_check(e.b, e.n), 0);

	cp_msg m = cp_msg_bin(e.b, e.n), s;
	assert_int_equal(cp_get_msg(&m, 7, "shape", 0, &s), 0);
	int64_t d[4];
	int nd;
	assert_int_equal(cp_get_ints(&s, 1, "dim", d, 4, &nd), 0);
	assert_int_equal(nd, 2);
	assert_int_equal(d[0], 2);
	assert_int_equal(d[1], 300);
	assert_int_equal(cp_get_ints(&s, 1, "dim", d, 1, &nd), -USV_ERR_LIMIT);

	float f[8];
	size_t n;
	assert_int_equal(cp_get_floats(&m, 5, 8, "data", NULL, 0, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(cp_get_floats(&m, 5, 8, "data", f, 8, &n), 0);
	assert_true(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f && f[3] == 0.125f);
	assert_int_equal(cp_get_floats(&m, 5, 8, "data", f, 3, &n), -USV_ERR_LIMIT);
	assert_int_equal(cp_get_floats(&m, 5, 0, "data", f, 8, &n), 0);
	assert_int_equal(n, 3);

	char buf[16];
	assert_int_equal(cp_get_str(&m, 9, "name", 0, buf, sizeof buf), 0);
	assert_string_equal(buf, "conv1");
	assert_int_equal(cp_get_str(&m, 9, "name", 0, buf, 5), -USV_ERR_LIMIT);
	assert_int_equal(cp_get_str(&m, 9, "name", 1, buf, sizeof buf), -ENOENT);
	int64_t v;
	assert_int_equal(cp_get_int(&m, 10, "x", &v), 0);
	assert_int_equal(v, 9);
	assert_int_equal(cp_count(&m, 10, "x"), 2);
	assert_int_equal(cp_get_int(&m, 11, "x", &v), -ENOENT);
	/* a float read as a message is a format error */
	assert_int_equal(cp_get_msg(&m, 10, "x", 0, &s), -USV_ERR_FORMAT);

	/* every strict prefix that cuts a field must fail, never crash */
	int fails = 0;
	for (size_t k = 1; k < e.n; k++)
		fails += cp_check(e.b, k) < 0;
	assert_true(fails > 0);
	/* a length past the end */
	uint8_t bad[] = {0x2a, 0x10, 0x00};
	assert_int_equal(cp_check(bad, sizeof bad), -USV_ERR_FORMAT);
	/* start-group wire type 3 and wire type 7 */
	uint8_t grp[] = {0x0b, 0x0c};
	assert_int_equal(cp_check(grp, sizeof grp), -USV_ERR_FORMAT);
	uint8_t w7[] = {0x0f, 0x00};
	assert_int_equal(cp_check(w7, sizeof w7), -USV_ERR_FORMAT);
	/* field number 0 */
	uint8_t f0[] = {0x00, 0x01};
	assert_int_equal(cp_check(f0, sizeof f0), -USV_ERR_FORMAT);
	/* packed floats of a length that is not a multiple of 4 */
	enc pb = {.n = 0};
	put_bytes(&pb, 5, "abcde", 5);
	m = cp_msg_bin(pb.b, pb.n);
	assert_int_equal(cp_get_floats(&m, 5, 0, "data", NULL, 0, &n), -USV_ERR_FORMAT);
}

static const char *txt = "# a comment line\n"
                         "name: \"Net\\t\\\"q\\\"\\101\" # trailing comment\n"
                         "input: 'data'\n"
                         "input_dim: 1 input_dim: 3\n"
                         "input_dim: 0x20; input_dim: 32\n"
                         "layer {\n"
                         "  name: \"conv1\" type: \"Convolution\"\n"
                         "  convolution_param { num_output: 32 pad: 2 kernel_size: 5 "
                         "bias_term: false }\n"
                         "  param < lr_mult: 1.5e-1 >\n"
                         "}\n"
                         "layer: { name: \"pool1\" pooling_param { pool: AVE } "
                         "lrn_param { alpha: 5e-05 beta: .75 k: -1 } }\n"
                         "dims: [1, 2, 3]\n"
                         "s: \"ab\" \"cd\"\n";

static void test_text_parse(void **state)
{
	cp_text_msg *t;
	char err[256];
	assert_int_equal(cp_text_parse(txt, strlen(txt), &t, err, sizeof err), 0);
	cp_msg m = cp_msg_text(t), l, p;
	char buf[64];
	assert_int_equal(cp_get_str(&m, 1, "name", 0, buf, sizeof buf), 0);
	assert_string_equal(buf, "Net\t\"q\"A");
	assert_int_equal(cp_get_str(&m, 3, "input", 0, buf, sizeof buf), 0);
	assert_string_equal(buf, "data");
	int64_t d[8];
	int n;
	assert_int_equal(cp_get_ints(&m, 4, "input_dim", d, 8, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(d[2], 32);
	assert_int_equal(cp_count(&m, 100, "layer"), 2);
	assert_int_equal(cp_get_msg(&m, 100, "layer", 0, &l), 0);
	assert_int_equal(cp_get_str(&l, 2, "type", 0, buf, sizeof buf), 0);
	assert_string_equal(buf, "Convolution");
	assert_int_equal(cp_get_msg(&l, 106, "convolution_param", 0, &p), 0);
	int64_t v;
	assert_int_equal(cp_get_int(&p, 1, "num_output", &v), 0);
	assert_int_equal(v, 32);
	assert_int_equal(cp_get_int(&p, 2, "bias_term", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cp_get_msg(&l, 6, "param", 0, &p), 0);
	float f;
	assert_int_equal(cp_get_float(&p, 3, "lr_mult", &f), 0);
	assert_true(f == 0.15f);
	assert_int_equal(cp_get_msg(&m, 100, "layer", 1, &l), 0);
	assert_int_equal(cp_get_msg(&l, 121, "pooling_param", 0, &p), 0);
	static const char *const pn[] = {"MAX", "AVE"};
	static const int pv[] = {0, 1};
	int e;
	assert_int_equal(cp_get_enum(&p, 1, "pool", pn, pv, 2, &e), 0);
	assert_int_equal(e, 1);
	assert_int_equal(cp_get_msg(&l, 118, "lrn_param", 0, &p), 0);
	assert_int_equal(cp_get_float(&p, 2, "alpha", &f), 0);
	assert_true(f == 5e-05f);
	assert_int_equal(cp_get_float(&p, 3, "beta", &f), 0);
	assert_true(f == 0.75f);
	assert_int_equal(cp_get_float(&p, 5, "k", &f), 0);
	assert_true(f == -1.0f);
	assert_int_equal(cp_get_ints(&m, 0, "dims", d, 8, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(d[2], 3);
	assert_int_equal(cp_get_str(&m, 0, "s", 0, buf, sizeof buf), 0);
	assert_string_equal(buf, "abcd");
	/* a string is not an integer, a scalar not a message */
	assert_int_equal(cp_get_int(&m, 1, "name", &v), -USV_ERR_FORMAT);
	assert_int_equal(cp_get_msg(&m, 1, "name", 0, &p), -USV_ERR_FORMAT);
	cp_text_free(t);
}

static void expect_text_error(const char *s, const char *line)
{
	cp_text_msg *t = (cp_text_msg *)1;
	char err[256] = "";
	int rc = cp_text_parse(s, strlen(s), &t, err, sizeof err);
	assert_true(rc < 0);
	assert_null(t);
	assert_non_null(strstr(err, line));
}

static void test_text_errors(void **state)
{
	expect_text_error("layer {\n name: \"x\"\n", "line 3");
	expect_text_error("a: \"unterminated\n", "line 1");
	expect_text_error("a b", "line 1");
	expect_text_error("\n\nlayer { } }", "line 3");
	expect_text_error("a: @", "line 1");
	expect_text_error("a: [1, 2", "line 1");
	expect_text_error("a: \"\\q\"", "line 1");
	/* nesting cap */
	char deep[2 * CP_TEXT_MAX_DEPTH + 40] = "";
	for (int i = 0; i < CP_TEXT_MAX_DEPTH + 2; i++)
		strcat(deep, "a{");
	expect_text_error(deep, "nested");
	/* empty input is an empty message */
	cp_text_msg *t;
	char err[64];
	assert_int_equal(cp_text_parse("  # only a comment", 18, &t, err, sizeof err), 0);
	assert_int_equal(t->n, 0);
	cp_text_free(t);
}

/* Random bytes through both readers: errors are fine, crashes are not. */
static void test_fuzz(void **state)
{
	uint8_t b[512];
	uint32_t x = 12345;
	for (int it = 0; it < 2000; it++) {
		size_t n = (size_t)(it % 500) + 1;
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			b[i] = (uint8_t)(x >> 16);
		}
		cp_msg m = cp_msg_bin(b, n), s;
		(void)cp_check(b, n);
		int64_t d[16];
		int nd;
		size_t nf;
		char buf[32];
		(void)cp_get_ints(&m, 1, "a", d, 16, &nd);
		(void)cp_get_floats(&m, 5, 8, "a", NULL, 0, &nf);
		(void)cp_get_str(&m, 2, "a", 0, buf, sizeof buf);
		if (cp_get_msg(&m, 7, "a", 0, &s) == 0)
			(void)cp_check(s.bin, s.len);
		cp_text_msg *t = NULL;
		char err[128];
		if (cp_text_parse((const char *)b, n, &t, err, sizeof err) == 0)
			cp_text_free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_varint),     cmocka_unit_test(test_wire_fields),
	    cmocka_unit_test(test_text_parse), cmocka_unit_test(test_text_errors),
	    cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
