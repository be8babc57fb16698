/*
 * NAME
 *	test_results_index.c - rotation of results.jsonl (daemon/results_index.c)
 *
 * DESCRIPTION
 *	With a small size limit and keep = 2: exactly two old files after
 *	many rotations, every file made of whole JSON lines, the lines of
 *	.2, .1 and the current file consecutive (none lost at a rotation),
 *	also across a reopen. With a large keep, four threads appending
 *	through many rotations lose no line. max 0 never rotates.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "results_index.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[PATH_MAX];

static int setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/usv-index-XXXXXX");
	assert_non_null(mkdtemp(dir));
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	(void)state;
	return 0;
}

static void append(struct usv_results_index *idx, int seq, int sync)
{
	char id[32];
	snprintf(id, sizeof id, "%08d", seq);
	struct usv_index_record rec = {.spool_id = id, .outcome = "done"};
	assert_int_equal(sync ? usv_results_index_append(idx, &rec)
	                      : usv_results_index_append_nosync(idx, &rec),
	                 0);
}

/* Reads file suffix ("" or ".N"): -1 if missing, else the number of lines;
 * each must be a whole JSON object; their spool_id numbers go to seq[]. */
static int read_lines(const char *suffix, int *seq, int max)
{
	char p[PATH_MAX + 32], line[8192];
	snprintf(p, sizeof p, "%s/results.jsonl%s", dir, suffix);
	FILE *f = fopen(p, "re");
	if (!f)
		return -1;
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		size_t len = strlen(line);
		assert_true(len > 1);
		assert_int_equal(line[len - 1], '\n'); /* whole lines only */
		cJSON *o = cJSON_Parse(line);
		assert_non_null(o);
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "spool_id");
		assert_true(cJSON_IsString(id));
		assert_true(n < max);
		seq[n++] = atoi(id->valuestring);
		cJSON_Delete(o);
	}
	fclose(f);
	return n;
}

/* .2 + .1 + current, in that order, as one sequence; exactly keep old files. */
static int collect(int keep, int *seq, int max)
{
	int total = 0;
	char suf[16];
	snprintf(suf, sizeof suf, ".%d", keep + 1);
	assert_int_equal(read_lines(suf, seq, max), -1); /* no more than keep */
	for (int k = keep; k >= 0; k--) {
		if (k)
			snprintf(suf, sizeof suf, ".%d", k);
		else
			suf[0] = 0;
		int n = read_lines(suf, seq + total, max - total);
		assert_true(n >= 0);
		total += n;
	}
	return total;
}

static void test_rotate_keep_two(void **state)
{
	(void)state;
	struct usv_results_index *idx = NULL;
	char err[256];
	static int seq[4096];
	assert_int_equal(usv_results_index_open(dir, &idx, err, sizeof err), 0);
	usv_results_index_set_limits(idx, 2000, 2);
	for (int i = 0; i < 100; i++)
		append(idx, i, i % 3 == 0);
	assert_int_equal(usv_results_index_sync(idx), 0);
	assert_true(usv_results_index_rotations(idx) >= 3);
	int n = collect(2, seq, 4096);
	assert_true(n > 0 && n < 100); /* the oldest were dropped... */
	for (int i = 0; i < n; i++)    /* ...and the rest are consecutive */
		assert_int_equal(seq[i], 100 - n + i);
	usv_results_index_close(idx);

	/* across a reopen: the size is known, rotation goes on */
	assert_int_equal(usv_results_index_open(dir, &idx, err, sizeof err), 0);
	usv_results_index_set_limits(idx, 2000, 2);
	for (int i = 100; i < 200; i++)
		append(idx, i, 1);
	assert_true(usv_results_index_rotations(idx) >= 3);
	usv_results_index_close(idx);
	n = collect(2, seq, 4096);
	assert_true(n > 0 && n < 100);
	for (int i = 0; i < n; i++)
		assert_int_equal(seq[i], 200 - n + i);

	/* max 0: never rotates */
	assert_int_equal(usv_results_index_open(dir, &idx, err, sizeof err), 0);
	usv_results_index_set_limits(idx, 0, 2);
	for (int i = 200; i < 260; i++)
		append(idx, i, 0);
	assert_int_equal(usv_results_index_rotations(idx), 0);
	/* an explicit rotation still works */
	assert_int_equal(usv_results_index_rotate(idx), 0);
	assert_int_equal(usv_results_index_rotations(idx), 1);
	usv_results_index_close(idx);
	assert_int_equal(read_lines("", seq, 4096), 0);
	n = read_lines(".1", seq, 4096);
	assert_true(n >= 60);
	assert_int_equal(seq[n - 1], 259);
}

#define NTHREADS 4
#define PER_THREAD 150

struct writer_arg {
	struct usv_results_index *idx;
	int base;
};

static void *writer(void *arg)
{
	const struct writer_arg *w = arg;
	struct usv_results_index *idx = w->idx;
	int base = w->base;
	for (int i = 0; i < PER_THREAD; i++) {
		char id[32];
		snprintf(id, sizeof id, "%08d", base + i);
		struct usv_index_record rec = {.spool_id = id, .outcome = "done"};
		if ((i % 2 ? usv_results_index_append(idx, &rec)
		           : usv_results_index_append_nosync(idx, &rec)) != 0)
			return (void *)1;
	}
	return NULL;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static void test_concurrent_rotation(void **state)
{
	(void)state;
	struct usv_results_index *idx = NULL;
	char err[256];
	static int seq[NTHREADS * PER_THREAD + 16];
	assert_int_equal(usv_results_index_open(dir, &idx, err, sizeof err), 0);
	usv_results_index_set_limits(idx, 3000, 1000);
	pthread_t t[NTHREADS];
	struct writer_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		args[i].idx = idx;
		args[i].base = i * 10000;
		assert_int_equal(pthread_create(&t[i], NULL, writer, &args[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		void *r;
		pthread_join(t[i], &r);
		assert_null(r);
	}
	unsigned long rot = usv_results_index_rotations(idx);
	assert_true(rot >= 10);
	usv_results_index_close(idx);
	int total = 0;
	for (unsigned long k = 0; k <= rot; k++) {
		char suf[32] = "";
		if (k)
			snprintf(suf, sizeof suf, ".%lu", k);
		int n = read_lines(suf, seq + total, (int)(sizeof seq / sizeof seq[0]) - total);
		assert_true(n >= 0);
		total += n;
	}
	assert_int_equal(total, NTHREADS * PER_THREAD);
	qsort(seq, (size_t)total, sizeof seq[0], cmp_int);
	for (int i = 0; i < total; i++)
		assert_int_equal(seq[i], (i / PER_THREAD) * 10000 + i % PER_THREAD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rotate_keep_two, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_rotation, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
