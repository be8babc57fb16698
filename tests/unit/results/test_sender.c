/*
 * NAME
 *	test_sender.c - unit tests of the sender's pure parts
 *
 * DESCRIPTION
 *	Backoff (exponential, capped, jitter in [d/2, d]), destination
 *	defaults and checks, the kind / SOP class filter (results_route.h),
 *	the mapping from the configuration's destination, and usv_scu_store_many's per-file
 *	outcomes when the association cannot be set up (a closed loopback
 *	port): the unreadable file is permanent, the first sendable one
 *	carries the failure, the rest stay untried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sender.h"
#include "usv/config.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"

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

	assert_true(usv_route_wants(&d, USV_DEST_SR, "1.2.3"));
	assert_true(usv_route_wants(&d, USV_DEST_TAGGED, NULL));
	d.kinds = USV_DEST_SR;
	assert_false(usv_route_wants(&d, USV_DEST_TAGGED, "1.2.3"));
	d.kinds = USV_DEST_TAGGED;
	d.nsop = 1;
	strcpy(d.sop_classes[0], "1.2.840.10008.5.1.4.1.1.6.1");
	assert_true(usv_route_wants(&d, USV_DEST_TAGGED, "1.2.840.10008.5.1.4.1.1.6.1"));
	assert_false(usv_route_wants(&d, USV_DEST_TAGGED, "1.2.840.10008.5.1.4.1.1.3.1"));
	assert_false(usv_route_wants(&d, USV_DEST_SR, "1.2.840.10008.5.1.4.1.1.6.1"));
}

static void test_from_config(void **state)
{
	static struct usv_config cfg;
	struct usv_config_dest *c = &cfg.destinations[0];
	struct usv_routes routes;
	const usv_dest *d = &routes.dests[0];
	(void)state;

	usv_config_defaults(&cfg);
	snprintf(cfg.listen.ae_title, sizeof cfg.listen.ae_title, "USVIEW");
	cfg.listen.acse_timeout = 7;
	cfg.listen.dimse_timeout = 70;
	cfg.n_destinations = 1;
	memset(c, 0, sizeof *c);
	strcpy(c->name, "pacs-1");
	strcpy(c->ae_title, "PACS");
	strcpy(c->host, "10.0.0.5");
	c->port = 11112;
	c->send = USV_CFG_SEND_SR;
	c->max_attempts = 4;
	c->backoff_initial_s = 5;
	c->backoff_max_s = 60;
	c->max_age_h = 2;
	assert_int_equal(usv_routes_from_config(&cfg, &routes, NULL, 0), 0);
	assert_int_equal(routes.n, 1);
	assert_string_equal(d->name, "pacs-1");
	assert_string_equal(d->called_ae, "PACS");
	assert_string_equal(d->calling_ae, "USVIEW");
	assert_int_equal(d->port, 11112);
	assert_int_equal(d->kinds, USV_DEST_SR);
	assert_int_equal(d->max_attempts, 4);
	assert_float_equal(d->backoff_base_s, 5.0, 0);
	assert_float_equal(d->backoff_max_s, 60.0, 0);
	assert_float_equal(d->max_age_s, 7200.0, 0);
	assert_int_equal(d->acse_timeout_s, 7);
	assert_int_equal(d->dimse_timeout_s, 70);
	assert_int_equal(usv_dest_check(d, NULL, 0), 0);
	c->port = 70000;
	routes.n = 99;
	assert_int_equal(usv_routes_from_config(&cfg, &routes, NULL, 0), -EINVAL);
	assert_int_equal(routes.n, 99); /* untouched on failure */
}

static void test_store_many_args(void **state)
{
	usv_scu_peer peer = {
	    .called_ae = "PACS", .host = "127.0.0.1", .port = 104, .calling_ae = "USVIEW"};
	const char *paths[2] = {"/nonexistent/a.dcm", NULL};
	usv_scu_result res[2];
	(void)state;

	assert_int_equal(usv_scu_store_many(&peer, paths, 0, 0, res, NULL, 0), -EINVAL);
	assert_int_equal(usv_scu_store_many(&peer, paths, USV_SCU_MAX_FILES + 1, 0, res, NULL, 0),
	                 -EINVAL);
	/* a NULL path: nothing is tried, every result says why */
	assert_int_equal(usv_scu_store_many(&peer, paths, 2, 0, res, NULL, 0), -EINVAL);
	assert_int_equal(res[0].outcome, USV_SCU_PERMANENT);
	assert_int_equal(res[1].tried, 0);
	peer.called_ae = "";
	paths[1] = "/nonexistent/b.dcm";
	assert_int_equal(usv_scu_store_many(&peer, paths, 2, 0, res, NULL, 0), -EINVAL);
	assert_int_equal(res[1].outcome, USV_SCU_PERMANENT);
	assert_int_equal(res[0].tried, 0);
}

/* A loopback port nothing listens on (bound once, then closed). */
static uint16_t closed_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void test_store_many_refused(void **state)
{
	const char *shared = getenv("USV_SHARED_DIR");
	char dcm[4096], junk[] = "/tmp/usv-test-sender-XXXXXX";
	usv_scu_peer peer = {.called_ae = "PACS",
	                     .host = "127.0.0.1",
	                     .calling_ae = "USVIEW",
	                     .acse_timeout_s = 2,
	                     .dimse_timeout_s = 2};
	usv_scu_result res[3];
	char err[512] = "";
	int fd;
	(void)state;

	if (!shared)
		shared = "../shared";
	snprintf(dcm, sizeof dcm, "%s/data/dicom/us/pydicom-data__OBXXXX1A.dcm", shared);
	if (access(dcm, R_OK) != 0)
		skip();
	fd = mkstemp(junk);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "not dicom", 9), 9);
	close(fd);
	assert_int_equal(usv_dcm_global_init(err, sizeof err), 0); /* as main() does */
	assert_int_equal(usv_scu_global_init(2), 0);
	peer.port = closed_port();
	const char *paths[3] = {junk, dcm, dcm};
	assert_int_equal(usv_scu_store_many(&peer, paths, 3, 0, res, err, sizeof err), -EAGAIN);
	unlink(junk);
	assert_int_equal(res[0].outcome, USV_SCU_PERMANENT);
	assert_int_equal(res[0].tried, 1);
	assert_non_null(strstr(res[0].reason, "not a sendable DICOM file"));
	assert_int_equal(res[1].outcome, USV_SCU_RETRY);
	assert_int_equal(res[1].tried, 1);
	assert_int_equal(res[1].status, USV_SCU_NO_STATUS);
	assert_non_null(strstr(res[1].reason, "refused"));
	assert_int_equal(res[2].outcome, USV_SCU_RETRY);
	assert_int_equal(res[2].tried, 0);
	assert_non_null(strstr(res[2].reason, "not tried"));
	assert_non_null(strstr(err, "refused"));
	/* the single-file call classifies the same way */
	assert_int_equal(usv_scu_store(&peer, dcm, &res[0], NULL, 0), -EAGAIN);
	assert_int_equal(res[0].outcome, USV_SCU_RETRY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff),         cmocka_unit_test(test_dest_check),
	    cmocka_unit_test(test_wants),           cmocka_unit_test(test_from_config),
	    cmocka_unit_test(test_store_many_args), cmocka_unit_test(test_store_many_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
