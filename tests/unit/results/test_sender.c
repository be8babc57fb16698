/*
 * NAME
 *	test_sender.c - unit tests of the sender's pure parts
 *
 * DESCRIPTION
 *	Backoff (exponential, capped, jitter in [d/2, d]), destination
 *	defaults and checks, the kind / SOP class filter, and the mapping
 *	from the configuration's destination.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "sender.h"
#include "usv/config.h"

static usv_dest good_dest(void)
{
	usv_dest d;

	memset(&d, 0, sizeof d);
	strcpy(d.name, "pacs");
	strcpy(d.called_ae, "PACS");
	strcpy(d.calling_ae, "USVIEW");
	strcpy(d.host, "127.0.0.1");
	d.port = 104;
	usv_dest_defaults(&d);
	return d;
}

static void test_backoff(void **state)
{
	usv_dest d = good_dest();
	(void)state;

	d.backoff_base_s = 30;
	d.backoff_max_s = 3600;
	/* u = 0 gives d/2, u -> 1 gives d */
	assert_float_equal(usv_backoff_delay(&d, 1, 0.0), 15.0, 1e-9);
	assert_float_equal(usv_backoff_delay(&d, 1, 0.999999), 30.0, 1e-3);
	assert_float_equal(usv_backoff_delay(&d, 2, 0.0), 30.0, 1e-9);
	assert_float_equal(usv_backoff_delay(&d, 3, 0.0), 60.0, 1e-9);
	assert_float_equal(usv_backoff_delay(&d, 7, 0.5), 0.75 * 1920.0, 1e-9);
	/* capped */
	assert_float_equal(usv_backoff_delay(&d, 8, 0.0), 1800.0, 1e-9);
	assert_float_equal(usv_backoff_delay(&d, 1000, 0.999999), 3600.0, 1e-2);
	/* out-of-range u treated as 0 */
	assert_float_equal(usv_backoff_delay(&d, 1, 7.0), 15.0, 1e-9);
	for (uint32_t n = 1; n < 40; n++) {
		double a = usv_backoff_delay(&d, n, 0.0), b = usv_backoff_delay(&d, n + 1, 0.0);
		assert_true(b >= a);
	}
}

static void test_dest_check(void **state)
{
	usv_dest d = good_dest();
	(void)state;

	assert_int_equal(usv_dest_check(&d, NULL, 0), 0);
	assert_int_equal(d.kinds, USV_DEST_SR | USV_DEST_TAGGED);
	assert_int_equal(d.max_attempts, 10);
	strcpy(d.name, "../x");
	assert_int_equal(usv_dest_check(&d, NULL, 0), -EINVAL);
	d = good_dest();
	strcpy(d.called_ae, "    ");
	assert_int_equal(usv_dest_check(&d, NULL, 0), -EINVAL);
	d = good_dest();
	strcpy(d.calling_ae, "A\\B");
	assert_int_equal(usv_dest_check(&d, NULL, 0), -EINVAL);
	d = good_dest();
	d.port = 0;
	assert_int_equal(usv_dest_check(&d, NULL, 0), -EINVAL);
	d = good_dest();
	d.backoff_max_s = 1;
	assert_int_equal(usv_dest_check(&d, NULL, 0), -EINVAL);
	d = good_dest();
	d.host[0] = '\0';
	assert_int_equal(usv_dest_check(&d, NULL, 0), -EINVAL);
}

static void test_wants(void **state)
{
	usv_dest d = good_dest();
	(void)state;

	assert_true(usv_sender_wants(&d, USV_DEST_SR, "1.2.3"));
	assert_true(usv_sender_wants(&d, USV_DEST_TAGGED, NULL));
	d.kinds = USV_DEST_SR;
	assert_false(usv_sender_wants(&d, USV_DEST_TAGGED, "1.2.3"));
	d.kinds = USV_DEST_TAGGED;
	d.nsop = 1;
	strcpy(d.sop_classes[0], "1.2.840.10008.5.1.4.1.1.6.1");
	assert_true(usv_sender_wants(&d, USV_DEST_TAGGED, "1.2.840.10008.5.1.4.1.1.6.1"));
	assert_false(usv_sender_wants(&d, USV_DEST_TAGGED, "1.2.840.10008.5.1.4.1.1.3.1"));
	assert_false(usv_sender_wants(&d, USV_DEST_SR, "1.2.840.10008.5.1.4.1.1.6.1"));
}

static void test_from_config(void **state)
{
	struct usv_config_dest c;
	usv_dest d;
	(void)state;

	memset(&c, 0, sizeof c);
	strcpy(c.name, "pacs-1");
	strcpy(c.ae_title, "PACS");
	strcpy(c.host, "10.0.0.5");
	c.port = 11112;
	c.send = USV_CFG_SEND_SR;
	c.max_attempts = 4;
	c.backoff_initial_s = 5;
	c.backoff_max_s = 60;
	c.max_age_h = 2;
	assert_int_equal(usv_dest_from_config(&c, "USVIEW", &d), 0);
	assert_string_equal(d.name, "pacs-1");
	assert_string_equal(d.called_ae, "PACS");
	assert_string_equal(d.calling_ae, "USVIEW");
	assert_int_equal(d.port, 11112);
	assert_int_equal(d.kinds, USV_DEST_SR);
	assert_int_equal(d.max_attempts, 4);
	assert_float_equal(d.backoff_base_s, 5.0, 0);
	assert_float_equal(d.backoff_max_s, 60.0, 0);
	assert_float_equal(d.max_age_s, 7200.0, 0);
	assert_int_equal(usv_dest_check(&d, NULL, 0), 0);
	c.port = 70000;
	assert_int_equal(usv_dest_from_config(&c, "USVIEW", &d), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_dest_check),
	    cmocka_unit_test(test_wants),
	    cmocka_unit_test(test_from_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
