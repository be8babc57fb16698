/*
 * NAME
 *	test_results.c - unit tests of the pure result helpers
 *
 * DESCRIPTION
 *	Derived UIDs (against Python hashlib values and an independent
 *	128-bit conversion), UID syntax, the view table and label lookup,
 *	usv_result_fill/usv_result_check, and the C-STORE status classes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "usv/dcm_result.h"
#include "usv/dcm_scu.h"
#include "usv/err.h"
#include "usv/sha256.h"

/* Independent conversion: unsigned __int128 and repeated % 10. */
static void ref_uid(char *out, const char *joined)
{
	usv_sha256 c;
	uint8_t d[32];
	unsigned __int128 v = 0;
	char digits[64];
	int n = 0, i;

	usv_sha256_init(&c);
	usv_sha256_update(&c, joined, strlen(joined));
	usv_sha256_final(&c, d);
	for (i = 0; i < 16; i++)
		v = (v << 8) | d[i];
	do {
		digits[n++] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v);
	strcpy(out, "2.25.");
	for (i = 0; i < n; i++)
		out[5 + i] = digits[n - 1 - i];
	out[5 + n] = '\0';
}

static const char *SHA_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_uid_python_vectors(void **state)
{
	char u[USV_UID_MAX];
	(void)state;

	/* values from Python: "2.25." + str(int.from_bytes(sha256(...)[:16], "big")) */
	assert_int_equal(usv_uid_result_instance(u, "1.2.3.4", 0, SHA_A, "sr"), 0);
	assert_string_equal(u, "2.25.112362684189207107722858958288304808406");
	assert_int_equal(usv_uid_result_series(u, "1.2.3", SHA_A, "tagged"), 0);
	assert_string_equal(u, "2.25.100564606727126598281816720776127246498");
	assert_int_equal(usv_uid_derive(u, NULL, 0), 0);
	assert_string_equal(u, "2.25.302652579918965577886386472538583578916");
}

static void test_uid_against_int128(void **state)
{
	char u[USV_UID_MAX], r[USV_UID_MAX], joined[256];
	unsigned i;
	(void)state;

	for (i = 0; i < 2000; i++) {
		char src[64];

		snprintf(src, sizeof src, "1.2.840.%u.%u", i, i * 7919u);
		assert_int_equal(usv_uid_result_instance(u, src, i % 5, SHA_A, "sr"), 0);
		snprintf(joined, sizeof joined, "%s|%u|%s|sr", src, i % 5, SHA_A);
		ref_uid(r, joined);
		assert_string_equal(u, r);
		assert_true(strlen(u) <= 64);
		assert_true(usv_uid_valid(u));
	}
}

static void test_uid_changes(void **state)
{
	char a[USV_UID_MAX], b[USV_UID_MAX];
	(void)state;

	usv_uid_result_instance(a, "1.2.3", 0, SHA_A, "sr");
	usv_uid_result_instance(b, "1.2.3", 0, SHA_A, "sr");
	assert_string_equal(a, b);
	usv_uid_result_instance(b, "1.2.3", 1, SHA_A, "sr");
	assert_string_not_equal(a, b);
	usv_uid_result_instance(b, "1.2.3", 0, SHA_A, "tagged");
	assert_string_not_equal(a, b);
	usv_uid_result_instance(b, "1.2.3", 0, "b", "sr");
	assert_string_not_equal(a, b);
	assert_int_equal(usv_uid_result_instance(a, "", 0, SHA_A, "sr"), -EINVAL);
	assert_int_equal(usv_uid_result_instance(a, NULL, 0, SHA_A, "sr"), -EINVAL);
	assert_int_equal(usv_uid_result_series(a, "1.2", NULL, "sr"), -EINVAL);
}

static void test_uid_valid(void **state)
{
	(void)state;
	assert_true(usv_uid_valid("1.2.840.10008.1.2"));
	assert_true(usv_uid_valid("2.25.0"));
	assert_true(usv_uid_valid("0.1"));
	assert_false(usv_uid_valid("1.02"));
	assert_false(usv_uid_valid("1..2"));
	assert_false(usv_uid_valid(".1"));
	assert_false(usv_uid_valid("1."));
	assert_false(usv_uid_valid("1.2a"));
	assert_false(usv_uid_valid(""));
	assert_false(usv_uid_valid(NULL));
	assert_true(
	    usv_uid_valid("1.234567890123456789012345678901234567890123456789012345678901"));
	assert_false(
	    usv_uid_valid("1.2345678901234567890123456789012345678901234567890123456789012345"));
}

static void test_view_table(void **state)
{
	static const struct {
		const char *label, *key, *organ, *orient;
	} cases[] = {
	    {"liver_left_long", "liver_left_long", "10200004", "38717003"},
	    {"Liver Left Transverse", "liver_left_trans", "10200004", "62824007"},
	    {"liver-right-longitudinal", "liver_right_long", "10200004", "38717003"},
	    {"LIVER_RIGHT_TRANS", "liver_right_trans", "10200004", "62824007"},
	    {"spleen", "spleen", "78961009", NULL},
	    {"Pancreas", "pancreas", "15776009", NULL},
	    {"kidney_left_long", "kidney_left_long", "64033007", "38717003"},
	    {"kidney left trans", "kidney_left_trans", "64033007", "62824007"},
	    {"kidney_right_longitudinal", "kidney_right_long", "64033007", "38717003"},
	    {"kidney_right_transverse", "kidney_right_trans", "64033007", "62824007"},
	    {"gall_bladder", "gallbladder", "28231008", NULL},
	};
	size_t i;
	(void)state;

	assert_int_equal(usv_view_count(), 11);
	assert_null(usv_view_at(11));
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const usv_view_info *v = usv_view_lookup(cases[i].label);

		assert_non_null(v);
		assert_string_equal(v->key, cases[i].key);
		assert_string_equal(v->organ_code, cases[i].organ);
		if (cases[i].orient)
			assert_string_equal(v->orient_code, cases[i].orient);
		else
			assert_null(v->orient_code);
		assert_true(strlen(v->code_value) <= 16);
		assert_true(v->known);
	}
	/* all codes distinct */
	for (i = 0; i < usv_view_count(); i++)
		for (size_t j = i + 1; j < usv_view_count(); j++)
			assert_string_not_equal(usv_view_at(i)->code_value,
			                        usv_view_at(j)->code_value);
	assert_null(usv_view_lookup("liver"));
	assert_null(usv_view_lookup("liver_left_longer"));
	assert_null(usv_view_lookup(""));
	assert_null(usv_view_lookup(NULL));
}

static void test_view_unknown(void **state)
{
	usv_view_info v;
	const char *label = "bladder_sagittal_view";
	(void)state;

	assert_int_equal(usv_view_describe(label, &v), 0);
	assert_false(v.known);
	assert_string_equal(v.code_value, label);
	assert_string_equal(v.display, label);
	assert_null(v.organ_code);
	assert_int_equal(usv_view_describe("", &v), -EINVAL);
	assert_int_equal(usv_view_describe("spleen", &v), 0);
	assert_true(v.known);
	assert_string_equal(v.display, "Spleen");
}

static void test_result_fill(void **state)
{
	static usv_result r;
	const char *labels[] = {"a", "b", "c", "d", "e"};
	const float probs[] = {0.1f, 0.4f, 0.05f, 0.4f, 0.05f};
	char err[USV_ERRBUF];
	(void)state;

	memset(&r, 0, sizeof r);
	assert_int_equal(usv_result_fill(&r, labels, probs, 5, 3, err, sizeof err), 0);
	assert_int_equal(r.nclasses, 5);
	assert_int_equal(r.ntop, 3);
	/* ties: lowest index first */
	assert_int_equal(r.pred_index, 1);
	assert_string_equal(r.pred_label, "b");
	assert_int_equal(r.top[0].class_index, 1);
	assert_int_equal(r.top[1].class_index, 3);
	assert_int_equal(r.top[2].class_index, 0);
	assert_true(r.top[0].prob >= r.top[1].prob && r.top[1].prob >= r.top[2].prob);
	assert_string_equal(r.algorithm_name, "usview");

	assert_int_equal(usv_result_fill(&r, labels, probs, 5, 100, err, sizeof err), 0);
	assert_int_equal(r.ntop, 5);
	assert_int_equal(usv_result_fill(&r, labels, probs, 5, 0, err, sizeof err), 0);
	assert_int_equal(r.ntop, 1);

	/* check() needs the source and a model hash */
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	strcpy(r.source_path, "/x.dcm");
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	strcpy(r.model_sha256, SHA_A);
	assert_int_equal(usv_result_check(&r, err, sizeof err), 0);
	r.model_sha256[3] = 'A';
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	strcpy(r.model_sha256, SHA_A);

	/* QA fields: label, agreement, uncertain, threshold */
	strcpy(r.tech_label, "b");
	strcpy(r.tech_source, "dicom:ImageComments");
	r.agrees = 1;
	r.uncertain = 1;
	r.min_confidence = 0.5f;
	assert_int_equal(usv_result_check(&r, err, sizeof err), 0);
	r.agrees = 2;
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	r.agrees = 1;
	r.tech_label[0] = '\0'; /* agreement without a label */
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	r.agrees = 0;
	assert_int_equal(usv_result_check(&r, err, sizeof err), 0);
	r.uncertain = -1;
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	r.uncertain = 0;
	r.min_confidence = 1.5f;
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	r.min_confidence = 0;
	memset(r.tech_source, 'x', sizeof r.tech_source); /* not terminated */
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
	memset(r.tech_source, 0, sizeof r.tech_source);
	assert_int_equal(usv_result_check(&r, err, sizeof err), 0);

	r.pred_label[0] = 'z';
	assert_int_equal(usv_result_check(&r, err, sizeof err), -EINVAL);
}

static void test_result_fill_invalid(void **state)
{
	static usv_result r;
	const char *labels[] = {"a", "", "c"};
	const char *ok_labels[] = {"a", "b"};
	float bad[] = {0.5f, 1.5f};
	float nan_p[] = {0.5f, 0.0f};
	char err[USV_ERRBUF], longl[100];
	const char *long_labels[] = {"a", longl};
	const float probs[] = {0.5f, 0.3f, 0.2f};
	(void)state;

	nan_p[1] = nan_p[1] / nan_p[1];
	assert_int_equal(usv_result_fill(&r, labels, probs, 3, 1, err, sizeof err), -EINVAL);
	assert_int_equal(usv_result_fill(&r, ok_labels, bad, 2, 1, err, sizeof err), -EINVAL);
	assert_int_equal(usv_result_fill(&r, ok_labels, nan_p, 2, 1, err, sizeof err), -EINVAL);
	assert_int_equal(usv_result_fill(&r, ok_labels, probs, 0, 1, err, sizeof err), -EINVAL);
	assert_int_equal(
	    usv_result_fill(&r, ok_labels, probs, USV_RESULT_MAX_CLASSES + 1, 1, err, sizeof err),
	    -EINVAL);
	memset(longl, 'x', sizeof longl - 1);
	longl[sizeof longl - 1] = '\0';
	assert_int_equal(usv_result_fill(&r, long_labels, probs, 2, 1, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "label 1"));
}

static void test_scu_status_classes(void **state)
{
	(void)state;
	assert_int_equal(usv_scu_classify_status(0x0000), USV_SCU_SUCCESS);
	assert_int_equal(usv_scu_classify_status(0xB000), USV_SCU_WARNING);
	assert_int_equal(usv_scu_classify_status(0xB006), USV_SCU_WARNING);
	assert_int_equal(usv_scu_classify_status(0xB007), USV_SCU_WARNING);
	assert_int_equal(usv_scu_classify_status(0x0001), USV_SCU_WARNING);
	assert_int_equal(usv_scu_classify_status(0xA700), USV_SCU_RETRY);
	assert_int_equal(usv_scu_classify_status(0xA7FF), USV_SCU_RETRY);
	assert_int_equal(usv_scu_classify_status(0xFE00), USV_SCU_RETRY);
	assert_int_equal(usv_scu_classify_status(0xA900), USV_SCU_PERMANENT);
	assert_int_equal(usv_scu_classify_status(0xA9FF), USV_SCU_PERMANENT);
	assert_int_equal(usv_scu_classify_status(0xC000), USV_SCU_PERMANENT);
	assert_int_equal(usv_scu_classify_status(0xCFFF), USV_SCU_PERMANENT);
	assert_int_equal(usv_scu_classify_status(0x0122), USV_SCU_PERMANENT);
	assert_int_equal(usv_scu_classify_status(0x0124), USV_SCU_PERMANENT);
	assert_int_equal(usv_scu_classify_status(0x0110), USV_SCU_PERMANENT);
	assert_string_equal(usv_scu_outcome_name(USV_SCU_RETRY), "retry");
}

static void test_scu_bad_args(void **state)
{
	usv_scu_peer p;
	usv_scu_result res;
	(void)state;

	memset(&p, 0, sizeof p);
	p.called_ae = "THISAETITLEISTOOLONG";
	p.calling_ae = "US";
	p.host = "127.0.0.1";
	p.port = 104;
	assert_int_equal(usv_scu_store(&p, "/nonexistent", &res, NULL, 0), -EINVAL);
	assert_int_equal(res.outcome, USV_SCU_PERMANENT);
	p.called_ae = "PEER";
	p.port = 0;
	assert_int_equal(usv_scu_echo(&p, &res, NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uid_python_vectors), cmocka_unit_test(test_uid_against_int128),
	    cmocka_unit_test(test_uid_changes),        cmocka_unit_test(test_uid_valid),
	    cmocka_unit_test(test_view_table),         cmocka_unit_test(test_view_unknown),
	    cmocka_unit_test(test_result_fill),        cmocka_unit_test(test_result_fill_invalid),
	    cmocka_unit_test(test_scu_status_classes), cmocka_unit_test(test_scu_bad_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
