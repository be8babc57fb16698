/*
 * NAME
 *	test_crop.c - unit tests of usv_crop_choose() and the default rules
 *
 * DESCRIPTION
 *	The paper's boxes (Philips EPIQ 1024x768 -> central 600x600, Toshiba
 *	Aplio XG 716x537 -> central 372x372) computed by hand from the
 *	centring formula; rule precedence over regions; largest 2-D region
 *	with clamping; centred square fallback; bad arguments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "usv/crop.h"

#include <errno.h>

static void expect_box(const usv_box *b, int x, int y, int w, int h)
{
	assert_int_equal(b->x, x);
	assert_int_equal(b->y, y);
	assert_int_equal(b->w, w);
	assert_int_equal(b->h, h);
}

static void test_paper_defaults(void **state)
{
	(void)state;
	size_t n;
	const usv_crop_rule *r = usv_crop_default_rules(&n);
	assert_true(n >= 2);
	usv_box b;
	enum usv_crop_source src;
	int idx;
	/* (1024 - 600) / 2 = 212, (768 - 600) / 2 = 84 */
	usv_crop_attrs philips = {"Philips Medical Systems", "EPIQ 7G", 768, 1024, NULL, 0};
	assert_int_equal(usv_crop_choose(r, n, &philips, &b, &src, &idx), 0);
	expect_box(&b, 212, 84, 600, 600);
	assert_int_equal(src, USV_CROP_RULE);
	assert_true(idx >= 0);
	/* (716 - 372) / 2 = 172, (537 - 372) / 2 = 82 */
	usv_crop_attrs toshiba = {"TOSHIBA_MEC_US", "Aplio XG", 537, 716, NULL, 0};
	assert_int_equal(usv_crop_choose(r, n, &toshiba, &b, &src, &idx), 0);
	expect_box(&b, 172, 82, 372, 372);
	assert_int_equal(src, USV_CROP_RULE);
	/* an EPIQ at another size is not matched by the rule */
	usv_crop_attrs other = {"philips", "epiq", 600, 800, NULL, 0};
	assert_int_equal(usv_crop_choose(r, n, &other, &b, &src, &idx), 0);
	assert_int_equal(src, USV_CROP_CENTRE);
	assert_int_equal(idx, -1);
	expect_box(&b, 100, 0, 600, 600);
}

static void test_regions(void **state)
{
	(void)state;
	usv_us_region g[] = {
	    {10, 20, 409, 319, USV_REGION_2D, 1, 0},     /* 400 x 300 */
	    {0, 0, 799, 599, USV_REGION_GRAPHICS, 0, 0}, /* not 2-D */
	    {500, 100, 900, 700, USV_REGION_2D, 1, 0},   /* clamped: 300 x 500 */
	    {50, 50, 40, 60, USV_REGION_2D, 1, 0},       /* inverted: skipped */
	};
	usv_crop_attrs a = {"ACME", "X", 600, 800, g, 4};
	usv_box b;
	enum usv_crop_source src;
	assert_int_equal(usv_crop_choose(NULL, 0, &a, &b, &src, NULL), 0);
	assert_int_equal(src, USV_CROP_REGION);
	expect_box(&b, 500, 100, 300, 500);

	/* a rule wins over regions; substring match is case-insensitive */
	usv_crop_rule rule = {"acm", NULL, 0, 0, 0, {1, 2, 30, 40}};
	int idx;
	assert_int_equal(usv_crop_choose(&rule, 1, &a, &b, &src, &idx), 0);
	assert_int_equal(src, USV_CROP_RULE);
	assert_int_equal(idx, 0);
	expect_box(&b, 1, 2, 30, 40);
	/* a rule box outside the frame is skipped */
	usv_crop_rule big = {NULL, NULL, 0, 0, 0, {700, 0, 200, 100}};
	assert_int_equal(usv_crop_choose(&big, 1, &a, &b, &src, &idx), 0);
	assert_int_equal(src, USV_CROP_REGION);
	/* model must match too */
	usv_crop_rule m = {"ACME", "Y", 0, 0, 1, {0, 0, 100, 100}};
	assert_int_equal(usv_crop_choose(&m, 1, &a, &b, &src, &idx), 0);
	assert_int_equal(src, USV_CROP_REGION);
}

static void test_centre_and_errors(void **state)
{
	(void)state;
	usv_box b;
	enum usv_crop_source src;
	usv_crop_attrs tall = {NULL, NULL, 700, 301, NULL, 0};
	assert_int_equal(usv_crop_choose(NULL, 0, &tall, &b, &src, NULL), 0);
	assert_int_equal(src, USV_CROP_CENTRE);
	expect_box(&b, 0, 199, 301, 301);
	usv_crop_attrs zero = {NULL, NULL, 0, 10, NULL, 0};
	assert_int_equal(usv_crop_choose(NULL, 0, &zero, &b, &src, NULL), -EINVAL);
	usv_crop_attrs huge = {NULL, NULL, 10, USV_CROP_MAX_DIM + 1, NULL, 0};
	assert_int_equal(usv_crop_choose(NULL, 0, &huge, &b, &src, NULL), -EINVAL);
	usv_crop_attrs noreg = {NULL, NULL, 10, 10, NULL, 3};
	assert_int_equal(usv_crop_choose(NULL, 0, &noreg, &b, &src, NULL), -EINVAL);
	assert_string_equal(usv_crop_source_name(USV_CROP_REGION), "region");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_paper_defaults),
	    cmocka_unit_test(test_regions),
	    cmocka_unit_test(test_centre_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
