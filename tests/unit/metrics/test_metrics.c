/*
 * NAME
 *	test_metrics.c - unit tests of usviewd's metrics rendering and results index
 *
 * DESCRIPTION
 *	/metrics text: every family has # HELP and # TYPE before its samples,
 *	histogram buckets are cumulative with +Inf = _count and the right
 *	_sum, label values are escaped. results.jsonl: each record is one
 *	line of valid JSON with the documented keys; 4 threads appending 200
 *	records each give exactly 800 intact lines (one write() per line on
 *	O_APPEND).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "results_index.h"

static int extra(void *ctx, FILE *f)
{
	(void)ctx;
	usv_metrics_family(f, "usview_queue_depth", "gauge", "Test gauge.");
	fprintf(f, "usview_queue_depth{queue=\"incoming\"} 7\n");
	return 0;
}

static void test_render(void **state)
{
	struct usv_metrics *m = NULL;
	char *text = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(usv_metrics_new(&m), 0);
	usv_metrics_inc(m, USV_C_INST_DONE, 3);
	usv_metrics_inc(m, USV_C_ASSOC_REJECTED, 1);
	usv_metrics_observe_latency(m, 0.004); /* first bucket */
	usv_metrics_observe_latency(m, 0.2);   /* le 0.25 */
	usv_metrics_observe_latency(m, 100.0); /* only +Inf */
	usv_metrics_set_model(m, "ab\"c\\d", "custom", "line\nbreak");
	assert_int_equal(usv_metrics_render(m, extra, NULL, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "usview_instances_total{outcome=\"done\"} 3\n"));
	assert_non_null(strstr(text, "usview_associations_total{result=\"rejected\"} 1\n"));
	assert_non_null(strstr(text, "_bucket{le=\"0.005\"} 1\n"));
	assert_non_null(strstr(text, "_bucket{le=\"0.1\"} 1\n"));
	assert_non_null(strstr(text, "_bucket{le=\"0.25\"} 2\n"));
	assert_non_null(strstr(text, "_bucket{le=\"30\"} 2\n"));
	assert_non_null(strstr(text, "_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(text, "usview_classification_latency_seconds_count 3\n"));
	assert_non_null(strstr(text, "usview_classification_latency_seconds_sum 100.204000\n"));
	assert_non_null(strstr(text, "usview_model_info{sha256=\"ab\\\"c\\\\d\",arch=\"custom\","
	                             "name=\"line\\nbreak\"} 1\n"));
	assert_non_null(strstr(text, "usview_queue_depth{queue=\"incoming\"} 7\n"));

	/* every sample line follows a # TYPE of its family */
	char *save = NULL, family[128] = "";
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "# TYPE ", 7)) {
			sscanf(line + 7, "%127s", family);
			continue;
		}
		if (line[0] == '#')
			continue;
		assert_true(family[0]);
		if (strncmp(line, family, strlen(family)))
			fail_msg("sample '%s' outside family %s", line, family);
	}
	free(text);
	usv_metrics_free(m);
	usv_metrics_free(NULL);
}

struct appender {
	struct usv_results_index *idx;
	int id;
};

static void *append_many(void *arg)
{
	struct appender *a = arg;
	char uid[64], spool_id[32];

	for (int i = 0; i < 200; i++) {
		snprintf(uid, sizeof uid, "1.2.3.%d.%d", a->id, i);
		snprintf(spool_id, sizeof spool_id, "t%d-%d", a->id, i);
		struct usv_index_record rec = {.spool_id = spool_id,
		                               .outcome = "failed",
		                               .reason = "a reason with \"quotes\" and\nnewline",
		                               .sop_instance_uid = uid,
		                               .model_sha256 = "00"};
		if (usv_results_index_append(a->idx, &rec) != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_index(void **state)
{
	char dir[] = "/tmp/usv-index-test-XXXXXX";
	char path[256], err[256];
	struct usv_results_index *idx = NULL;
	pthread_t th[4];
	struct appender ap[4];

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(usv_results_index_open(dir, &idx, err, sizeof err), 0);
	for (int i = 0; i < 4; i++) {
		ap[i] = (struct appender){idx, i};
		assert_int_equal(pthread_create(&th[i], NULL, append_many, &ap[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *ret = NULL;
		pthread_join(th[i], &ret);
		assert_null(ret);
	}
	usv_results_index_close(idx);

	snprintf(path, sizeof path, "%s/results.jsonl", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	int n = 0, seen[4][200];
	memset(seen, 0, sizeof seen);
	while (getline(&line, &cap, f) > 0) {
		assert_true(line[strlen(line) - 1] == '\n');
		cJSON *o = cJSON_Parse(line);
		if (!o)
			fail_msg("line %d is not JSON: %s", n + 1, line);
		const char *uid = cJSON_GetObjectItem(o, "sop_instance_uid")->valuestring;
		int a, b;
		assert_int_equal(sscanf(uid, "1.2.3.%d.%d", &a, &b), 2);
		seen[a][b]++;
		assert_string_equal(cJSON_GetObjectItem(o, "outcome")->valuestring, "failed");
		assert_string_equal(cJSON_GetObjectItem(o, "reason")->valuestring,
		                    "a reason with \"quotes\" and\nnewline");
		assert_non_null(cJSON_GetObjectItem(o, "time"));
		assert_true(cJSON_IsArray(cJSON_GetObjectItem(o, "results")));
		assert_true(cJSON_IsObject(cJSON_GetObjectItem(o, "model")));
		assert_true(cJSON_IsObject(cJSON_GetObjectItem(o, "timings_ms")));
		cJSON_Delete(o);
		n++;
	}
	free(line);
	fclose(f);
	assert_int_equal(n, 800);
	for (int a = 0; a < 4; a++)
		for (int b = 0; b < 200; b++)
			assert_int_equal(seen[a][b], 1);
	unlink(path);
	rmdir(dir);
	assert_true(usv_results_index_open("/nonexistent/dir", &idx, err, sizeof err) < 0);
	assert_non_null(strstr(err, "/nonexistent/dir/results.jsonl"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_render),
	    cmocka_unit_test(test_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
