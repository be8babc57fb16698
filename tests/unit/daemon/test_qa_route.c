/*
 * test_qa_route.c - the QA route on usviewd's HTTP server (metrics.c's
 * usv_http_set_route + qa_web.c's usv_qa_web_route) over a real loopback
 * socket: prefix matching, /metrics untouched, the bearer token (401 with
 * WWW-Authenticate, constant-time compare accepts only the exact token,
 * reload), 400 for bad query values, security headers, removal of the
 * route, HEAD.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "metrics.h"
#include "qa_web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fx {
	char dir[256];
	char tok[300];
	int port;
	struct usv_metrics *m;
	struct usv_http *h;
	struct usv_qa_web *w;
};

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) ||
	    getsockname(s, (struct sockaddr *)&a, &len))
		return -1;
	port = ntohs(a.sin_port);
	close(s);
	return port;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	char err[512], p[400];

	snprintf(f->dir, sizeof f->dir, "/tmp/usv-qa-route-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->tok, sizeof f->tok, "%s/token", f->dir);
	write_file(f->tok, "  tok-123_ABC\n");
	snprintf(p, sizeof p, "%s/results.jsonl", f->dir);
	write_file(p, "{\"kind\":\"instance\",\"time\":\"2026-11-25T18:40:00.000Z\",\"spool_id\":"
	              "\"00060f1c2a3b4c5d-0001a2b3\",\"outcome\":\"done\",\"sop_instance_uid\":"
	              "\"1.2.3.4\",\"study_uid\":\"1.2.3\",\"label\":\"spleen\",\"prob\":0.9,"
	              "\"topk\":[{\"label\":\"spleen\",\"prob\":0.9}],\"station_name\":\"S&1\","
	              "\"study_date\":\"20261125\",\"accession_hash\":\"0123456789abcdef\","
	              "\"technologist_label\":\"pancreas\",\"label_source\":\"ocr\","
	              "\"agrees\":false,\"uncertain\":false}\n");
	struct usv_qa_web_opts o = {.spool_dir = f->dir, .token_file = f->tok, .preload = 1};
	if (usv_metrics_new(&f->m) < 0 || usv_qa_web_new(&o, &f->w, err, sizeof err) < 0)
		return -1;
	for (int i = 0; i < 20 && !f->h; i++) {
		f->port = free_port();
		if (f->port > 0)
			usv_http_start("127.0.0.1", f->port, f->m, NULL, NULL, NULL, &f->h, err,
			               sizeof err);
	}
	if (!f->h)
		return -1;
	usv_http_set_route(f->h, "/qa", usv_qa_web_route, f->w);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[400];

	usv_http_stop(f->h);
	usv_qa_web_free(f->w);
	usv_metrics_free(f->m);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* One request; returns the status and the whole response in resp. */
static int req(const struct fx *f, const char *method, const char *path, const char *auth,
               char *resp, size_t resplen)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
	char rq[1024];
	size_t have = 0;
	int s = socket(AF_INET, SOCK_STREAM, 0), n, status = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(s >= 0);
	assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
	n = snprintf(rq, sizeof rq,
	             "%s %s HTTP/1.1\r\nHost: localhost\r\n%s%s%sConnection: close\r\n\r\n", method,
	             path, auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
	assert_int_equal(write(s, rq, (size_t)n), n);
	while (have + 1 < resplen) {
		ssize_t r = read(s, resp + have, resplen - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	resp[have] = 0;
	close(s);
	sscanf(resp, "HTTP/1.%*d %d", &status);
	return status;
}

static void test_routes(void **state)
{
	struct fx *f = *state;
	static char r[1 << 16];

	/* the token: none, wrong, a prefix of it, another scheme, the right one */
	assert_int_equal(req(f, "GET", "/qa", NULL, r, sizeof r), 401);
	assert_non_null(strstr(r, "WWW-Authenticate: Bearer"));
	assert_int_equal(req(f, "GET", "/qa", "Bearer tok-123_ABD", r, sizeof r), 401);
	assert_int_equal(req(f, "GET", "/qa", "Bearer tok-123_AB", r, sizeof r), 401);
	assert_int_equal(req(f, "GET", "/qa", "Bearer tok-123_ABCD", r, sizeof r), 401);
	assert_int_equal(req(f, "GET", "/qa", "Basic tok-123_ABC", r, sizeof r), 401);
	assert_int_equal(
	    req(f, "GET", "/qa/thumb/00060f1c2a3b4c5d-0001a2b3.png", NULL, r, sizeof r), 401);
	assert_int_equal(req(f, "GET", "/qa", "Bearer tok-123_ABC", r, sizeof r), 200);
	assert_non_null(strstr(r, "Content-Type: text/html"));
	assert_non_null(strstr(r, "Content-Security-Policy: default-src 'none'"));
	assert_non_null(strstr(r, "Cache-Control: no-store"));
	assert_non_null(strstr(r, "<td class=\"cell disagreement\" data-view=\"spleen\""));
	assert_non_null(strstr(r, "S&amp;1"));
	assert_null(strstr(r, "<script"));
	assert_int_equal(req(f, "GET", "/qa/", "bearer tok-123_ABC", r, sizeof r), 200);
	assert_int_equal(req(f, "HEAD", "/qa/review", "Bearer tok-123_ABC", r, sizeof r), 200);
	assert_int_equal(req(f, "GET", "/qa/review", "Bearer tok-123_ABC", r, sizeof r), 200);
	assert_non_null(strstr(r, "src=\"/qa/thumb/00060f1c2a3b4c5d-0001a2b3.png\""));
	assert_int_equal(req(f, "GET", "/qa/agreement", "Bearer tok-123_ABC", r, sizeof r), 200);
	assert_non_null(strstr(r, "data-key=\"pancreas\""));

	/* bad values, unknown pages, thumbnails without a spool */
	assert_int_equal(req(f, "GET", "/qa?page=x", "Bearer tok-123_ABC", r, sizeof r), 400);
	assert_int_equal(req(f, "GET", "/qa?from=2026-02-30", "Bearer tok-123_ABC", r, sizeof r),
	                 400);
	assert_int_equal(req(f, "GET", "/qa/review?kind=x", "Bearer tok-123_ABC", r, sizeof r),
	                 400);
	assert_int_equal(req(f, "GET", "/qa/x", "Bearer tok-123_ABC", r, sizeof r), 404);
	assert_int_equal(req(f, "GET", "/qa/thumb/00060f1c2a3b4c5d-0001a2b3.png",
	                     "Bearer tok-123_ABC", r, sizeof r),
	                 404);
	assert_int_equal(
	    req(f, "GET", "/qa/thumb/..%2fresults.jsonl", "Bearer tok-123_ABC", r, sizeof r), 404);

	/* other paths are not the route's */
	assert_int_equal(req(f, "GET", "/qax", NULL, r, sizeof r), 404);
	assert_int_equal(req(f, "GET", "/metrics", NULL, r, sizeof r), 200);
	assert_non_null(strstr(r, "usview_instances_total"));
	assert_int_equal(req(f, "POST", "/qa", "Bearer tok-123_ABC", r, sizeof r), 405);

	/* a new token after a reload; a failed reload keeps it */
	write_file(f->tok, "second\n");
	char err[512];
	assert_int_equal(usv_qa_web_reload_token(f->w, err, sizeof err), 0);
	assert_int_equal(req(f, "GET", "/qa", "Bearer tok-123_ABC", r, sizeof r), 401);
	assert_int_equal(req(f, "GET", "/qa", "Bearer second", r, sizeof r), 200);
	write_file(f->tok, "\n");
	assert_true(usv_qa_web_reload_token(f->w, err, sizeof err) < 0);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(req(f, "GET", "/qa", "Bearer second", r, sizeof r), 200);

	/* route removed: 404 */
	usv_http_set_route(f->h, "/qa", NULL, NULL);
	assert_int_equal(req(f, "GET", "/qa", "Bearer second", r, sizeof r), 404);
}

static void test_token_file_errors(void **state)
{
	struct fx *f = *state;
	struct usv_qa_web *w = NULL;
	char err[512], p[400];
	struct usv_qa_web_opts o = {.spool_dir = f->dir, .token_file = p};

	snprintf(p, sizeof p, "%s/none", f->dir);
	assert_true(usv_qa_web_new(&o, &w, err, sizeof err) < 0);
	assert_non_null(strstr(err, p));
	snprintf(p, sizeof p, "%s/empty", f->dir);
	write_file(p, " \n");
	assert_int_equal(usv_qa_web_new(&o, &w, err, sizeof err), -EINVAL);
	write_file(p, "two words\n");
	assert_int_equal(usv_qa_web_new(&o, &w, err, sizeof err), -EINVAL);
	assert_null(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_file_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
