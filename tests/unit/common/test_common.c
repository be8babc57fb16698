#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "usv/err.h"
#include "usv/parse.h"
#include "usv/sha256.h"

#include <errno.h>
#include <math.h>

static void hex_of(const char *msg, size_t len, char out[65])
{
	usv_sha256 c;
	uint8_t d[32];
	usv_sha256_init(&c);
	/* feed in odd pieces to exercise buffering */
	for (size_t i = 0; i < len; i += 7)
		usv_sha256_update(&c, msg + i, len - i < 7 ? len - i : 7);
	usv_sha256_final(&c, d);
	usv_sha256_hex(d, out);
}

/* FIPS 180-4 example vectors. */
static void test_sha256_vectors(void **state)
{
	char h[65];
	hex_of("", 0, h);
	assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	hex_of(m, strlen(m), h);
	assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_strerror(void **state)
{
	assert_string_equal(usv_strerror(-USV_ERR_FORMAT), "malformed input");
	char buf[32];
	assert_int_equal(usv_seterr(buf, sizeof buf, -EINVAL, "x=%d", 5), -EINVAL);
	assert_string_equal(buf, "x=5");
}

/* One case of a strict parser: input, bounds, and the expected outcome. */
typedef struct int_case {
	const char *s;
	long lo, hi;
	int ok;
	long want;
} int_case;

static void test_parse_int_table(void **state)
{
	(void)state;
	static const int_case cases[] = {
	    {"0", 0, 10, 1, 0},
	    {"10", 0, 10, 1, 10},                           /* upper bound included */
	    {"11", 0, 10, 0, 0},                            /* one past it */
	    {"-1", 0, 10, 0, 0},                            /* one below the lower bound */
	    {"-5", -5, 5, 1, -5},                           /* lower bound included, negative */
	    {"+7", 0, 10, 1, 7},                            /* strtol's sign is accepted */
	    {"007", 0, 10, 1, 7},                           /* decimal, not octal */
	    {"0x10", 0, 100, 0, 0},                         /* no hexadecimal */
	    {"3x", 0, 10, 0, 0},                            /* trailing junk */
	    {"3 ", 0, 10, 0, 0},                            /* trailing space */
	    {" 3", 0, 10, 0, 0},                            /* leading space */
	    {"\t3", 0, 10, 0, 0},                           /* leading tab */
	    {"", 0, 10, 0, 0},                              /* empty */
	    {"-", -10, 10, 0, 0},                           /* sign alone */
	    {"1.5", 0, 10, 0, 0},                           /* not an integer */
	    {"99999999999999999999999", 0, LONG_MAX, 0, 0}, /* overflows long */
	    {"-99999999999999999999999", LONG_MIN, 0, 0, 0},
	    {"9223372036854775807", 0, LONG_MAX, 1, LONG_MAX},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const int_case *c = &cases[i];
		long v = 12345;
		int rc = usv_parse_int(c->s, c->lo, c->hi, &v);
		if (c->ok) {
			assert_int_equal(rc, 0);
			assert_int_equal(v, c->want);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_int_equal(v, 12345); /* untouched on failure */
		}
	}
	long v = 1;
	assert_int_equal(usv_parse_int(NULL, 0, 10, &v), -EINVAL);
	assert_int_equal(v, 1);
}

typedef struct u64_case {
	const char *s;
	uint64_t lo, hi;
	int ok;
	uint64_t want;
} u64_case;

static void test_parse_u64_table(void **state)
{
	(void)state;
	static const u64_case cases[] = {
	    {"0", 0, UINT64_MAX, 1, 0},
	    {"18446744073709551615", 0, UINT64_MAX, 1, UINT64_MAX}, /* the largest */
	    {"18446744073709551616", 0, UINT64_MAX, 0, 0},          /* overflow */
	    {"-1", 0, UINT64_MAX, 0, 0}, /* strtoull would wrap this to UINT64_MAX */
	    {"-0", 0, UINT64_MAX, 0, 0}, /* no sign at all */
	    {"+1", 0, UINT64_MAX, 0, 0},
	    {"5", 5, 9, 1, 5}, /* bounds included */
	    {"9", 5, 9, 1, 9},
	    {"4", 5, 9, 0, 0}, /* and enforced */
	    {"10", 5, 9, 0, 0},
	    {"7k", 0, 100, 0, 0},         /* trailing junk */
	    {" 7", 0, 100, 0, 0},         /* leading space */
	    {" -1", 0, UINT64_MAX, 0, 0}, /* leading space before a sign */
	    {"", 0, 100, 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const u64_case *c = &cases[i];
		uint64_t v = 777;
		int rc = usv_parse_u64(c->s, c->lo, c->hi, &v);
		if (c->ok) {
			assert_int_equal(rc, 0);
			assert_true(v == c->want);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_true(v == 777);
		}
	}
	uint64_t v = 3;
	assert_int_equal(usv_parse_u64(NULL, 0, 10, &v), -EINVAL);
	assert_true(v == 3);
}

typedef struct float_case {
	const char *s;
	double lo, hi;
	int ok;
	double want;
} float_case;

static void test_parse_float_table(void **state)
{
	(void)state;
	static const float_case cases[] = {
	    {"0.5", 0, 1, 1, 0.5},
	    {"1", 0, 1, 1, 1}, /* bounds included */
	    {"0", 0, 1, 1, 0},
	    {"-0.25", -1, 1, 1, -0.25},
	    {"1e-3", 0, 1, 1, 1e-3},      /* exponent form */
	    {"1.0000001", 0, 1, 0, 0},    /* just past the upper bound */
	    {"-1e-9", 0, 1, 0, 0},        /* just below the lower bound */
	    {"nan", -1e300, 1e300, 0, 0}, /* not finite */
	    {"NAN", -1e300, 1e300, 0, 0},
	    {"inf", -INFINITY, INFINITY, 0, 0}, /* not finite even if in range */
	    {"-infinity", -INFINITY, INFINITY, 0, 0},
	    {"1e999", 0, INFINITY, 0, 0}, /* overflows double */
	    {"0.5x", 0, 1, 0, 0},         /* trailing junk */
	    {"0.5 ", 0, 1, 0, 0},
	    {" 0.5", 0, 1, 0, 0}, /* leading space */
	    {"", 0, 1, 0, 0},
	    {".", 0, 1, 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const float_case *c = &cases[i];
		double v = 42;
		int rc = usv_parse_float(c->s, c->lo, c->hi, &v);
		if (c->ok) {
			assert_int_equal(rc, 0);
			assert_true(v == c->want);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_true(v == 42);
		}
	}
	double v = 2;
	assert_int_equal(usv_parse_float(NULL, 0, 10, &v), -EINVAL);
	assert_true(v == 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sha256_vectors),    cmocka_unit_test(test_strerror),
	    cmocka_unit_test(test_parse_int_table),   cmocka_unit_test(test_parse_u64_table),
	    cmocka_unit_test(test_parse_float_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
