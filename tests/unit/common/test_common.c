#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "usv/err.h"
#include "usv/sha256.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sha256_vectors),
	    cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
