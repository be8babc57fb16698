/*
 * NAME
 *	test_spool_writers.c - the writers write, the spool commits
 *
 * DESCRIPTION
 *	The SR and tagged-copy writers (dicom/) write a result into a file
 *	the spool made under tmp/, in place: no temporary sibling, the file
 *	keeps the spool's mode 0600, nothing else appears in tmp/; then
 *	usv_spool_outbox_add() + usv_spool_outbox_sync() move it into the
 *	outbox. A write error that only shows at the final flush (/dev/full)
 *	is reported as -ENOSPC and does not remove the device; a path in a
 *	missing directory gives -ENOENT and creates nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "spool.h"
#include "usv/dcm_result.h"
#include "usv/dcm_write.h"
#include "usv/dicom.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

static char dir[PATH_MAX];

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Writes a small US instance; returns usv_dcm_write_us()'s code. */
static int write_us(const char *path)
{
	static uint8_t px[32 * 40];
	for (size_t i = 0; i < sizeof px; i++)
		px[i] = (uint8_t)(i * 7);
	usv_dcm_us_spec s;
	memset(&s, 0, sizeof s);
	s.rows = 32, s.cols = 40, s.pixels = px;
	s.sop_instance_uid = "1.2.826.0.1.3680043.10.1.1";
	s.study_uid = "1.2.826.0.1.3680043.10.1.2";
	s.series_uid = "1.2.826.0.1.3680043.10.1.3";
	s.frame_of_reference_uid = "1.2.826.0.1.3680043.10.1.4";
	s.patient_name = "Test^Writer", s.patient_id = "W1";
	s.series_number = 1, s.instance_number = 1;
	s.region_x1 = 39, s.region_y1 = 31, s.delta_x_cm = s.delta_y_cm = 0.01;
	char err[256];
	return usv_dcm_write_us(path, &s, err, sizeof err);
}

static void write_source(const char *path)
{
	assert_int_equal(write_us(path), 0);
}

static void make_result(usv_result *r, const char *src)
{
	static const char *const labels[] = {"liver_left_long", "spleen", "gallbladder"};
	const float probs[] = {0.7f, 0.2f, 0.1f};
	char err[256];
	memset(r, 0, sizeof *r);
	snprintf(r->source_path, sizeof r->source_path, "%s", src);
	snprintf(r->model_name, sizeof r->model_name, "test");
	memset(r->model_sha256, 'a', 64);
	assert_int_equal(usv_result_fill(r, labels, probs, 3, 2, err, sizeof err), 0);
}

/* A complete Part-10 file: "DICM" at 128 and more than the preamble. */
static void assert_part10(const char *path)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char b[132];
	assert_int_equal(fread(b, 1, sizeof b, f), sizeof b);
	assert_memory_equal(b + 128, "DICM", 4);
	fseek(f, 0, SEEK_END);
	assert_true(ftell(f) > 1024);
	fclose(f);
}

static void test_writers_write_spool_commits(void **state)
{
	(void)state;
	char src[PATH_MAX], root[PATH_MAX], tdir[PATH_MAX], err[512];
	snprintf(src, sizeof src, "%s/src.dcm", dir);
	snprintf(root, sizeof root, "%s/spool", dir);
	snprintf(tdir, sizeof tdir, "%s/tmp", root);
	write_source(src);
	usv_result r;
	make_result(&r, src);
	usv_spool *sp;
	assert_int_equal(usv_spool_open(root, &sp, err, sizeof err), 0);

	char tmp[2][PATH_MAX], name[2][USV_SPOOL_ID_LEN];
	for (int k = 0; k < 2; k++) {
		assert_int_equal(usv_spool_tmp_create(sp, NULL, tmp[k], sizeof tmp[k]), 0);
		usv_result_ids ids;
		int rc = k == 0 ? usv_sr_write(&r, NULL, tmp[k], &ids, err, sizeof err)
		                : usv_tagged_write(&r, NULL, tmp[k], &ids, err, sizeof err);
		if (rc)
			print_error("%s\n", err);
		assert_int_equal(rc, 0);
		struct stat st;
		assert_int_equal(stat(tmp[k], &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600); /* the spool's file, in place */
		assert_part10(tmp[k]);
		/* nothing but the spool's own files in tmp/ */
		assert_int_equal(count_entries(tdir), k + 1);
	}
	for (int k = 0; k < 2; k++)
		assert_int_equal(usv_spool_outbox_add(sp, "dest", tmp[k], name[k], sizeof name[k]),
		                 0);
	assert_int_equal(usv_spool_outbox_sync(sp, "dest"), 0);
	assert_int_equal(count_entries(tdir), 0);
	for (int k = 0; k < 2; k++) {
		char p[PATH_MAX];
		assert_int_equal(usv_spool_outbox_path(sp, "dest", name[k], p, sizeof p), 0);
		assert_part10(p);
	}
	usv_spool_free(sp);
}

static void test_write_errors(void **state)
{
	(void)state;
	char src[PATH_MAX], bad[PATH_MAX], err[512];
	snprintf(src, sizeof src, "%s/src.dcm", dir);
	write_source(src);
	usv_result r;
	make_result(&r, src);

	snprintf(bad, sizeof bad, "%s/missing/out.dcm", dir);
	assert_int_equal(usv_sr_write(&r, NULL, bad, NULL, err, sizeof err), -ENOENT);
	assert_int_equal(access(bad, F_OK), -1);

	/* every write to /dev/full fails with ENOSPC: the stdio buffer's
	 * last flush, which DcmFileFormat::saveFile() does not check */
	struct stat st;
	if (stat("/dev/full", &st) != 0 || access("/dev/full", W_OK) != 0)
		skip();
	assert_int_equal(usv_sr_write(&r, NULL, "/dev/full", NULL, err, sizeof err), -ENOSPC);
	assert_non_null(strstr(err, "/dev/full"));
	assert_int_equal(usv_tagged_write(&r, NULL, "/dev/full", NULL, err, sizeof err), -ENOSPC);
	assert_int_equal(write_us("/dev/full"), -ENOSPC);
	assert_int_equal(stat("/dev/full", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/usv-writers-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	char err[256];
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usv_dcm_global_init: %s\n", err);
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_writers_write_spool_commits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	usv_dcm_global_cleanup();
	return rc;
}
