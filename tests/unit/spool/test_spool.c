/*
 * NAME
 *	test_spool.c - unit tests of the spool queues (daemon/spool.c)
 *
 * DESCRIPTION
 *	Exercises commit/claim/finish, recovery after a simulated crash,
 *	concurrent claimers (no id handed out twice), the outbox state
 *	machine, id/destination validation and the free-space watermark.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void write_file(int fd, const char *text)
{
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
}

static void read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
}

static void test_layout_and_flow(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	static const char *dirs[] = {"tmp",      "incoming", "active", "done", "failed",
	                             "excluded", "outbox",   "sent",   "dead"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		char p[PATH_MAX];
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", spool_root, dirs[i]);
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
	}
	char id[USV_SPOOL_ID_LEN];
	assert_int_equal(usv_spool_claim(sp, id, sizeof id), -ENOENT);

	/* three instances, committed in order */
	char ids[3][USV_SPOOL_ID_LEN];
	for (int i = 0; i < 3; i++) {
		int fd;
		char tmp[PATH_MAX];
		assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
		assert_non_null(strstr(tmp, "/tmp/"));
		char text[32];
		snprintf(text, sizeof text, "instance %d", i);
		write_file(fd, text);
		assert_int_equal(spool_count_dir("incoming"), (size_t)i);
		assert_int_equal(usv_spool_commit(sp, tmp, ids[i], sizeof ids[i]), 0);
		assert_true(usv_spool_id_ok(ids[i]));
		assert_int_equal(access(tmp, F_OK), -1);
		if (i)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	size_t n;
	assert_int_equal(usv_spool_count(sp, USV_SPOOL_INCOMING, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(spool_count_dir("tmp"), 0);

	/* claims come oldest first, with the content committed */
	char path[PATH_MAX], buf[64];
	for (int i = 0; i < 3; i++) {
		assert_int_equal(usv_spool_claim(sp, id, sizeof id), 0);
		assert_string_equal(id, ids[i]);
		assert_int_equal(usv_spool_path(sp, USV_SPOOL_ACTIVE, id, path, sizeof path), 0);
		read_text(path, buf, sizeof buf);
		char want[32];
		snprintf(want, sizeof want, "instance %d", i);
		assert_string_equal(buf, want);
	}
	assert_int_equal(usv_spool_claim(sp, id, sizeof id), -ENOENT);

	assert_int_equal(usv_spool_finish(sp, ids[0], USV_SPOOL_DONE, NULL), 0);
	assert_int_equal(usv_spool_finish(sp, ids[1], USV_SPOOL_FAILED, "decode: bad\nJPEG"), 0);
	assert_int_equal(usv_spool_finish(sp, ids[2], USV_SPOOL_EXCLUDED, "colour overlay"), 0);
	assert_int_equal(usv_spool_finish(sp, ids[2], USV_SPOOL_DONE, NULL), -ENOENT);
	assert_int_equal(usv_spool_finish(sp, "../../etc/passwd", USV_SPOOL_DONE, NULL), -EINVAL);
	assert_int_equal(spool_count_dir("done"), 1);
	assert_int_equal(spool_count_dir("failed"), 2);
	assert_int_equal(spool_count_dir("excluded"), 2);
	assert_int_equal(spool_count_dir("active"), 0);
	snprintf(path, sizeof path, "%s/failed/%s.reason", spool_root, ids[1]);
	read_text(path, buf, sizeof buf);
	assert_string_equal(buf, "decode: bad JPEG\n"); /* one line */
	snprintf(path, sizeof path, "%s/excluded/%s.reason", spool_root, ids[2]);
	read_text(path, buf, sizeof buf);
	assert_string_equal(buf, "colour overlay\n");

	/* retention: nothing is older than a minute ago, everything older
	 * than a minute from now */
	unsigned rm = 99;
	assert_int_equal(usv_spool_purge(sp, USV_SPOOL_FAILED, time(NULL) - 60, &rm), 0);
	assert_int_equal(rm, 0);
	assert_int_equal(usv_spool_purge(sp, USV_SPOOL_FAILED, time(NULL) + 60, &rm), 0);
	assert_int_equal(rm, 1);
	assert_int_equal(spool_count_dir("failed"), 0); /* .reason went too */
	assert_int_equal(spool_count_dir("excluded"), 2);
	assert_int_equal(usv_spool_purge(sp, USV_SPOOL_INCOMING, time(NULL), &rm), -EINVAL);

	/* a tmp path outside tmp/ is refused */
	assert_int_equal(usv_spool_commit(sp, "/etc/passwd", id, sizeof id), -EINVAL);
	usv_spool_free(sp);
}

static void test_recover(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char tmp[PATH_MAX], id[USV_SPOOL_ID_LEN], a[USV_SPOOL_ID_LEN];
	int fd;
	/* one committed then claimed (crash while active) */
	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	write_file(fd, "a");
	assert_int_equal(usv_spool_commit(sp, tmp, a, sizeof a), 0);
	assert_int_equal(usv_spool_claim(sp, id, sizeof id), 0);
	/* one half-written (crash during receive) */
	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	write_file(fd, "partial");
	/* an orphan reason (crash between reason and rename) */
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/failed/0000000000000001-00000001.reason", spool_root);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	write_file(fd, "x\n");
	usv_spool_free(sp);

	sp = spool_open_test();
	unsigned rq = 99, rm = 99;
	assert_int_equal(usv_spool_recover(sp, &rq, &rm), 0);
	assert_int_equal(rq, 1);
	assert_int_equal(rm, 2);
	assert_int_equal(spool_count_dir("tmp"), 0);
	assert_int_equal(spool_count_dir("active"), 0);
	assert_int_equal(spool_count_dir("failed"), 0);
	assert_int_equal(usv_spool_claim(sp, id, sizeof id), 0);
	assert_string_equal(id, a);
	assert_int_equal(usv_spool_requeue(sp, id), 0);
	assert_int_equal(spool_count_dir("incoming"), 1);
	usv_spool_free(sp);
}

#define NCLAIM 200
struct claimer {
	usv_spool *sp;
	int n;
	char ids[NCLAIM][USV_SPOOL_ID_LEN];
};

static void *claim_thread(void *arg)
{
	struct claimer *c = arg;
	char id[USV_SPOOL_ID_LEN];
	while (usv_spool_claim(c->sp, id, sizeof id) == 0)
		memcpy(c->ids[c->n++], id, sizeof id);
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_concurrent_claims(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	for (int i = 0; i < NCLAIM; i++) {
		char tmp[PATH_MAX], id[USV_SPOOL_ID_LEN];
		int fd;
		assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
		write_file(fd, "x");
		assert_int_equal(usv_spool_commit(sp, tmp, id, sizeof id), 0);
	}
	static struct claimer c[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		c[i].sp = sp;
		c[i].n = 0;
		assert_int_equal(pthread_create(&t[i], NULL, claim_thread, &c[i]), 0);
	}
	static char all[NCLAIM][USV_SPOOL_ID_LEN];
	int total = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		for (int j = 0; j < c[i].n; j++)
			memcpy(all[total++], c[i].ids[j], USV_SPOOL_ID_LEN);
	}
	assert_int_equal(total, NCLAIM);
	qsort(all, (size_t)total, USV_SPOOL_ID_LEN, cmp_str);
	for (int i = 1; i < total; i++)
		assert_true(strcmp(all[i - 1], all[i]) < 0); /* no id twice */
	assert_int_equal(spool_count_dir("active"), NCLAIM);
	usv_spool_free(sp);
}

static void test_outbox(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char tmp[PATH_MAX], name[USV_SPOOL_ID_LEN], name2[USV_SPOOL_ID_LEN];
	int fd;
	usv_outbox_item it;
	assert_int_equal(usv_spool_outbox_next(sp, "PACS", 1000, &it), -ENOENT);
	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	write_file(fd, "sr1");
	assert_int_equal(usv_spool_outbox_put(sp, "../x", tmp, name, sizeof name), -EINVAL);
	assert_int_equal(usv_spool_outbox_put(sp, "PACS", tmp, name, sizeof name), 0);
	assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
	write_file(fd, "sr2");
	assert_int_equal(usv_spool_outbox_put(sp, "PACS", tmp, name2, sizeof name2), 0);

	time_t now = time(NULL);
	assert_int_equal(usv_spool_outbox_next(sp, "PACS", now, &it), 0);
	assert_string_equal(it.name, name);
	assert_int_equal(it.attempts, 0);
	assert_true(it.created >= now - 5 && it.created <= now + 1);

	assert_int_equal(usv_spool_outbox_defer(sp, "PACS", name, now + 30, "Connection refused"),
	                 0);
	assert_int_equal(usv_spool_outbox_defer(sp, "PACS", name, now + 60, "peer hangs"), 0);
	usv_outbox_item *v;
	size_t n;
	assert_int_equal(usv_spool_outbox_list(sp, "PACS", &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, name);
	assert_int_equal(v[0].attempts, 2);
	assert_int_equal(v[0].next_try, now + 60);
	assert_string_equal(v[0].last_error, "peer hangs");
	free(v);
	/* first item not due: the second one comes */
	assert_int_equal(usv_spool_outbox_next(sp, "PACS", now, &it), 0);
	assert_string_equal(it.name, name2);
	assert_int_equal(usv_spool_outbox_sent(sp, "PACS", name2), 0);
	assert_int_equal(usv_spool_outbox_next(sp, "PACS", now, &it), -EAGAIN);
	assert_int_equal(it.next_try, now + 60);
	assert_int_equal(usv_spool_outbox_next(sp, "PACS", now + 60, &it), 0);
	assert_int_equal(usv_spool_outbox_dead(sp, "PACS", name, "status 0xC000"), 0);
	assert_int_equal(usv_spool_outbox_next(sp, "PACS", now + 100, &it), -ENOENT);
	assert_int_equal(spool_count_dir("outbox/PACS"), 0);
	assert_int_equal(spool_count_dir("sent/PACS"), 1);
	assert_int_equal(spool_count_dir("dead/PACS"), 2);
	char p[PATH_MAX], buf[64];
	snprintf(p, sizeof p, "%s/dead/PACS/%s.reason", spool_root, name);
	read_text(p, buf, sizeof buf);
	assert_string_equal(buf, "status 0xC000\n");
	usv_spool_free(sp);
}

/* Batch helpers: items renamed without the directory fsync are complete and
 * listed like put ones; done/ moves without fsync land in done/. */
static void test_batch_helpers(void **state)
{
	(void)state;
	usv_spool *sp = spool_open_test();
	char tmp[PATH_MAX], name[3][USV_SPOOL_ID_LEN], id[2][USV_SPOOL_ID_LEN], p[PATH_MAX],
	    buf[16];
	int fd;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
		write_file(fd, i == 0 ? "a" : i == 1 ? "b" : "c");
		assert_int_equal(usv_spool_outbox_add(sp, "PACS", tmp, name[i], sizeof name[i]), 0);
		assert_int_equal(access(tmp, F_OK), -1);
	}
	assert_int_equal(usv_spool_outbox_add(sp, "../x", tmp, name[0], sizeof name[0]), -EINVAL);
	assert_int_equal(usv_spool_outbox_sync(sp, "PACS"), 0);
	assert_int_equal(usv_spool_outbox_sync(sp, "nosuch"), -ENOENT);
	usv_outbox_item *v;
	size_t n;
	assert_int_equal(usv_spool_outbox_list(sp, "PACS", &v, &n), 0);
	assert_int_equal(n, 3);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(v[i].name, name[i]);
		assert_int_equal(v[i].attempts, 0);
	}
	free(v);
	snprintf(p, sizeof p, "%s/outbox/PACS/%s.dcm", spool_root, name[2]);
	read_text(p, buf, sizeof buf);
	assert_string_equal(buf, "c");
	/* a second sent/ move reuses the known directory */
	assert_int_equal(usv_spool_outbox_sent(sp, "PACS", name[0]), 0);
	assert_int_equal(usv_spool_outbox_sent(sp, "PACS", name[1]), 0);
	assert_int_equal(spool_count_dir("sent/PACS"), 2);

	for (int i = 0; i < 2; i++) {
		assert_int_equal(usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp), 0);
		write_file(fd, "x");
		assert_int_equal(usv_spool_commit(sp, tmp, id[i], sizeof id[i]), 0);
	}
	char c[USV_SPOOL_ID_LEN];
	assert_int_equal(usv_spool_claim(sp, c, sizeof c), 0);
	assert_string_equal(c, id[0]);
	assert_int_equal(usv_spool_move_done(sp, id[0]), 0);
	assert_int_equal(usv_spool_move_done(sp, id[1]), -ENOENT); /* not claimed */
	assert_int_equal(usv_spool_move_done(sp, "bad"), -EINVAL);
	assert_int_equal(usv_spool_sync_state(sp, USV_SPOOL_DONE), 0);
	assert_int_equal(usv_spool_sync_state(sp, (enum usv_spool_state)99), -EINVAL);
	assert_int_equal(spool_count_dir("done"), 1);
	assert_int_equal(spool_count_dir("active"), 0);
	assert_int_equal(spool_count_dir("incoming"), 1);
	usv_spool_free(sp);
}

static void test_validation_and_space(void **state)
{
	(void)state;
	assert_true(usv_spool_id_ok("00060f1c2a3b4c5d-0001a2b3"));
	assert_false(usv_spool_id_ok("00060f1c2a3b4c5d-0001a2b"));
	assert_false(usv_spool_id_ok("00060F1C2A3B4C5D-0001A2B3"));
	assert_false(usv_spool_id_ok("../60f1c2a3b4c5d-0001a2b3"));
	assert_false(usv_spool_id_ok(NULL));
	assert_true(usv_spool_dest_ok("PACS_1.main-a"));
	assert_false(usv_spool_dest_ok(".hidden"));
	assert_false(usv_spool_dest_ok("a/b"));
	assert_false(usv_spool_dest_ok(""));

	usv_spool *sp = spool_open_test();
	uint64_t fb;
	unsetenv("USV_SPOOL_FAKE_FREE");
	assert_int_equal(usv_spool_free_bytes(sp, &fb), 0);
	assert_true(fb > 0);
	assert_int_equal(usv_spool_low_space(sp, 0), 0);
	assert_int_equal(usv_spool_low_space(sp, 1), 0);
	assert_int_equal(usv_spool_low_space(sp, UINT64_MAX), 1);
	setenv("USV_SPOOL_FAKE_FREE", "1000", 1);
	assert_int_equal(usv_spool_low_space(sp, 1001), 1);
	assert_int_equal(usv_spool_low_space(sp, 1000), 0);
	char fpath[PATH_MAX];
	snprintf(fpath, sizeof fpath, "%s/fake-free", spool_root);
	int fd = open(fpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	write_file(fd, "5000\n");
	setenv("USV_SPOOL_FAKE_FREE", fpath, 1);
	assert_int_equal(usv_spool_low_space(sp, 6000), 1);
	fd = open(fpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	write_file(fd, "7000\n");
	assert_int_equal(usv_spool_low_space(sp, 6000), 0);
	unsetenv("USV_SPOOL_FAKE_FREE");
	usv_spool_free(sp);

	char err[256];
	assert_int_equal(usv_spool_open("/proc/usv-no-such/spool", &sp, err, sizeof err) < 0, 1);
	assert_non_null(strstr(err, "/proc/usv-no-such/spool"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_layout_and_flow, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_recover, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_claims, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_outbox, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_batch_helpers, spool_setup, spool_teardown),
	    cmocka_unit_test_setup_teardown(test_validation_and_space, spool_setup, spool_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
