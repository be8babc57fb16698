/*
 * NAME
 *	test_study.c - the QA study tracker (daemon/study.c)
 *
 * DESCRIPTION
 *	A spool and its results.jsonl in a temporary directory; the tracker
 *	without its thread (passes run by hand at chosen wall-clock times).
 *	Asserted, each from the study lines read back from results.jsonl
 *	(and .1):
 *	- protocol choice: first configured protocol whose match string is a
 *	  case-insensitive substring of Study Description, Requested
 *	  Procedure Description or Protocol Name; none: "default" with the
 *	  11 views of usv_view_at(), missing listed in table order;
 *	- views_present counts done instances, uncertain ones under
 *	  "uncertain" only, disagreements, instances of every outcome;
 *	- quiet period: nothing before last change + quiet_s;
 *	- deduplication on SOP Instance UID: an identical report changes
 *	  nothing (no new revision), a changed one replaces the entry;
 *	- revisions 1, 2 after a late instance, never a second line for one
 *	  revision;
 *	- recovery: a pending revision whose line is absent is written once;
 *	  one whose line is present (in results.jsonl or, after a rotation,
 *	  in results.jsonl.1) is not written again;
 *	- a corrupt state file is moved aside and the tracker opens;
 *	- retention forgets written studies;
 *	- with a destination that takes study SRs and a real ultrasound file
 *	  in done/ (from $USV_SHARED_DIR, skipped when absent): one SR in the
 *	  outbox, listed in the record's outputs with the derived UID, and
 *	  dciodvfy (when installed) reports no error;
 *	- with the thread: four threads note overlapping instances of five
 *	  studies while records are written (quiet_s 0); afterwards nothing
 *	  is pending, revisions run 1..n and the last counts every instance
 *	  once (label tsan: the ThreadSanitizer build runs it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
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

#include "results_index.h"
#include "results_route.h"
#include "spool.h"
#include "study.h"
#include "usv/dcm_image.h"
#include "usv/dcm_result.h"
#include "usv/dcm_study_sr.h"
#include "usv/dicom.h"
#include "usv/err.h"

static char root[PATH_MAX];
static usv_spool *sp;
static struct usv_results_index *idx;
static struct usv_study_settings *S;
static int outputs;

static void get_settings(void *ctx, struct usv_study_settings *out)
{
	(void)ctx;
	*out = *S;
}

static void on_output(void *ctx)
{
	(void)ctx;
	outputs++;
}

/* The tracker's clock (time() may lag CLOCK_REALTIME by a tick). */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
	char err[256];

	(void)state;
	snprintf(root, sizeof root, "/tmp/usv-test-study-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	if (usv_spool_open(root, &sp, err, sizeof err) < 0)
		return -1;
	if (usv_results_index_open(root, &idx, err, sizeof err) < 0)
		return -1;
	S = calloc(1, sizeof *S);
	if (!S)
		return -1;
	S->quiet_s = 30;
	outputs = 0;
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	usv_results_index_close(idx);
	idx = NULL;
	usv_spool_free(sp);
	sp = NULL;
	free(S);
	S = NULL;
	if (getenv("USV_TEST_KEEP")) /* debugging: leave the spool */
		return 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		return -1;
	return 0;
}

static struct usv_study_tracker *open_tracker(enum usv_study_crash crash)
{
	struct usv_study_env env = {
	    .spool = sp,
	    .index = idx,
	    .model_sha256 = "ab",
	    .software_version = "test",
	    .get_settings = get_settings,
	    .on_output = on_output,
	    .no_thread = 1,
	    .crash_test = crash,
	};
	struct usv_study_tracker *t = NULL;
	char err[256];

	int r = usv_study_tracker_open(&env, &t, err, sizeof err);
	if (r)
		fail_msg("open: %s", err);
	return t;
}

/* One instance report with the fields a test varies. */
static struct usv_qa_instance inst(const char *study, const char *sop, const char *outcome,
                                   const char *label, int uncertain, int agrees)
{
	struct usv_qa_instance q = {
	    .spool_id = "",
	    .outcome = outcome,
	    .study_uid = study,
	    .series_uid = "1.2.3.4",
	    .sop_instance_uid = sop,
	    .sop_class_uid = "1.2.840.10008.5.1.4.1.1.6.1",
	    .study_description = "US ABDOMEN",
	    .requested_procedure_description = "",
	    .protocol_name = "",
	    .station_name = "US1",
	    .study_date = "20261205",
	    .accession_hash = "0123456789abcdef",
	    .label = label,
	    .prob = 0.9,
	    .uncertain = uncertain,
	    .technologist_label = agrees >= 0 ? "x" : "",
	    .label_source = agrees >= 0 ? "dicom:ImageComments" : "",
	    .agrees = agrees,
	};
	return q;
}

static void load_lines(const char *path, const char *study, cJSON *out)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		cJSON *o = cJSON_Parse(line);
		const cJSON *k = cJSON_GetObjectItem(o, "kind"),
		            *u = cJSON_GetObjectItem(o, "study_uid");
		if (cJSON_IsString(k) && !strcmp(k->valuestring, "study") && cJSON_IsString(u) &&
		    !strcmp(u->valuestring, study))
			cJSON_AddItemToArray(out, o);
		else
			cJSON_Delete(o);
	}
	free(line);
	fclose(f);
}

/* The study records of a study, oldest first (results.jsonl.1 before results.jsonl). */
static cJSON *records(const char *study)
{
	char p[PATH_MAX + 32];
	cJSON *a = cJSON_CreateArray();

	snprintf(p, sizeof p, "%s/results.jsonl.1", root);
	load_lines(p, study, a);
	snprintf(p, sizeof p, "%s/results.jsonl", root);
	load_lines(p, study, a);
	return a;
}

static int num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	assert_true(cJSON_IsNumber(v));
	return v->valueint;
}

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static void note(struct usv_study_tracker *t, struct usv_qa_instance q)
{
	assert_int_equal(usv_study_note(t, &q), 0);
}

static unsigned run(struct usv_study_tracker *t, double at)
{
	unsigned w = 0;
	assert_int_equal(usv_study_tracker_run(t, at, &w), 0);
	return w;
}

/* ---- tests ---------------------------------------------------------- */

static void test_default_protocol(void **state)
{
	(void)state;
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_NONE);
	note(t, inst("1.9.1", "1.9.1.1", "done", "liver_left_long", 0, 1));
	note(t, inst("1.9.1", "1.9.1.2", "done", "kidney_left_long", 0, 0)); /* disagrees */
	note(t, inst("1.9.1", "1.9.1.3", "done", "spleen", 1, -1));          /* uncertain */
	note(t, inst("1.9.1", "1.9.1.4", "done", "liver_left_long", 0, -1));
	note(t, inst("1.9.1", "1.9.1.5", "failed", "", 0, -1));
	/* an unreadable file names no study: ignored */
	note(t, inst("", "", "failed", "", 0, -1));
	size_t n;
	usv_study_tracker_count(t, &n, NULL);
	assert_int_equal(n, 1);
	assert_int_equal(run(t, now_s() + 5), 0); /* quiet period not over */
	assert_int_equal(run(t, now_s() + 31), 1);
	assert_int_equal(run(t, now_s() + 3600), 0); /* written once */

	cJSON *a = records("1.9.1");
	assert_int_equal(cJSON_GetArraySize(a), 1);
	cJSON *r = cJSON_GetArrayItem(a, 0);
	assert_string_equal(str(r, "protocol"), "default");
	assert_int_equal(num(r, "revision"), 1);
	assert_int_equal(num(r, "instances"), 5);
	assert_int_equal(num(r, "disagreements"), 1);
	assert_int_equal(num(r, "uncertain"), 1);
	assert_string_equal(str(r, "station_name"), "US1");
	assert_string_equal(str(r, "study_date"), "20261205");
	assert_string_equal(str(r, "accession_hash"), "0123456789abcdef");
	const cJSON *v = cJSON_GetObjectItem(r, "views_present");
	assert_int_equal(cJSON_GetArraySize(v), 3);
	assert_int_equal(num(v, "liver_left_long"), 2);
	assert_int_equal(num(v, "kidney_left_long"), 1);
	assert_int_equal(num(v, "uncertain"), 1);
	assert_null(cJSON_GetObjectItem(v, "spleen")); /* uncertain: not its class */
	/* missing: the table minus the two found views, in table order */
	const cJSON *m = cJSON_GetObjectItem(r, "missing");
	int k = 0;
	for (size_t i = 0; i < usv_view_count(); i++) {
		const char *key = usv_view_at(i)->key;
		if (!strcmp(key, "liver_left_long") || !strcmp(key, "kidney_left_long"))
			continue;
		assert_string_equal(cJSON_GetArrayItem(m, k)->valuestring, key);
		k++;
	}
	assert_int_equal(cJSON_GetArraySize(m), k);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "outputs")), 0);
	cJSON_Delete(a);
	usv_study_tracker_free(t);
}

static void test_configured_protocols(void **state)
{
	(void)state;
	S->n_protocols = 2;
	struct usv_config_protocol *p = &S->protocols[0];
	snprintf(p->name, sizeof p->name, "renal");
	p->n_match = 2;
	snprintf(p->match[0], sizeof p->match[0], "KIDNEY");
	snprintf(p->match[1], sizeof p->match[1], "renal");
	p->n_required_views = 2;
	snprintf(p->required_views[0], sizeof p->required_views[0], "kidney_left_long");
	snprintf(p->required_views[1], sizeof p->required_views[1], "Kidney right longitudinal");
	p = &S->protocols[1];
	snprintf(p->name, sizeof p->name, "liver");
	p->n_match = 1;
	snprintf(p->match[0], sizeof p->match[0], "liver");
	p->n_required_views = 1;
	snprintf(p->required_views[0], sizeof p->required_views[0], "liver_left_long");

	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_NONE);
	/* A: matched on the Protocol Name of one instance, case-insensitively */
	struct usv_qa_instance q = inst("1.9.2", "1.9.2.1", "done", "kidney_left_long", 0, -1);
	note(t, q);
	q = inst("1.9.2", "1.9.2.2", "done", "spleen", 0, -1);
	q.protocol_name = "Renal follow-up";
	note(t, q);
	/* B: both protocols match the description: the first configured wins */
	q = inst("1.9.3", "1.9.3.1", "done", "liver_left_long", 0, -1);
	q.study_description = "Liver and kidney";
	note(t, q);
	/* C: requested procedure description */
	q = inst("1.9.4", "1.9.4.1", "done", "liver_left_long", 0, -1);
	q.requested_procedure_description = "US LIVER";
	note(t, q);
	/* D: no match: default */
	note(t, inst("1.9.5", "1.9.5.1", "done", "liver_left_long", 0, -1));
	assert_int_equal(run(t, now_s() + 60), 4);

	cJSON *a = records("1.9.2"), *r = cJSON_GetArrayItem(a, 0);
	assert_string_equal(str(r, "protocol"), "renal");
	const cJSON *m = cJSON_GetObjectItem(r, "missing");
	assert_int_equal(cJSON_GetArraySize(m), 1);
	assert_string_equal(cJSON_GetArrayItem(m, 0)->valuestring, "Kidney right longitudinal");
	cJSON_Delete(a);
	a = records("1.9.3");
	assert_string_equal(str(cJSON_GetArrayItem(a, 0), "protocol"), "renal");
	cJSON_Delete(a);
	a = records("1.9.4");
	r = cJSON_GetArrayItem(a, 0);
	assert_string_equal(str(r, "protocol"), "liver");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "missing")), 0);
	cJSON_Delete(a);
	a = records("1.9.5");
	r = cJSON_GetArrayItem(a, 0);
	assert_string_equal(str(r, "protocol"), "default");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "missing")),
	                 (int)usv_view_count() - 1);
	cJSON_Delete(a);
	usv_study_tracker_free(t);
}

static void test_dedup_and_revisions(void **state)
{
	(void)state;
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_NONE);
	size_t n, pend;
	note(t, inst("1.9.6", "1.9.6.1", "done", "spleen", 0, -1));
	note(t, inst("1.9.6", "1.9.6.1", "done", "spleen", 0, -1)); /* the same again */
	note(t, inst("1.9.6", "1.9.6.2", "done", "pancreas", 0, 1));
	assert_int_equal(run(t, now_s() + 31), 1);
	usv_study_tracker_count(t, &n, &pend);
	assert_int_equal(n, 1);
	assert_int_equal(pend, 0);
	/* an identical report after the record (redelivery): no revision */
	note(t, inst("1.9.6", "1.9.6.2", "done", "pancreas", 0, 1));
	assert_int_equal(run(t, now_s() + 3600), 0);
	/* the same result from a copy sent again (another spool id): none */
	struct usv_qa_instance again = inst("1.9.6", "1.9.6.2", "done", "pancreas", 0, 1);
	again.spool_id = "000661ddd9c5d612-04ae5000";
	note(t, again);
	usv_study_tracker_count(t, &n, &pend);
	assert_int_equal(pend, 0);
	assert_int_equal(run(t, now_s() + 3600), 0);
	/* reprocessed with another result: replaces, revision 2 */
	note(t, inst("1.9.6", "1.9.6.2", "done", "gallbladder", 0, 0));
	usv_study_tracker_count(t, &n, &pend);
	assert_int_equal(pend, 1);
	assert_int_equal(run(t, now_s() + 5), 0); /* quiet again first */
	assert_int_equal(run(t, now_s() + 31), 1);
	/* a late instance: revision 3 */
	note(t, inst("1.9.6", "1.9.6.3", "done", "spleen", 0, -1));
	assert_int_equal(run(t, now_s() + 31), 1);
	assert_int_equal(run(t, now_s() + 100), 0);

	cJSON *a = records("1.9.6");
	assert_int_equal(cJSON_GetArraySize(a), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(num(cJSON_GetArrayItem(a, i), "revision"), i + 1);
	cJSON *r1 = cJSON_GetArrayItem(a, 0), *r2 = cJSON_GetArrayItem(a, 1),
	      *r3 = cJSON_GetArrayItem(a, 2);
	assert_int_equal(num(r1, "instances"), 2);
	assert_int_equal(num(cJSON_GetObjectItem(r1, "views_present"), "pancreas"), 1);
	assert_int_equal(num(r1, "disagreements"), 0);
	assert_int_equal(num(r2, "instances"), 2);
	assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(r2, "views_present"), "pancreas"));
	assert_int_equal(num(cJSON_GetObjectItem(r2, "views_present"), "gallbladder"), 1);
	assert_int_equal(num(r2, "disagreements"), 1);
	assert_int_equal(num(r3, "instances"), 3);
	assert_int_equal(num(cJSON_GetObjectItem(r3, "views_present"), "spleen"), 2);
	cJSON_Delete(a);
	usv_study_tracker_free(t);

	/* state survives a restart: nothing due, a new instance gives 4 */
	t = open_tracker(USV_STUDY_CRASH_NONE);
	assert_int_equal(run(t, now_s() + 3600), 0);
	note(t, inst("1.9.6", "1.9.6.4", "excluded", "", 0, -1));
	assert_int_equal(run(t, now_s() + 31), 1);
	a = records("1.9.6");
	assert_int_equal(cJSON_GetArraySize(a), 4);
	assert_int_equal(num(cJSON_GetArrayItem(a, 3), "revision"), 4);
	assert_int_equal(num(cJSON_GetArrayItem(a, 3), "instances"), 4);
	cJSON_Delete(a);
	usv_study_tracker_free(t);
}

static void test_quiet_timer_survives_restart(void **state)
{
	(void)state;
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_NONE);
	note(t, inst("1.9.7", "1.9.7.1", "done", "spleen", 0, -1));
	usv_study_tracker_free(t);
	t = open_tracker(USV_STUDY_CRASH_NONE);
	assert_int_equal(run(t, now_s() + 10), 0);
	assert_int_equal(run(t, now_s() + 40), 1);
	usv_study_tracker_free(t);
}

static void test_recovery_line_absent(void **state)
{
	(void)state;
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_AFTER_PENDING);
	note(t, inst("1.9.8", "1.9.8.1", "done", "spleen", 0, -1));
	assert_int_equal(run(t, now_s() + 31), 0); /* "killed" before the line */
	usv_study_tracker_free(t);
	cJSON *a = records("1.9.8");
	assert_int_equal(cJSON_GetArraySize(a), 0);
	cJSON_Delete(a);

	t = open_tracker(USV_STUDY_CRASH_NONE);
	size_t n, pend;
	usv_study_tracker_count(t, &n, &pend);
	assert_int_equal(pend, 1);
	/* a pending revision does not wait for the quiet period */
	assert_int_equal(run(t, now_s()), 1);
	assert_int_equal(run(t, now_s() + 3600), 0);
	a = records("1.9.8");
	assert_int_equal(cJSON_GetArraySize(a), 1);
	assert_int_equal(num(cJSON_GetArrayItem(a, 0), "revision"), 1);
	cJSON_Delete(a);
	usv_study_tracker_free(t);
}

static void recovery_line_present(int rotate)
{
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_AFTER_LINE);
	note(t, inst("1.9.9", "1.9.9.1", "done", "spleen", 0, -1));
	assert_int_equal(run(t, now_s() + 31), 1); /* "killed" after the line */
	usv_study_tracker_free(t);
	if (rotate) {
		usv_results_index_set_limits(idx, 0, 3);
		assert_int_equal(usv_results_index_rotate(idx), 0);
	}
	cJSON *a = records("1.9.9");
	assert_int_equal(cJSON_GetArraySize(a), 1);
	cJSON_Delete(a);

	t = open_tracker(USV_STUDY_CRASH_NONE);
	assert_int_equal(run(t, now_s() + 3600), 0); /* found: not written again */
	size_t n, pend;
	usv_study_tracker_count(t, &n, &pend);
	assert_int_equal(pend, 0);
	note(t, inst("1.9.9", "1.9.9.2", "done", "pancreas", 0, -1));
	assert_int_equal(run(t, now_s() + 31), 1);
	a = records("1.9.9");
	assert_int_equal(cJSON_GetArraySize(a), 2);
	assert_int_equal(num(cJSON_GetArrayItem(a, 0), "revision"), 1);
	assert_int_equal(num(cJSON_GetArrayItem(a, 1), "revision"), 2);
	cJSON_Delete(a);
	usv_study_tracker_free(t);
}

static void test_recovery_line_present(void **state)
{
	(void)state;
	recovery_line_present(0);
}

static void test_recovery_line_rotated(void **state)
{
	(void)state;
	recovery_line_present(1);
}

static void test_corrupt_state_and_retention(void **state)
{
	char p[PATH_MAX + 64];

	(void)state;
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_NONE);
	note(t, inst("1.9.10", "1.9.10.1", "done", "spleen", 0, -1));
	usv_study_tracker_free(t);
	snprintf(p, sizeof p, "%s/studies/%032d.json", root, 0);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs("{\"study_uid\": tru", f);
	fclose(f);

	t = open_tracker(USV_STUDY_CRASH_NONE);
	size_t n;
	usv_study_tracker_count(t, &n, NULL);
	assert_int_equal(n, 1);
	strcat(p, ".bad");
	assert_int_equal(access(p, F_OK), 0);
	usv_study_tracker_free(t);

	/* retention 1 h: kept an hour after writing, then forgotten */
	S->retention_h = 1;
	t = open_tracker(USV_STUDY_CRASH_NONE);
	assert_int_equal(run(t, now_s() + 31), 1);
	assert_int_equal(run(t, now_s() + 60), 0);
	usv_study_tracker_count(t, &n, NULL);
	assert_int_equal(n, 1);
	assert_int_equal(run(t, now_s() + 2 * 3600), 0);
	usv_study_tracker_count(t, &n, NULL);
	assert_int_equal(n, 0);
	usv_study_tracker_free(t);
	t = open_tracker(USV_STUDY_CRASH_NONE);
	usv_study_tracker_count(t, &n, NULL);
	assert_int_equal(n, 0);
	usv_study_tracker_free(t);
}

/* A real ultrasound file into done/; its ids and info. */
static int file_to_done(const char *src, char id[USV_SPOOL_ID_LEN], usv_dcm_info *info)
{
	char tmp[PATH_MAX], err[256], buf[65536];
	int fd;
	usv_dcm *h;

	if (usv_dcm_open(src, &h, err, sizeof err) < 0)
		return -1;
	*info = *usv_dcm_get_info(h);
	usv_dcm_free(h);
	if (usv_spool_tmp_create(sp, &fd, tmp, sizeof tmp) < 0)
		return -1;
	FILE *in = fopen(src, "rb");
	size_t n;
	while (in && (n = fread(buf, 1, sizeof buf, in)) > 0)
		if (write(fd, buf, n) != (ssize_t)n)
			return -1;
	if (in)
		fclose(in);
	close(fd);
	if (usv_spool_commit(sp, tmp, id, USV_SPOOL_ID_LEN) < 0)
		return -1;
	char cid[USV_SPOOL_ID_LEN];
	if (usv_spool_claim(sp, cid, sizeof cid) < 0 || strcmp(cid, id) != 0)
		return -1;
	return usv_spool_finish(sp, id, USV_SPOOL_DONE, NULL);
}

static void test_study_sr(void **state)
{
	const char *shared = getenv("USV_SHARED_DIR");
	char src[PATH_MAX], id[USV_SPOOL_ID_LEN], err[256];
	usv_dcm_info info;

	(void)state;
	snprintf(src, sizeof src, "%s/data/dicom/us/pydicom-data__US1_UNCR.dcm",
	         shared ? shared : "/nonexistent");
	if (access(src, R_OK) != 0)
		skip();
	assert_int_equal(usv_dcm_global_init(err, sizeof err), 0);
	assert_int_equal(file_to_done(src, id, &info), 0);

	S->routes.n = 2;
	for (int i = 0; i < 2; i++) {
		usv_dest *d = &S->routes.dests[i];
		snprintf(d->name, sizeof d->name, i ? "pacs" : "qa");
		snprintf(d->called_ae, sizeof d->called_ae, "PACS");
		snprintf(d->calling_ae, sizeof d->calling_ae, "USVIEW");
		snprintf(d->host, sizeof d->host, "127.0.0.1");
		d->port = 104;
		d->kinds = i ? USV_DEST_SR : USV_DEST_STUDY_SR; /* only "qa" takes it */
		usv_dest_defaults(d);
	}
	struct usv_study_tracker *t = open_tracker(USV_STUDY_CRASH_NONE);
	struct usv_qa_instance q =
	    inst(info.study_uid, info.sop_instance_uid, "done", "liver_left_long", 0, 0);
	q.spool_id = id;
	q.series_uid = info.series_uid;
	q.sop_class_uid = info.sop_class_uid;
	note(t, q);
	assert_int_equal(run(t, now_s() + 31), 1);
	assert_int_equal(outputs, 1);

	cJSON *a = records(info.study_uid), *r = cJSON_GetArrayItem(a, 0);
	const cJSON *outs = cJSON_GetObjectItem(r, "outputs");
	assert_int_equal(cJSON_GetArraySize(outs), 1);
	const cJSON *o = cJSON_GetArrayItem(outs, 0);
	char sop[USV_UID_MAX], series[USV_UID_MAX];
	assert_int_equal(usv_study_sr_uids(info.study_uid, 1, "ab", sop, series), 0);
	assert_string_equal(str(o, "destination"), "qa");
	assert_string_equal(str(o, "kind"), "study_sr");
	assert_string_equal(str(o, "sop_instance_uid"), sop);
	cJSON_Delete(a);

	usv_outbox_item *items = NULL;
	size_t n = 0;
	assert_int_equal(usv_spool_outbox_list(sp, "qa", &items, &n), 0);
	assert_int_equal(n, 1);
	char path[PATH_MAX], cmd[PATH_MAX * 2];
	assert_int_equal(usv_spool_outbox_path(sp, "qa", items[0].name, path, sizeof path), 0);
	free(items);
	assert_int_equal(usv_spool_outbox_list(sp, "pacs", &items, &n), 0);
	assert_int_equal(n, 0);
	free(items);
	if (system("command -v dciodvfy >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof cmd, "dciodvfy '%s' 2>&1 | grep -c '^Error'", path);
		FILE *pf = popen(cmd, "r");
		int errors = -1;
		assert_non_null(pf);
		assert_int_equal(fscanf(pf, "%d", &errors), 1);
		pclose(pf);
		if (errors) {
			snprintf(cmd, sizeof cmd, "dciodvfy '%s' 2>&1 | grep '^Error'", path);
			if (system(cmd) != 0)
				print_message("(could not show the errors)\n");
		}
		assert_int_equal(errors, 0);
	}
	usv_study_tracker_free(t);
	usv_dcm_global_cleanup();
}

/* ---- the thread ---------------------------------------------------- */

#define NTHREADS 4
#define NSTUDY 5
#define PER_THREAD 40

static struct usv_study_tracker *shared_t;

static void *noter(void *arg)
{
	int id = (int)(intptr_t)arg;
	char study[32], sop[48];

	for (int i = 0; i < PER_THREAD; i++) {
		snprintf(study, sizeof study, "1.8.%d", i % NSTUDY);
		/* threads overlap on half of the instances: duplicates */
		snprintf(sop, sizeof sop, "1.8.%d.%d", i % NSTUDY, (id / 2) * 1000 + i);
		struct usv_qa_instance q = inst(study, sop, "done", "spleen", 0, -1);
		if (usv_study_note(shared_t, &q) != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_thread(void **state)
{
	pthread_t th[NTHREADS];
	struct usv_study_env env = {
	    .spool = sp,
	    .index = idx,
	    .get_settings = get_settings,
	    .on_output = on_output,
	};
	char err[256];

	(void)state;
	S->quiet_s = 0; /* records while notes still come in: several revisions */
	assert_int_equal(usv_study_tracker_open(&env, &shared_t, err, sizeof err), 0);
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, noter, (void *)(intptr_t)i), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *rv;
		assert_int_equal(pthread_join(th[i], &rv), 0);
		assert_null(rv);
	}
	usv_study_tracker_wake(shared_t);
	size_t pend = 1;
	for (int i = 0; i < 100 && pend; i++) {
		usleep(50000);
		usv_study_tracker_count(shared_t, NULL, &pend);
	}
	assert_int_equal(pend, 0);
	usv_study_tracker_free(shared_t);
	for (int s = 0; s < NSTUDY; s++) {
		char study[32];
		snprintf(study, sizeof study, "1.8.%d", s);
		cJSON *a = records(study);
		int n = cJSON_GetArraySize(a);
		assert_true(n >= 1);
		for (int i = 0; i < n; i++)
			assert_int_equal(num(cJSON_GetArrayItem(a, i), "revision"), i + 1);
		/* 2 distinct sop sets x PER_THREAD / NSTUDY each */
		assert_int_equal(num(cJSON_GetArrayItem(a, n - 1), "instances"),
		                 2 * PER_THREAD / NSTUDY);
		cJSON_Delete(a);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_default_protocol, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_configured_protocols, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup_and_revisions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quiet_timer_survives_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recovery_line_absent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recovery_line_present, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recovery_line_rotated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_state_and_retention, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_study_sr, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_thread, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
