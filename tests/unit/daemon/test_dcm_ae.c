/*
 * NAME
 *	test_dcm_ae.c - the one AE title rule (usv/dcm_ae.h), table-driven
 *
 * DESCRIPTION
 *	DICOM PS3.5 AE: 1..16 characters of the default repertoire without
 *	backslash or control characters, not only spaces; padding spaces
 *	count towards the 16.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "usv/dcm_ae.h"

struct ae_case {
	const char *ae;
	int ok;
	const char *why; /* substring of the reason when !ok */
};

static const struct ae_case cases[] = {
    {"USVIEW", 1, NULL},
    {"A", 1, NULL},
    {"ABCDEFGHIJKLMNOP", 1, NULL}, /* 16 */
    {"STORE SCP", 1, NULL},        /* inner space */
    {" PACS ", 1, NULL},           /* padding is not significant */
    {"a-b_c.d@e:f!~", 1, NULL},    /* printable ASCII */
    {"", 0, "1 to 16"},
    {"ABCDEFGHIJKLMNOPQ", 0, "1 to 16"}, /* 17 */
    {"ABCDEFGHIJKLMNOP ", 0, "1 to 16"}, /* 16 + padding: 17 bytes */
    {"A\\B", 0, "backslash"},
    {"A\tB", 0, "control"},
    {"A\nB", 0, "control"},
    {"\x7f", 0, "control"},
    {"CAF\xc3\x89", 0, "control"}, /* not the default repertoire */
    {" ", 0, "blank"},
    {"                ", 0, "blank"},
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char why[128] = "";
		int r = usv_dcm_ae_check(cases[i].ae, why, sizeof why);
		if (cases[i].ok && r != 0)
			fail_msg("case %zu '%s': refused: %s", i, cases[i].ae, why);
		if (!cases[i].ok && (r != -EINVAL || !strstr(why, cases[i].why)))
			fail_msg("case %zu: r=%d why='%s', want -EINVAL and '%s'", i, r, why,
			         cases[i].why);
	}
}

static void test_null_and_no_buffer(void **state)
{
	(void)state;
	assert_int_equal(usv_dcm_ae_check(NULL, NULL, 0), -EINVAL);
	assert_int_equal(usv_dcm_ae_check("A\\B", NULL, 0), -EINVAL);
	assert_int_equal(usv_dcm_ae_check("OK", NULL, 0), 0);
	/* a long string is refused without reading it all */
	char big[4096];
	memset(big, 'A', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_int_equal(usv_dcm_ae_check(big, NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_null_and_no_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
