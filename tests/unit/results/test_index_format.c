/*
 * NAME
 *	test_index_format.c - the results.jsonl line of one instance
 *
 * DESCRIPTION
 *	usv_results_index_format() against the format of results_index.h,
 *	read back with cJSON: the base keys, "kind", the QA grouping keys,
 *	technologist_label / label_source / agrees (null without a label;
 *	the agreement compares with the model's most probable class, also
 *	when the result is uncertain), "uncertain" with "label" "uncertain"
 *	and the probabilities kept, and a failed line without results.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "results_index.h"
#include "usv/dcm_result.h"

static const char *const LABELS[] = {"liver_left_long", "spleen", "gallbladder"};
static const char *SHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* A result over LABELS with probabilities p (spleen most probable for the
 * defaults below). */
static void make_result(usv_result *r, float p0, float p1, float p2, uint32_t frame)
{
	float probs[3] = {p0, p1, p2};
	char err[256];

	memset(r, 0, sizeof *r);
	snprintf(r->source_path, sizeof r->source_path, "/spool/active/x.dcm");
	snprintf(r->model_sha256, sizeof r->model_sha256, "%s", SHA);
	r->frame = frame;
	assert_int_equal(usv_result_fill(r, LABELS, probs, 3, 2, err, sizeof err), 0);
}

static cJSON *format(const struct usv_index_record *rec)
{
	char *line = NULL;

	assert_int_equal(usv_results_index_format(rec, &line), 0);
	assert_non_null(line);
	assert_null(strchr(line, '\n'));
	cJSON *o = cJSON_Parse(line);
	free(line);
	assert_non_null(o);
	return o;
}

static const cJSON *get(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!v)
		fail_msg("key %s missing", key);
	return v;
}

static void assert_str(const cJSON *o, const char *key, const char *want)
{
	const cJSON *v = get(o, key);
	assert_true(cJSON_IsString(v));
	assert_string_equal(v->valuestring, want);
}

static struct usv_index_record base_record(const usv_result *res, size_t n)
{
	struct usv_index_record rec = {
	    .spool_id = "20261205-000001",
	    .outcome = "done",
	    .sop_instance_uid = "1.2.3.4",
	    .sop_class_uid = "1.2.840.10008.5.1.4.1.1.6.1",
	    .series_uid = "1.2.3",
	    .study_uid = "1.2",
	    .manufacturer = "ACME",
	    .manufacturer_model = "Model 1",
	    .frames_total = (int)n,
	    .results = res,
	    .nresults = n,
	    .model_name = "m",
	    .model_sha256 = SHA,
	    .model_arch = "a",
	    .batch = 4,
	    .station_name = "US1",
	    .study_date = "20261205",
	    .accession_hash = "0011223344556677",
	    .t_label_ms = 1.5,
	    .t_ocr_ms = 1.0,
	};
	return rec;
}

static void test_agreeing_label(void **state)
{
	(void)state;
	usv_result r;
	make_result(&r, 0.2f, 0.7f, 0.1f, 0);
	struct usv_index_record rec = base_record(&r, 1);
	rec.technologist_label = "spleen";
	rec.label_source = "dicom:ImageComments";
	cJSON *o = format(&rec);
	assert_str(o, "kind", "instance");
	assert_str(o, "label", "spleen");
	assert_str(o, "technologist_label", "spleen");
	assert_str(o, "label_source", "dicom:ImageComments");
	assert_true(cJSON_IsTrue(get(o, "agrees")));
	assert_true(cJSON_IsFalse(get(o, "uncertain")));
	assert_str(o, "station_name", "US1");
	assert_str(o, "study_date", "20261205");
	/* free text that may name the patient: never in the index */
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "study_description"));
	assert_str(o, "accession_hash", "0011223344556677");
	const cJSON *t = get(o, "timings_ms");
	assert_true(fabs(get(t, "label")->valuedouble - 1.5) < 1e-9);
	assert_true(fabs(get(t, "ocr")->valuedouble - 1.0) < 1e-9);
	assert_str(o, "outcome", "done");
	assert_true(fabs(get(o, "prob")->valuedouble - 0.7) < 1e-6);
	cJSON_Delete(o);
}

static void test_uncertain_disagreeing(void **state)
{
	(void)state;
	usv_result r[2];
	make_result(&r[0], 0.45f, 0.40f, 0.15f, 0); /* liver_left_long, below 0.5 */
	make_result(&r[1], 0.10f, 0.80f, 0.10f, 1); /* spleen, confident */
	r[0].uncertain = 1;
	r[0].min_confidence = r[1].min_confidence = 0.5f;
	struct usv_index_record rec = base_record(r, 2);
	rec.technologist_label = "spleen";
	rec.label_source = "ocr";
	cJSON *o = format(&rec);
	assert_str(o, "label", "uncertain");
	assert_true(cJSON_IsTrue(get(o, "uncertain")));
	/* compares with the model's most probable class of the first frame */
	assert_true(cJSON_IsFalse(get(o, "agrees")));
	assert_true(fabs(get(o, "prob")->valuedouble - 0.45) < 1e-6);
	const cJSON *topk = get(o, "topk");
	assert_int_equal(cJSON_GetArraySize(topk), 2);
	assert_string_equal(get(cJSON_GetArrayItem(topk, 0), "label")->valuestring,
	                    "liver_left_long");
	assert_string_equal(get(cJSON_GetArrayItem(topk, 1), "label")->valuestring, "spleen");
	const cJSON *res = get(o, "results");
	assert_int_equal(cJSON_GetArraySize(res), 2);
	assert_string_equal(get(cJSON_GetArrayItem(res, 0), "label")->valuestring, "uncertain");
	assert_string_equal(get(cJSON_GetArrayItem(res, 1), "label")->valuestring, "spleen");
	cJSON_Delete(o);

	/* the same with the label the model's class: agrees, still uncertain */
	rec.technologist_label = "liver_left_long";
	o = format(&rec);
	assert_true(cJSON_IsTrue(get(o, "agrees")));
	assert_str(o, "label", "uncertain");
	cJSON_Delete(o);
}

static void test_no_label(void **state)
{
	(void)state;
	usv_result r;
	make_result(&r, 0.2f, 0.7f, 0.1f, 0);
	struct usv_index_record rec = base_record(&r, 1);
	rec.label_source = "ocr"; /* a source without a label is not shown */
	cJSON *o = format(&rec);
	assert_true(cJSON_IsNull(get(o, "technologist_label")));
	assert_true(cJSON_IsNull(get(o, "label_source")));
	assert_true(cJSON_IsNull(get(o, "agrees")));
	assert_true(cJSON_IsFalse(get(o, "uncertain")));
	cJSON_Delete(o);
	rec.technologist_label = "";
	o = format(&rec);
	assert_true(cJSON_IsNull(get(o, "technologist_label")));
	assert_true(cJSON_IsNull(get(o, "agrees")));
	cJSON_Delete(o);
}

static void test_failed_line(void **state)
{
	(void)state;
	struct usv_index_record rec = {
	    .spool_id = "20261205-000002",
	    .outcome = "failed",
	    .reason = "cannot decode",
	    .technologist_label = "spleen",
	};
	cJSON *o = format(&rec);
	assert_str(o, "kind", "instance");
	assert_str(o, "reason", "cannot decode");
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "label"));
	assert_str(o, "technologist_label", "spleen");
	assert_true(cJSON_IsNull(get(o, "label_source")));
	assert_true(cJSON_IsNull(get(o, "agrees"))); /* nothing to compare with */
	assert_true(cJSON_IsFalse(get(o, "uncertain")));
	assert_str(o, "station_name", "");
	assert_str(o, "study_date", "");
	assert_str(o, "accession_hash", "");
	assert_int_equal(cJSON_GetArraySize(get(o, "results")), 0);
	cJSON_Delete(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_agreeing_label),
	    cmocka_unit_test(test_uncertain_disagreeing),
	    cmocka_unit_test(test_no_label),
	    cmocka_unit_test(test_failed_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
