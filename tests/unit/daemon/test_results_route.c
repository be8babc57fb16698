/*
 * NAME
 *	test_results_route.c - result routing (daemon/results_route.h)
 *
 * DESCRIPTION
 *	The routing rule as a table (kinds x SOP-class filter), destinations
 *	from the configuration (calling AE, timeouts, defaults, duplicate
 *	names, bad AE titles), usv_route_put into a real spool in a temporary
 *	directory (which outboxes get which files, the order of write calls,
 *	what is left after a failing write), usv_route_sync, and the worker
 *	settings built from the configuration (enum mapping, crop rules).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "results_route.h"
#include "spool.h"
#include "worker.h"
#include "usv/config.h"
#include "usv/err.h"

#define US_IMAGE "1.2.840.10008.5.1.4.1.1.6.1"
#define US_MULTI "1.2.840.10008.5.1.4.1.1.3.1"

static usv_dest dest(const char *name, unsigned kinds, const char *sop)
{
	usv_dest d;

	memset(&d, 0, sizeof d);
	snprintf(d.name, sizeof d.name, "%s", name);
	strcpy(d.called_ae, "PACS");
	strcpy(d.calling_ae, "USVIEW");
	strcpy(d.host, "127.0.0.1");
	d.port = 104;
	d.kinds = kinds;
	if (sop) {
		d.nsop = 1;
		snprintf(d.sop_classes[0], sizeof d.sop_classes[0], "%s", sop);
	}
	usv_dest_defaults(&d);
	return d;
}

struct wants_case {
	unsigned kinds;
	const char *filter; /* NULL: any SOP class */
	unsigned kind;
	const char *sop; /* of the object; NULL: unknown */
	int want;
};

static const struct wants_case wants_cases[] = {
    {USV_DEST_SR, NULL, USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS, 1},
    {USV_DEST_SR, NULL, USV_DEST_TAGGED, US_IMAGE, 0},
    {USV_DEST_TAGGED, NULL, USV_DEST_TAGGED, US_IMAGE, 1},
    {USV_DEST_TAGGED, NULL, USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS, 0},
    {0, NULL, USV_DEST_TAGGED, US_IMAGE, 1}, /* 0 = both */
    {0, NULL, USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS, 1},
    {USV_DEST_TAGGED, US_IMAGE, USV_DEST_TAGGED, US_IMAGE, 1},
    {USV_DEST_TAGGED, US_IMAGE, USV_DEST_TAGGED, US_MULTI, 0},
    {USV_DEST_TAGGED, US_IMAGE, USV_DEST_TAGGED, NULL, 1}, /* unknown class: kind only */
    {USV_DEST_SR | USV_DEST_TAGGED, US_MULTI, USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS, 0},
    {USV_DEST_SR | USV_DEST_TAGGED, USV_ROUTE_SR_SOP_CLASS, USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS, 1},
};

static void test_wants_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof wants_cases / sizeof wants_cases[0]; i++) {
		const struct wants_case *c = &wants_cases[i];
		usv_dest d = dest("x", USV_DEST_SR, c->filter);
		d.kinds = c->kinds; /* after the defaults: 0 stays 0 */
		if (usv_route_wants(&d, c->kind, c->sop) != c->want)
			fail_msg("case %zu: want %d", i, c->want);
	}
	assert_int_equal(usv_route_wants(NULL, USV_DEST_SR, NULL), 0);
}

static void base_config(struct usv_config *cfg)
{
	char err[USV_ERRBUF];

	usv_config_defaults(cfg);
	assert_int_equal(usv_config_set(cfg, "listen.ae_title", "NODE", err, sizeof err), 0);
	assert_int_equal(usv_config_set(cfg, "listen.acse_timeout", "12", err, sizeof err), 0);
	assert_int_equal(usv_config_set(cfg, "listen.dimse_timeout", "34", err, sizeof err), 0);
	cfg->n_destinations = 0;
	assert_int_equal(usv_config_add_destination(cfg, "PACS@10.0.0.1:104", err, sizeof err), 0);
	assert_int_equal(usv_config_add_destination(cfg, "ARCH@10.0.0.2:11112", err, sizeof err),
	                 0);
	cfg->destinations[1].send = USV_CFG_SEND_SR | USV_CFG_SEND_TAGGED;
	cfg->destinations[1].n_sop_classes = 1;
	snprintf(cfg->destinations[1].sop_classes[0], USV_CFG_UID_MAX, "%s", US_IMAGE);
}

static void test_routes_from_config(void **state)
{
	static struct usv_config cfg;
	struct usv_routes r;
	char err[USV_ERRBUF] = "";
	(void)state;

	base_config(&cfg);
	assert_int_equal(usv_routes_from_config(&cfg, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 2);
	for (size_t i = 0; i < r.n; i++) {
		assert_string_equal(r.dests[i].calling_ae, "NODE");
		assert_int_equal(r.dests[i].acse_timeout_s, 12);
		assert_int_equal(r.dests[i].dimse_timeout_s, 34);
		assert_int_equal(usv_dest_check(&r.dests[i], NULL, 0), 0);
	}
	assert_string_equal(r.dests[0].called_ae, "PACS");
	assert_int_equal(r.dests[0].kinds, USV_DEST_SR); /* --send-to sends SRs */
	assert_int_equal(r.dests[1].kinds, USV_DEST_SR | USV_DEST_TAGGED);
	assert_int_equal(r.dests[1].nsop, 1);
	assert_string_equal(r.dests[1].sop_classes[0], US_IMAGE);
	assert_int_equal(r.dests[1].port, 11112);

	/* the same name twice */
	snprintf(cfg.destinations[1].name, USV_CFG_NAME_MAX, "%s", cfg.destinations[0].name);
	r.n = 77;
	assert_int_equal(usv_routes_from_config(&cfg, &r, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "name used twice"));
	assert_int_equal(r.n, 77);
	/* an AE title the one rule refuses, wherever it comes from */
	base_config(&cfg);
	strcpy(cfg.destinations[0].ae_title, "   ");
	assert_int_equal(usv_routes_from_config(&cfg, &r, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "invalid AE title"));
	base_config(&cfg);
	strcpy(cfg.listen.ae_title, "A\\B");
	assert_int_equal(usv_routes_from_config(&cfg, &r, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "calling AE title"));
	/* no destinations: an empty, valid route table */
	base_config(&cfg);
	cfg.n_destinations = 0;
	assert_int_equal(usv_routes_from_config(&cfg, &r, err, sizeof err), 0);
	assert_int_equal(r.n, 0);
}

/* ---- usv_route_put into a real spool ---- */

static char root[PATH_MAX];

static int spool_setup(void **state)
{
	snprintf(root, sizeof root, "/tmp/usv-route-XXXXXX");
	assert_non_null(mkdtemp(root));
	(void)state;
	return 0;
}

static int spool_teardown(void **state)
{
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	(void)state;
	return 0;
}

static size_t count_dir(const char *sub)
{
	char p[PATH_MAX + 64];
	size_t n = 0;
	struct dirent *e;
	DIR *d;

	snprintf(p, sizeof p, "%s/%s", root, sub);
	d = opendir(p);
	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct call {
	size_t i, k;
};

struct writer {
	struct call calls[64];
	size_t n;
	size_t fail_at; /* call number that fails, or SIZE_MAX */
};

static int test_write(void *ctx, const usv_dest *d, size_t i, size_t k, const char *tmp_path,
                      char *err, size_t errlen)
{
	struct writer *w = ctx;
	char text[128];
	int fd, len;

	assert_true(w->n < 64);
	w->calls[w->n] = (struct call){i, k};
	if (w->n++ == w->fail_at) {
		snprintf(err, errlen, "disk on fire");
		return -EIO;
	}
	fd = open(tmp_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	len = snprintf(text, sizeof text, "%s object %zu\n", d->name, k);
	assert_int_equal(write(fd, text, (size_t)len), len);
	assert_int_equal(close(fd), 0);
	return 0;
}

static void test_route_put(void **state)
{
	usv_spool *sp = NULL;
	struct usv_routes r;
	struct usv_route_report rep;
	struct writer w = {.fail_at = SIZE_MAX};
	char err[USV_ERRBUF] = "";
	/* two frames: SR, SR, tagged, tagged (the worker's order) */
	const struct usv_route_object objs[4] = {{USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS},
	                                         {USV_DEST_SR, USV_ROUTE_SR_SOP_CLASS},
	                                         {USV_DEST_TAGGED, US_IMAGE},
	                                         {USV_DEST_TAGGED, US_IMAGE}};
	(void)state;

	assert_int_equal(usv_spool_open(root, &sp, err, sizeof err), 0);
	memset(&r, 0, sizeof r);
	r.dests[r.n++] = dest("sr-only", USV_DEST_SR, NULL);
	r.dests[r.n++] = dest("multi-only", USV_DEST_SR | USV_DEST_TAGGED, US_MULTI);
	r.dests[r.n++] = dest("both", 0, NULL);
	r.dests[r.n++] = dest("us-tagged", USV_DEST_TAGGED, US_IMAGE);

	assert_int_equal(usv_route_put(sp, &r, objs, 4, USV_ROUTE_SYNC_LATER, test_write, &w, &rep,
	                               err, sizeof err),
	                 0);
	assert_int_equal(rep.nput, 2 + 0 + 4 + 2);
	assert_int_equal(rep.used, 0x1u | 0x4u | 0x8u);
	assert_int_equal(w.n, 8);
	/* destinations in order, objects in order within each */
	const struct call want[8] = {{0, 0}, {0, 1}, {2, 0}, {2, 1},
	                             {2, 2}, {2, 3}, {3, 2}, {3, 3}};
	for (size_t i = 0; i < 8; i++) {
		assert_int_equal(w.calls[i].i, want[i].i);
		assert_int_equal(w.calls[i].k, want[i].k);
	}
	assert_int_equal(count_dir("outbox/sr-only"), 2);
	assert_int_equal(count_dir("outbox/multi-only"), 0);
	assert_int_equal(count_dir("outbox/both"), 4);
	assert_int_equal(count_dir("outbox/us-tagged"), 2);
	assert_int_equal(count_dir("tmp"), 0);
	uint32_t bad = 0;
	assert_int_equal(usv_route_sync(sp, &r, rep.used, &bad, err, sizeof err), 0);
	assert_int_equal(bad, 0);

	/* a failing write: the files before it stay, its tmp file is gone,
	 * the report names where it stopped */
	memset(&w, 0, sizeof w);
	w.fail_at = 3;
	assert_int_equal(usv_route_put(sp, &r, objs, 4, 0, test_write, &w, &rep, err, sizeof err),
	                 -EIO);
	assert_string_equal(err, "disk on fire");
	assert_int_equal(rep.nput, 3);
	assert_int_equal(rep.failed_dest, 2);
	assert_int_equal(rep.failed_obj, 1);
	assert_int_equal(rep.used, 0x1u | 0x4u);
	assert_int_equal(count_dir("outbox/sr-only"), 4);
	assert_int_equal(count_dir("outbox/both"), 5);
	assert_int_equal(count_dir("outbox/us-tagged"), 2);
	assert_int_equal(count_dir("tmp"), 0);

	/* bad arguments */
	assert_int_equal(usv_route_put(sp, &r, objs, 4, 0, NULL, &w, &rep, err, sizeof err),
	                 -EINVAL);
	assert_int_equal(rep.nput, 0);
	usv_spool_free(sp);
}

static void test_worker_settings(void **state)
{
	static struct usv_config cfg;
	static struct usv_worker_settings s;
	char err[USV_ERRBUF] = "";
	(void)state;

	base_config(&cfg);
	static const struct {
		int cfg;
		enum usv_frame_policy want;
	} policies[] = {{USV_CFG_FRAMES_FIRST, USV_FRAMES_FIRST},
	                {USV_CFG_FRAMES_MIDDLE, USV_FRAMES_MIDDLE},
	                {USV_CFG_FRAMES_EVERY_NTH, USV_FRAMES_EVERY_NTH},
	                {USV_CFG_FRAMES_ALL, USV_FRAMES_ALL}};
	for (size_t i = 0; i < 4; i++) {
		cfg.frames.policy = policies[i].cfg;
		assert_int_equal(usv_worker_settings_from_config(&cfg, &s, err, sizeof err), 0);
		assert_int_equal(s.frames, policies[i].want);
	}
	cfg.frames.policy = 42;
	s.top_k = -7;
	assert_int_equal(usv_worker_settings_from_config(&cfg, &s, err, sizeof err), -EINVAL);
	assert_int_equal(s.top_k, -7); /* untouched */

	base_config(&cfg);
	cfg.frames.policy = USV_CFG_FRAMES_EVERY_NTH;
	cfg.frames.n = 3;
	cfg.model.top_k = 4;
	cfg.model.batch_wait_ms = 25;
	cfg.exclusion.colour_fraction = 0.125;
	cfg.n_crop = 2;
	memset(cfg.crop, 0, 2 * sizeof cfg.crop[0]);
	strcpy(cfg.crop[0].manufacturer, "Philips");
	strcpy(cfg.crop[0].model, "EPIQ");
	cfg.crop[0].rows = 768;
	cfg.crop[0].cols = 1024;
	cfg.crop[0].width = cfg.crop[0].height = 600;
	cfg.crop[0].x = 200;
	cfg.crop[0].y = 100;
	strcpy(cfg.crop[1].manufacturer, "Toshiba");
	cfg.crop[1].width = cfg.crop[1].height = 400;
	cfg.crop[1].x = cfg.crop[1].y = -1; /* centred */
	assert_int_equal(usv_worker_settings_from_config(&cfg, &s, err, sizeof err), 0);
	assert_int_equal(s.every_n, 3);
	assert_int_equal(s.top_k, 4);
	assert_int_equal(s.batch_wait_ms, 25);
	assert_float_equal(s.colour_threshold, 0.125, 0);
	assert_int_equal(s.ncrops, 2);
	assert_string_equal(s.crops[0].manufacturer, "Philips");
	assert_string_equal(s.crops[0].model, "EPIQ");
	assert_int_equal(s.crops[0].rows, 768);
	assert_int_equal(s.crops[0].centred, 0);
	assert_int_equal(s.crops[0].box.x, 200);
	assert_int_equal(s.crops[0].box.y, 100);
	assert_int_equal(s.crops[0].box.w, 600);
	assert_int_equal(s.crops[1].centred, 1);
	assert_int_equal(s.crops[1].box.x, 0);
	assert_int_equal(s.crops[1].box.w, 400);
	assert_int_equal(s.routes.n, 2);
	assert_string_equal(s.routes.dests[0].calling_ae, "NODE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wants_table),
	    cmocka_unit_test(test_routes_from_config),
	    cmocka_unit_test_setup_teardown(test_route_put, spool_setup, spool_teardown),
	    cmocka_unit_test(test_worker_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
