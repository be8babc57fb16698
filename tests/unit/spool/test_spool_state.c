/*
 * NAME
 *	test_spool_state.c - retention and the in-memory listing of the spool
 *
 * DESCRIPTION
 *	usv_spool_sweep() with an explicit `now` (no sleeping): per state,
 *	files older than their retention go with their .reason, newer ones
 *	stay, 0 keeps for ever, sent/ and dead/ of two destinations, the
 *	per-pass deletion limit. The in-memory queue of incoming/: oldest
 *	first after a requeue, rebuilt by a reopen and by recovery. The
 *	in-memory counts through commit, claim, finish, purge, the sweep and
 *	files removed behind the spool's back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "spool.h"
#include "spool_test_util.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static size_t count(usv_spool *sp, enum usv_spool_state st)
{
	size_t n = 12345;
	assert_int_equal(usv_spool_count(sp, st, &n), 0);
	return n;
}

/* Commits one small instance; its id in id. */
static void commit(usv_spool *sp, char *id)
{
	char tmp[PATH_MAX];
	int fd;
	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(close(fd), 0);
	assert_int_equal(usv_spool_commit(sp, tmp, id, USV_SPOOL_ID_LEN), 0);
}

/* Commits, claims and finishes one instance into state. */
static void make_finished(usv_spool *sp, enum usv_spool_state st, char *id)
{
	char c[USV_SPOOL_ID_LEN];
	commit(sp, id);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, id);
	assert_int_equal(usv_spool_finish(sp, id, st, st == USV_SPOOL_DONE ? NULL : "why"), 0);
}

static void outbox_item(usv_spool *sp, const char *dest, char *name)
{
	char tmp[PATH_MAX];
	int fd;
	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	assert_int_equal(write(fd, "r", 1), 1);
	assert_int_equal(close(fd), 0);
	assert_int_equal(usv_spool_outbox_put(sp, dest, tmp, name, USV_SPOOL_ID_LEN), 0);
}

static int exists(const char *fmt, const char *a, const char *b)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, fmt, spool_root, a, b);
	return access(p, F_OK) == 0;
}

static void test_retention_per_state(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char done[2][USV_SPOOL_ID_LEN], failed[USV_SPOOL_ID_LEN], excl[USV_SPOOL_ID_LEN];
	char sent[2][USV_SPOOL_ID_LEN], dead[2][USV_SPOOL_ID_LEN], waiting[USV_SPOOL_ID_LEN];
	const char *dests[2] = {"PACS", "archive.2"};

	make_finished(sp, USV_SPOOL_DONE, done[0]);
	make_finished(sp, USV_SPOOL_DONE, done[1]);
	make_finished(sp, USV_SPOOL_FAILED, failed);
	make_finished(sp, USV_SPOOL_EXCLUDED, excl);
	for (int i = 0; i < 2; i++) {
		outbox_item(sp, dests[i], sent[i]);
		assert_int_equal(usv_spool_outbox_sent(sp, dests[i], sent[i]), 0);
		outbox_item(sp, dests[i], dead[i]);
		assert_int_equal(usv_spool_outbox_dead(sp, dests[i], dead[i], "gave up"), 0);
	}
	outbox_item(sp, "PACS", waiting);
	assert_true(exists("%s/failed/%s%s", failed, ".reason"));
	assert_true(exists("%s/excluded/%s%s", excl, ".reason"));

	time_t t = time(NULL) + 1; /* every file entered its state before t */
	/* done 1 h, sent 0.5 h, excluded 2 h, failed for ever, dead 3.25 h */
	struct usv_spool_retention ret = {
	    .done_h = 1, .sent_h = 0.5, .excluded_h = 2, .failed_h = 0, .dead_h = 3.25};
	struct usv_spool_swept sw;

	/* nothing is old enough yet */
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 1700, 0, &sw), 0);
	assert_int_equal(sw.done + sw.sent + sw.excluded + sw.failed + sw.dead, 0);
	assert_int_equal(sw.more, 0);
	assert_int_equal(spool_count_dir("done"), 2);

	/* 0.5 h + a bit: sent/ of both destinations, nothing else */
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 1860, 0, &sw), 0);
	assert_int_equal(sw.sent, 2);
	assert_int_equal(sw.done + sw.excluded + sw.failed + sw.dead, 0);
	assert_int_equal(spool_count_dir("sent/PACS") + spool_count_dir("sent/archive.2"), 0);
	assert_int_equal(spool_count_dir("done"), 2);

	/* just under an hour: done/ kept; just over: gone */
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 3600 - 30, 0, &sw), 0);
	assert_int_equal(sw.done, 0);
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 3600 + 30, 0, &sw), 0);
	assert_int_equal(sw.done, 2);
	assert_int_equal(spool_count_dir("done"), 0);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 0);
	assert_int_equal(spool_count_dir("excluded"), 2); /* .dcm + .reason */

	/* 2 h: excluded/ with its .reason */
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 7230, 0, &sw), 0);
	assert_int_equal(sw.excluded, 1);
	assert_int_equal(spool_count_dir("excluded"), 0);
	assert_int_equal(count(sp, USV_SPOOL_EXCLUDED), 0);

	/* 3.25 h (decimal hours): dead/ of both, with their .reason */
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 11700 - 30, 0, &sw), 0);
	assert_int_equal(sw.dead, 0);
	assert_int_equal(spool_count_dir("dead/PACS"), 2);
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 11700 + 30, 0, &sw), 0);
	assert_int_equal(sw.dead, 2);
	assert_int_equal(spool_count_dir("dead/PACS") + spool_count_dir("dead/archive.2"), 0);

	/* failed/ (0 = for ever) is kept even ten years later, and the
	 * outbox is never swept */
	assert_int_equal(usv_spool_sweep(sp, &ret, t + 315360000, 0, &sw), 0);
	assert_int_equal(sw.failed, 0);
	assert_int_equal(spool_count_dir("failed"), 2);
	assert_int_equal(count(sp, USV_SPOOL_FAILED), 1);
	assert_int_equal(spool_count_dir("outbox/PACS"), 1);
	size_t ob = 9, se = 9, de = 9;
	assert_int_equal(usv_spool_outbox_count(sp, "PACS", &ob, &se, &de), 0);
	assert_int_equal(ob, 1);
	assert_int_equal(se, 0);
	assert_int_equal(de, 0);

	/* retention 0 everywhere: nothing at all */
	struct usv_spool_retention keep = {0};
	assert_int_equal(usv_spool_sweep(sp, &keep, t + 315360000, 0, &sw), 0);
	assert_int_equal(sw.failed, 0);
	assert_int_equal(usv_spool_sweep(sp, NULL, t, 0, &sw), -EINVAL);
	usv_spool_free(sp);
}

static void test_sweep_limit(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char id[USV_SPOOL_ID_LEN];
	for (int i = 0; i < 5; i++)
		make_finished(sp, USV_SPOOL_DONE, id);
	struct usv_spool_retention ret = {.done_h = 0.001};
	struct usv_spool_swept sw;
	time_t later = time(NULL) + 60;
	assert_int_equal(usv_spool_sweep(sp, &ret, later, 2, &sw), 0);
	assert_int_equal(sw.done, 2);
	assert_int_equal(sw.more, 1);
	assert_int_equal(spool_count_dir("done"), 3);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 3);
	assert_int_equal(usv_spool_sweep(sp, &ret, later, 2, &sw), 0);
	assert_int_equal(usv_spool_sweep(sp, &ret, later, 2, &sw), 0);
	assert_int_equal(sw.done, 1);
	assert_int_equal(sw.more, 0);
	assert_int_equal(spool_count_dir("done"), 0);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 0);
	usv_spool_free(sp);
}

static void test_claim_order(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char ids[5][USV_SPOOL_ID_LEN], c[USV_SPOOL_ID_LEN];
	for (int i = 0; i < 5; i++)
		commit(sp, ids[i]);
	/* requeue puts an id back in its place: oldest first */
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[0]);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[1]);
	assert_int_equal(usv_spool_requeue(sp, ids[0]), 0);
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 4);
	assert_int_equal(count(sp, USV_SPOOL_ACTIVE), 1);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[0]);
	assert_int_equal(usv_spool_requeue(sp, ids[0]), 0);
	usv_spool_free(sp);

	/* a new handle rebuilds the queue from incoming/ (ids[1] is active) */
	sp = spool_open_test();
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 4);
	assert_int_equal(count(sp, USV_SPOOL_ACTIVE), 1);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[0]);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[2]);
	usv_spool_free(sp);

	/* recovery puts active/ back, in order */
	sp = spool_open_test();
	unsigned rq = 0;
	assert_int_equal(usv_spool_recover(sp, &rq, NULL), 0);
	assert_int_equal(rq, 3);
	assert_int_equal(count(sp, USV_SPOOL_ACTIVE), 0);
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
		assert_string_equal(c, ids[i]);
	}
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), -ENOENT);
	usv_spool_free(sp);
}

static void test_counts(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char ids[4][USV_SPOOL_ID_LEN], c[USV_SPOOL_ID_LEN], p[PATH_MAX];
	for (int i = 0; i < 4; i++)
		commit(sp, ids[i]);
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 4);
	assert_int_equal(count(sp, USV_SPOOL_TMP), 0);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 3);
	assert_int_equal(count(sp, USV_SPOOL_ACTIVE), 1);
	assert_int_equal(usv_spool_finish(sp, c, USV_SPOOL_DONE, NULL), 0);
	assert_int_equal(count(sp, USV_SPOOL_ACTIVE), 0);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 1);

	/* ids[1] removed behind the spool's back: the claim skips it */
	usv_spool_path(sp, USV_SPOOL_INCOMING, ids[1], p, sizeof p);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[2]);
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 1);
	assert_int_equal(usv_spool_finish(sp, c, USV_SPOOL_FAILED, "bad"), 0);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, ids[3]);
	assert_int_equal(usv_spool_move_done(sp, c), 0);
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), -ENOENT);
	assert_int_equal(count(sp, USV_SPOOL_INCOMING), 0);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 2);
	assert_int_equal(count(sp, USV_SPOOL_FAILED), 1);

	/* a done file removed behind our back: the next sweep of done/
	 * (nothing old enough to delete) corrects the count */
	usv_spool_path(sp, USV_SPOOL_DONE, ids[0], p, sizeof p);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 2);
	struct usv_spool_retention ret = {.done_h = 1000, .failed_h = 1000};
	struct usv_spool_swept sw;
	assert_int_equal(usv_spool_sweep(sp, &ret, time(NULL), 0, &sw), 0);
	assert_int_equal(sw.done + sw.failed, 0);
	assert_int_equal(count(sp, USV_SPOOL_DONE), 1);
	assert_int_equal(count(sp, USV_SPOOL_FAILED), 1);

	/* purge keeps the counts too */
	unsigned rm = 0;
	assert_int_equal(usv_spool_purge(sp, USV_SPOOL_FAILED, time(NULL) + 60, &rm), 0);
	assert_int_equal(rm, 1);
	assert_int_equal(count(sp, USV_SPOOL_FAILED), 0);
	assert_int_equal(spool_count_dir("failed"), 0);

	/* outbox depth: put, sent, dead; a file removed behind our back is
	 * forgotten at the sender's next listing */
	char n1[USV_SPOOL_ID_LEN], n2[USV_SPOOL_ID_LEN], n3[USV_SPOOL_ID_LEN];
	size_t ob, se, de;
	outbox_item(sp, "PACS", n1);
	outbox_item(sp, "PACS", n2);
	outbox_item(sp, "PACS", n3);
	assert_int_equal(usv_spool_outbox_count(sp, "PACS", &ob, NULL, NULL), 0);
	assert_int_equal(ob, 3);
	assert_int_equal(usv_spool_outbox_sent(sp, "PACS", n1), 0);
	assert_int_equal(usv_spool_outbox_dead(sp, "PACS", n2, "no"), 0);
	assert_int_equal(usv_spool_outbox_count(sp, "PACS", &ob, &se, &de), 0);
	assert_int_equal(ob, 1);
	assert_int_equal(se, 1);
	assert_int_equal(de, 1);
	usv_spool_outbox_path(sp, "PACS", n3, p, sizeof p);
	assert_int_equal(unlink(p), 0);
	usv_outbox_item *v = NULL;
	size_t n = 9;
	assert_int_equal(usv_spool_outbox_list(sp, "PACS", &v, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(usv_spool_outbox_count(sp, "PACS", &ob, NULL, NULL), 0);
	assert_int_equal(ob, 0);
	assert_int_equal(usv_spool_outbox_count(sp, "nosuch", &ob, NULL, NULL), 0);
	assert_int_equal(ob, 0);
	assert_int_equal(usv_spool_outbox_count(sp, "../x", &ob, NULL, NULL), -EINVAL);
	usv_spool_free(sp);

	/* a reopen counts the directories */
	sp = spool_open_test();
	assert_int_equal(count(sp, USV_SPOOL_DONE), 1);
	assert_int_equal(count(sp, USV_SPOOL_FAILED), 0);
	assert_int_equal(usv_spool_outbox_count(sp, "PACS", &ob, &se, &de), 0);
	assert_int_equal(ob, 0);
	assert_int_equal(se, 1);
	assert_int_equal(de, 1);
	usv_spool_free(sp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_retention_per_state, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_sweep_limit, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_claim_order, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_counts, spool_setup, spool_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
