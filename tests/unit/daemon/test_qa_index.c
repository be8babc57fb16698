/*
 * test_qa_index.c - the incremental reader of results.jsonl behind /qa
 * (daemon/qa_web.h): appends, a partial last line, rotation (one and two
 * between reads, and the first read of rotated files), deduplication of
 * re-processed instances, study record revisions and view cells, bad and
 * over-long lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "qa_web.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
	char dir[256];
	char path[300];
	struct usv_qa_index *x;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	snprintf(f->dir, sizeof f->dir, "/tmp/usv-qa-index-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof f->path, "%s/results.jsonl", f->dir);
	if (usv_qa_index_new(f->dir, &f->x) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[400];

	usv_qa_index_free(f->x);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Appends text as is (no newline added) with one write, as the daemon does. */
static void append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
}

/* One instance line in the documented format (results_index.h). */
static char *inst_line(const char *sop, const char *study, const char *label, double prob,
                       const char *tech, int agrees, int uncertain, const char *station)
{
	static char buf[4096];
	char techv[128], agv[16];

	snprintf(techv, sizeof techv, tech ? "\"%s\"" : "null", tech);
	snprintf(agv, sizeof agv, "%s", agrees < 0 ? "null" : agrees ? "true" : "false");
	snprintf(
	    buf, sizeof buf,
	    "{\"time\":\"2026-11-25T18:40:00.123Z\",\"spool_id\":\"00060f1c2a3b4c5d-0001a2b3\","
	    "\"outcome\":\"done\",\"sop_instance_uid\":\"%s\",\"sop_class_uid\":"
	    "\"1.2.840.10008.5.1.4.1.1.6.1\",\"series_uid\":\"1.2.3.9\",\"study_uid\":\"%s\","
	    "\"manufacturer\":\"ACME\",\"manufacturer_model\":\"X1\",\"frames_total\":1,"
	    "\"frame\":0,\"label\":\"%s\",\"prob\":%g,\"topk\":[{\"label\":\"%s\",\"prob\":%g},"
	    "{\"label\":\"liver_left_long\",\"prob\":0.01}],\"results\":[],\"outputs\":[],"
	    "\"model\":{\"name\":\"m\",\"sha256\":\"ab\",\"arch\":\"vgg16\"},"
	    "\"timings_ms\":{\"decode\":1,\"infer\":2,\"total\":3,\"batch\":1},"
	    "\"kind\":\"instance\",\"station_name\":\"%s\",\"study_date\":\"20261125\","
	    "\"study_description\":\"ABDOMEN\",\"accession_hash\":\"0123456789abcdef\","
	    "\"technologist_label\":%s,\"label_source\":%s,\"agrees\":%s,\"uncertain\":%s}\n",
	    sop, study, uncertain ? "uncertain" : label, prob, label, prob, station, techv,
	    tech ? "\"dicom:ImageComments\"" : "null", agv, uncertain ? "true" : "false");
	return buf;
}

static char *study_line(const char *study, int rev, const char *protocol, const char *present,
                        const char *missing)
{
	static char buf[2048];

	snprintf(
	    buf, sizeof buf,
	    "{\"kind\":\"study\",\"time\":\"2026-11-25T19:00:00.000Z\",\"study_uid\":\"%s\","
	    "\"revision\":%d,\"protocol\":\"%s\",\"views_present\":{%s},\"missing\":[%s],"
	    "\"disagreements\":1,\"uncertain\":1,\"instances\":3,\"station_name\":\"US-ROOM-2\","
	    "\"study_date\":\"20261124\",\"accession_hash\":\"fedcba9876543210\","
	    "\"outputs\":[]}\n",
	    study, rev, protocol, present, missing);
	return buf;
}

static void test_append_and_partial(void **state)
{
	struct fx *f = *state;
	struct usv_qa_instance_info ii;
	char *l;

	/* no file yet: nothing, no error */
	assert_int_equal(usv_qa_index_update(f->x), 0);
	append(f->path, inst_line("1.9.1", "1.8.1", "spleen", 0.9, "spleen", 1, 0, "US1"));
	append(f->path, inst_line("1.9.2", "1.8.1", "pancreas", 0.8, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 2);
	assert_int_equal(usv_qa_index_ninstances(f->x), 2);
	assert_int_equal(usv_qa_index_update(f->x), 0);

	/* a line being written: not read until its '\n' is there */
	l = strdup(inst_line("1.9.3", "1.8.1", "gallbladder", 0.7, "spleen", 0, 0, "US1"));
	size_t n = strlen(l), cut = n / 2;
	char c = l[cut];
	l[cut] = 0;
	append(f->path, l);
	assert_int_equal(usv_qa_index_update(f->x), 0);
	assert_int_equal(usv_qa_index_instance(f->x, "1.9.3", &ii), -ENOENT);
	l[cut] = c;
	append(f->path, l + cut);
	free(l);
	assert_int_equal(usv_qa_index_update(f->x), 1);
	assert_int_equal(usv_qa_index_instance(f->x, "1.9.3", &ii), 0);
	assert_string_equal(ii.top_label, "gallbladder");
	assert_string_equal(ii.technologist_label, "spleen");
	assert_string_equal(ii.label_source, "dicom:ImageComments");
	assert_string_equal(ii.station_name, "US1");
	assert_string_equal(ii.spool_id, "00060f1c2a3b4c5d-0001a2b3");
	assert_int_equal(ii.agrees, 0);
	assert_int_equal(ii.uncertain, 0);
	assert_true(ii.prob > 0.69 && ii.prob < 0.71);
	/* 2026-11-25T18:40:00.123Z */
	assert_int_equal(ii.time_ms, 1795632000123LL);

	assert_int_equal(usv_qa_index_instance(f->x, "1.9.2", &ii), 0);
	assert_int_equal(ii.agrees, -1);
	assert_string_equal(ii.technologist_label, "");

	struct usv_qa_study_info si;
	assert_int_equal(usv_qa_index_study(f->x, "1.8.1", &si), 0);
	assert_int_equal(si.instances, 3);
	assert_int_equal(si.disagreements, 1);
	assert_int_equal(si.revision, 0); /* pending: no study record yet */
	assert_string_equal(si.study_date, "20261125");
	assert_string_equal(si.accession_hash, "0123456789abcdef");
	assert_int_equal(usv_qa_index_cell(f->x, "1.8.1", "gallbladder"), USV_QA_CELL_DISAGREEMENT);
	assert_int_equal(usv_qa_index_cell(f->x, "1.8.1", "spleen"), USV_QA_CELL_PRESENT);
	assert_int_equal(usv_qa_index_cell(f->x, "1.8.1", "kidney_left_long"), USV_QA_CELL_NONE);

	struct usv_qa_index_stats st;
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.lines, 3);
	assert_int_equal(st.bad, 0);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(st.bytes, (uint64_t)sb.st_size);
}

/* What results_index.c does: shift .k -> .k+1, link the file as .1,
 * rename a new empty file over results.jsonl. */
static void rotate(const struct fx *f, int keep)
{
	char a[400], b[400], tmp[400];

	for (int k = keep - 1; k >= 1; k--) {
		snprintf(a, sizeof a, "%s.%d", f->path, k);
		snprintf(b, sizeof b, "%s.%d", f->path, k + 1);
		if (access(a, F_OK) == 0)
			assert_int_equal(rename(a, b), 0);
	}
	snprintf(a, sizeof a, "%s.1", f->path);
	unlink(a);
	assert_int_equal(link(f->path, a), 0);
	snprintf(tmp, sizeof tmp, "%s.new", f->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(rename(tmp, f->path), 0);
}

static void test_rotation(void **state)
{
	struct fx *f = *state;
	struct usv_qa_instance_info ii;
	struct usv_qa_index_stats st;

	append(f->path, inst_line("2.1", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	/* appended after our read, then rotated away: must come from .1 */
	append(f->path, inst_line("2.2", "2.0", "pancreas", 0.9, NULL, -1, 0, "US1"));
	rotate(f, 3);
	append(f->path, inst_line("2.3", "2.0", "gallbladder", 0.9, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 2);
	assert_int_equal(usv_qa_index_ninstances(f->x), 3);
	assert_int_equal(usv_qa_index_instance(f->x, "2.2", &ii), 0);
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.rotations, 1);
	assert_int_equal(st.duplicates, 0);

	/* two rotations between reads: ours is now .2, the one between is .1 */
	append(f->path, inst_line("2.4", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	rotate(f, 3);
	append(f->path, inst_line("2.5", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	rotate(f, 3);
	append(f->path, inst_line("2.6", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 3);
	assert_int_equal(usv_qa_index_ninstances(f->x), 6);
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.rotations, 2);
	assert_int_equal(st.duplicates, 0); /* nothing read twice */

	/* a fresh reader starts with the rotated files, oldest first: the
	 * later line of a re-processed instance wins */
	append(f->path, inst_line("2.1", "2.0", "kidney_left_long", 0.9, "spleen", 0, 0, "US1"));
	struct usv_qa_index *y;
	assert_int_equal(usv_qa_index_new(f->dir, &y), 0);
	assert_int_equal(usv_qa_index_update(y), 7);
	assert_int_equal(usv_qa_index_ninstances(y), 6);
	assert_int_equal(usv_qa_index_instance(y, "2.1", &ii), 0);
	assert_string_equal(ii.top_label, "kidney_left_long");
	assert_int_equal(ii.agrees, 0);
	usv_qa_index_stats(y, &st);
	assert_int_equal(st.duplicates, 1);
	usv_qa_index_free(y);

	/* rotated more often than index_keep between reads: ours is gone, all
	 * the rotated files present are newer and read whole */
	assert_int_equal(usv_qa_index_update(f->x), 1);
	char p3[400];
	snprintf(p3, sizeof p3, "%s.3", f->path);
	assert_int_equal(unlink(p3), 0); /* index_keep is now 2 */
	append(f->path, inst_line("2.7", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	rotate(f, 2);
	append(f->path, inst_line("2.8", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	rotate(f, 2);
	append(f->path, inst_line("2.9", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	rotate(f, 2);
	append(f->path, inst_line("2.10", "2.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 3);
	assert_int_equal(usv_qa_index_instance(f->x, "2.9", &ii), 0);
	assert_int_equal(usv_qa_index_instance(f->x, "2.10", &ii), 0);
	assert_int_equal(usv_qa_index_instance(f->x, "2.8", &ii), 0);
	/* 2.7 was in the file dropped by the rotation: lost to the reader too */
}

static void test_dedup(void **state)
{
	struct fx *f = *state;
	struct usv_qa_instance_info ii;
	struct usv_qa_study_info si;
	struct usv_qa_index_stats st;

	append(f->path, inst_line("3.1", "3.0", "spleen", 0.9, "pancreas", 0, 0, "US1"));
	append(f->path, inst_line("3.2", "3.0", "pancreas", 0.9, "pancreas", 1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 2);
	assert_int_equal(usv_qa_index_cell(f->x, "3.0", "spleen"), USV_QA_CELL_DISAGREEMENT);
	/* re-processed after a crash, now agreeing: replaces the first line */
	append(f->path, inst_line("3.1", "3.0", "pancreas", 0.95, "pancreas", 1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	assert_int_equal(usv_qa_index_ninstances(f->x), 2);
	assert_int_equal(usv_qa_index_instance(f->x, "3.1", &ii), 0);
	assert_int_equal(ii.agrees, 1);
	assert_string_equal(ii.top_label, "pancreas");
	assert_int_equal(usv_qa_index_study(f->x, "3.0", &si), 0);
	assert_int_equal(si.instances, 2);
	assert_int_equal(si.disagreements, 0);
	assert_int_equal(usv_qa_index_cell(f->x, "3.0", "spleen"), USV_QA_CELL_NONE);
	assert_int_equal(usv_qa_index_cell(f->x, "3.0", "pancreas"), USV_QA_CELL_PRESENT);
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.duplicates, 1);
}

static void test_study_revisions(void **state)
{
	struct fx *f = *state;
	struct usv_qa_study_info si;

	append(f->path, inst_line("4.1", "4.0", "spleen", 0.9, "spleen", 1, 0, "US1"));
	append(f->path, inst_line("4.2", "4.0", "pancreas", 0.4, NULL, -1, 1, "US1"));
	append(f->path,
	       inst_line("4.3", "4.0", "liver_left_long", 0.8, "gallbladder", 0, 0, "US1"));
	append(f->path,
	       study_line("4.0", 2, "abdomen", "\"spleen\":1,\"liver_left_long\":1,\"uncertain\":1",
	                  "\"Gall bladder\",\"Kidney-left-long\",\"pancreas\""));
	assert_int_equal(usv_qa_index_update(f->x), 4);
	assert_int_equal(usv_qa_index_study(f->x, "4.0", &si), 0);
	assert_int_equal(si.revision, 2);
	assert_string_equal(si.protocol, "abdomen");
	assert_int_equal(si.nmissing, 3);
	/* the record overrides station, date and accession of the instances */
	assert_string_equal(si.station_name, "US-ROOM-2");
	assert_string_equal(si.study_date, "20261124");
	assert_string_equal(si.accession_hash, "fedcba9876543210");
	assert_int_equal(si.rec_instances, 3);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "gallbladder"), USV_QA_CELL_MISSING);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "kidney_left_long"), USV_QA_CELL_MISSING);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "liver_left_long"),
	                 USV_QA_CELL_DISAGREEMENT);
	/* missing per the record, but an uncertain image may be it */
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "pancreas"), USV_QA_CELL_UNCERTAIN);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "spleen"), USV_QA_CELL_PRESENT);
	/* labels meet under their view key; "uncertain" is no view */
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "Liver left longitudinal"),
	                 USV_QA_CELL_DISAGREEMENT);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "uncertain"), USV_QA_CELL_NONE);

	/* an older revision arriving late changes nothing */
	append(f->path, study_line("4.0", 1, "old", "\"spleen\":1", "\"spleen\""));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	assert_int_equal(usv_qa_index_study(f->x, "4.0", &si), 0);
	assert_int_equal(si.revision, 2);
	assert_string_equal(si.protocol, "abdomen");
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "spleen"), USV_QA_CELL_PRESENT);

	/* a newer one replaces the whole record (kidney now present) */
	append(f->path, study_line("4.0", 3, "abdomen", "\"kidney_left_long\":1,\"spleen\":1",
	                           "\"gallbladder\""));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	assert_int_equal(usv_qa_index_study(f->x, "4.0", &si), 0);
	assert_int_equal(si.revision, 3);
	assert_int_equal(si.nmissing, 1);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "kidney_left_long"), USV_QA_CELL_PRESENT);
	assert_int_equal(usv_qa_index_cell(f->x, "4.0", "gallbladder"), USV_QA_CELL_MISSING);

	/* a study record before any of its instances */
	append(f->path, study_line("5.0", 1, "renal", "\"kidney_left_long\":2", ""));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	assert_int_equal(usv_qa_index_study(f->x, "5.0", &si), 0);
	assert_int_equal(si.instances, 0);
	assert_int_equal(usv_qa_index_cell(f->x, "5.0", "kidney_left_long"), USV_QA_CELL_PRESENT);
	assert_int_equal(usv_qa_index_nstudies(f->x), 2);
}

static void test_bad_lines(void **state)
{
	struct fx *f = *state;
	struct usv_qa_index_stats st;
	struct usv_qa_instance_info ii;

	append(f->path, "not json at all\n");
	append(f->path, "[1,2,3]\n");
	append(f->path, "{\"kind\":\"instance\",\"outcome\":\"done\"}\n"); /* no uid */
	append(f->path, "{\"kind\":\"study\",\"revision\":-4,\"study_uid\":\"9\"}\n");
	append(f->path, "\n");
	/* an over-long line, then a good one */
	size_t big = USV_QA_LINE_MAX + 10;
	char *b = malloc(big + 2);
	memset(b, 'x', big);
	b[0] = '{';
	b[big] = '\n';
	b[big + 1] = 0;
	append(f->path, b);
	free(b);
	append(f->path, inst_line("6.1", "6.0", "spleen", 0.9, NULL, -1, 0, "US<1>"));
	assert_int_equal(usv_qa_index_update(f->x), 6);
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.bad, 4);
	assert_int_equal(st.too_long, 1);
	assert_int_equal(usv_qa_index_instance(f->x, "6.1", &ii), 0);
	assert_string_equal(ii.station_name, "US<1>");

	/* an over-long line still being written is skipped to its end */
	b = malloc(2 * USV_QA_LINE_MAX + 1);
	memset(b, 'y', 2 * USV_QA_LINE_MAX);
	b[2 * USV_QA_LINE_MAX] = 0;
	append(f->path, b);
	assert_int_equal(usv_qa_index_update(f->x), 0);
	append(f->path, "yyyy\n");
	append(f->path, inst_line("6.2", "6.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	free(b);
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.too_long, 2);
	assert_int_equal(usv_qa_index_instance(f->x, "6.2", &ii), 0);

	/* truncated (replaced in place): read again from the start */
	assert_int_equal(truncate(f->path, 0), 0);
	append(f->path, inst_line("6.3", "6.0", "spleen", 0.9, NULL, -1, 0, "US1"));
	assert_int_equal(usv_qa_index_update(f->x), 1);
	assert_int_equal(usv_qa_index_instance(f->x, "6.3", &ii), 0);

	/* rewritten in place, longer than what was read: same inode, other
	 * first bytes; read from the start, not from the old offset */
	int fd = open(f->path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < 4; i++) {
		char sop[32];
		snprintf(sop, sizeof sop, "7.%d", i);
		append(f->path, inst_line(sop, "7.0", "pancreas", 0.9, NULL, -1, 0, "US1"));
	}
	assert_int_equal(usv_qa_index_update(f->x), 4);
	assert_int_equal(usv_qa_index_instance(f->x, "7.0", &ii), 0);
	usv_qa_index_stats(f->x, &st);
	assert_int_equal(st.rotations, 0);
}

/* Many instances: counts stay exact and the index grows its tables. */
static void test_many(void **state)
{
	struct fx *f = *state;
	int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	char sop[64], study[64];

	assert_true(fd >= 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(sop, sizeof sop, "1.2.826.0.1.%d", i);
		snprintf(study, sizeof study, "1.2.826.0.2.%d", i / 5);
		const char *l = inst_line(sop, study, i % 3 ? "spleen" : "pancreas", 0.9,
		                          i % 7 ? "spleen" : NULL, i % 7 ? i % 3 != 0 : -1,
		                          i % 11 == 0, i % 2 ? "US1" : "US2");
		assert_int_equal(write(fd, l, strlen(l)), (ssize_t)strlen(l));
	}
	close(fd);
	assert_int_equal(usv_qa_index_update(f->x), 20000);
	assert_int_equal(usv_qa_index_ninstances(f->x), 20000);
	assert_int_equal(usv_qa_index_nstudies(f->x), 4000);
	struct usv_qa_instance_info ii;
	assert_int_equal(usv_qa_index_instance(f->x, "1.2.826.0.1.19999", &ii), 0);
	assert_string_equal(ii.study_uid, "1.2.826.0.2.3999");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_append_and_partial, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_study_revisions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
