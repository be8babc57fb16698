/*
 * NAME
 *	test_dcm_qr.c - argument checks and unreachable peers of usv/dcm_qr.h
 *
 * DESCRIPTION
 *	Everything that must fail before or at the TCP connection, without a
 *	peer: invalid AE titles, host, port, timeout, study UIDs, date ranges,
 *	modalities, folders and caps are -EINVAL with the reason; a loopback
 *	port nobody listens on is -ECONNREFUSED naming the peer, for C-FIND,
 *	C-GET and C-MOVE; nothing is written. usv_qr_uid_valid() against
 *	hand-made cases. The exchanges with a real peer are tested in
 *	tests/integration/qr (Orthanc).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "usv/dcm_qr.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

/* A loopback port with nothing listening (bound, then closed). */
static int closed_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s >= 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t l = sizeof a;
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &l), 0);
	close(s);
	return ntohs(a.sin_port);
}

static int entries(const char *d)
{
	DIR *x = opendir(d);
	assert_non_null(x);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(x)))
		n += e->d_name[0] != '.' || (e->d_name[1] && strcmp(e->d_name, ".."));
	closedir(x);
	return n;
}

static int setup(void **state)
{
	(void)state;
	char err[USV_ERRBUF];
	assert_int_equal(usv_dcm_global_init(err, sizeof err), 0);
	assert_int_equal(usv_scu_global_init(5), 0);
	snprintf(dir, sizeof dir, "/tmp/usv-qr-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rmdir(dir);
	usv_dcm_global_cleanup();
	return 0;
}

static void test_uid_valid(void **state)
{
	(void)state;
	assert_int_equal(usv_qr_uid_valid("1.2.840.10008.1.2"), 1);
	assert_int_equal(usv_qr_uid_valid("2.25.329800735698586629295641978511506172918"), 1);
	assert_int_equal(usv_qr_uid_valid("1"), 1);
	const char *bad[] = {"", "1..2", ".1.2", "1.2.", "1.2/3", "../1", "1.2 ", "1.a", NULL};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(usv_qr_uid_valid(bad[i]), 0);
	char l[80];
	memset(l, '1', 64);
	l[64] = 0;
	assert_int_equal(usv_qr_uid_valid(l), 1);
	l[64] = '1';
	l[65] = 0;
	assert_int_equal(usv_qr_uid_valid(l), 0);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	char err[USV_ERRBUF];
	usv_qr_study *st = NULL;
	size_t n = 7, ok = 9, failed = 9;
	usv_qr_peer good = {"127.0.0.1", 104, "PACS", "USVIEW", 5};
	usv_qr_peer p;

	p = good;
	p.called_ae = "THIS-AE-IS-TOO-LONG";
	assert_int_equal(usv_qr_find_studies(&p, "", "", 10, &st, &n, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "AE title"));
	p = good;
	p.calling_ae = "BAD\\AE";
	assert_int_equal(
	    usv_qr_get_study(&p, "1.2.3", dir, NULL, NULL, &ok, &failed, err, sizeof err), -EINVAL);
	assert_int_equal(ok, 0);
	assert_int_equal(failed, 0);
	p = good;
	p.port = 0;
	assert_int_equal(usv_qr_find_studies(&p, "", "", 10, &st, &n, err, sizeof err), -EINVAL);
	p.port = 70000;
	assert_int_equal(usv_qr_find_studies(&p, "", "", 10, &st, &n, err, sizeof err), -EINVAL);
	p = good;
	p.host = "";
	assert_int_equal(usv_qr_find_studies(&p, "", "", 10, &st, &n, err, sizeof err), -EINVAL);
	p = good;
	p.timeout_s = -1;
	assert_int_equal(usv_qr_find_studies(&p, "", "", 10, &st, &n, err, sizeof err), -EINVAL);
	assert_int_equal(usv_qr_find_studies(NULL, "", "", 10, &st, &n, err, sizeof err), -EINVAL);

	const char *ranges[] = {"2024-01-01", "20240101-20240131-", "-",
	                        "2024010",    "20240101--",         "2024o101"};
	for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
		assert_int_equal(
		    usv_qr_find_studies(&good, ranges[i], "US", 10, &st, &n, err, sizeof err),
		    -EINVAL);
		assert_non_null(strstr(err, "date range"));
	}
	assert_int_equal(usv_qr_find_studies(&good, "", "us", 10, &st, &n, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(usv_qr_find_studies(&good, "", "US\\CT", 10, &st, &n, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(usv_qr_find_studies(&good, "", "US", 0, &st, &n, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(
	    usv_qr_find_studies(&good, "", "US", USV_QR_MAX_STUDIES + 1, &st, &n, err, sizeof err),
	    -EINVAL);
	assert_null(st);
	assert_int_equal(n, 7);

	/* study UID and folder */
	assert_int_equal(
	    usv_qr_get_study(&good, "../../etc", dir, NULL, NULL, &ok, &failed, err, sizeof err),
	    -EINVAL);
	assert_non_null(strstr(err, "UID"));
	assert_int_equal(usv_qr_get_study(&good, "1.2.3", "/nonexistent/folder", NULL, NULL, &ok,
	                                  &failed, err, sizeof err),
	                 -EINVAL);
	assert_non_null(strstr(err, "/nonexistent/folder"));
	assert_int_equal(usv_qr_move_study(&good, "1.2.3", "BAD\\DEST", 11112, dir, NULL, NULL, &ok,
	                                   &failed, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(usv_qr_move_study(&good, "1.2.3", "USVIEW", 0, dir, NULL, NULL, &ok,
	                                   &failed, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(usv_qr_move_study(&good, "1.2.3.", "USVIEW", 11112, dir, NULL, NULL, &ok,
	                                   &failed, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(entries(dir), 0);
}

static void test_unreachable(void **state)
{
	(void)state;
	char err[USV_ERRBUF], want[64];
	usv_qr_study *st = NULL;
	size_t n = 0, ok = 9, failed = 9;
	int port = closed_port();
	usv_qr_peer p = {"127.0.0.1", port, "PACS", "USVIEW", 5};
	snprintf(want, sizeof want, "PACS@127.0.0.1:%d", port);

	assert_int_equal(
	    usv_qr_find_studies(&p, "20240101-20240131", "US", 10, &st, &n, err, sizeof err),
	    -ECONNREFUSED);
	assert_non_null(strstr(err, want));
	assert_null(st);
	assert_int_equal(
	    usv_qr_get_study(&p, "1.2.3", dir, NULL, NULL, &ok, &failed, err, sizeof err),
	    -ECONNREFUSED);
	assert_non_null(strstr(err, want));
	assert_int_equal(ok, 0);
	assert_int_equal(failed, 0);
	/* C-MOVE: our receiver listens on a free port meanwhile, then stops */
	int lp = closed_port();
	assert_int_equal(usv_qr_move_study(&p, "1.2.3", "USVIEW", lp, dir, NULL, NULL, &ok, &failed,
	                                   err, sizeof err),
	                 -ECONNREFUSED);
	assert_non_null(strstr(err, want));
	assert_int_equal(entries(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uid_valid),
	    cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_unreachable),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
