/*
 * NAME
 *	test_config.c - unit tests of the usviewd option table (config/)
 *
 * DESCRIPTION
 *	Defaults, every option type from YAML, a table of broken inputs with
 *	the expected "file:line:column: key: reason" prefix, dump/parse round
 *	trips, command-line overrides, and reload keeping the old
 *	configuration on error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "usv/config.h"
#include "usv/err.h"

static int load(const char *yaml, struct usv_config *cfg, char *err, size_t len)
{
	usv_config_defaults(cfg);
	return usv_config_load_string(yaml, strlen(yaml), "t.yaml", cfg, err, len);
}

static void test_defaults(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF] = "";

	(void)state;
	usv_config_defaults(&c);
	assert_int_equal(usv_config_validate(&c, err, sizeof err), 0);
	assert_string_equal(c.listen.bind, "0.0.0.0");
	assert_int_equal(c.listen.port, 11112);
	assert_string_equal(c.listen.ae_title, "USVIEW");
	assert_int_equal(c.listen.max_associations, 16);
	assert_int_equal(c.listen.max_pdu, 65536);
	assert_int_equal(c.n_allowed_peers, 0);
	assert_string_equal(c.spool.dir, "/var/lib/usview");
	assert_int_equal(c.model.batch_size, 8);
	assert_int_equal(c.model.batch_wait_ms, 20);
	assert_int_equal(c.model.top_k, 3);
	assert_int_equal(c.model.workers, 2);
	assert_int_equal(c.frames.policy, USV_CFG_FRAMES_FIRST);
	assert_int_equal(c.model.precision, USV_CFG_PRECISION_FP32);
	assert_true(c.exclusion.colour_fraction > 0.019 && c.exclusion.colour_fraction < 0.021);
	assert_int_equal(c.n_destinations, 0);
	assert_string_equal(c.http.bind, "127.0.0.1");
	assert_int_equal(c.http.enabled, 1);
	assert_int_equal(c.log.level, USV_CFG_LOG_INFO);
	assert_int_equal(c.log.journald, 1);
	/* the paper's centred crops */
	assert_int_equal(c.n_crop, 2);
	assert_string_equal(c.crop[0].manufacturer, "Philips");
	assert_int_equal(c.crop[0].cols, 1024);
	assert_int_equal(c.crop[0].rows, 768);
	assert_int_equal(c.crop[0].x, (1024 - 600) / 2);
	assert_int_equal(c.crop[0].y, (768 - 600) / 2);
	assert_int_equal(c.crop[1].width, 372);
	assert_int_equal(c.crop[1].x, (716 - 372) / 2);

	/* every row has a default or is a required list field */
	size_t n;
	const struct usv_config_option *o = usv_config_options(&n);
	assert_true(n > 20);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(o[i].def);
		assert_non_null(o[i].help);
	}
}

static void test_empty_file(void **state)
{
	struct usv_config a, b;
	char err[USV_ERRBUF];

	(void)state;
	usv_config_defaults(&a);
	assert_int_equal(load("", &b, err, sizeof err), 0);
	assert_memory_equal(&a, &b, sizeof a);
	assert_int_equal(load("# only a comment\n", &b, err, sizeof err), 0);
	assert_memory_equal(&a, &b, sizeof a);
}

static const char *const every_type =
    "listen:\n"
    "  bind: 127.0.0.1\n"
    "  port: 4242\n"
    "  ae_title: 'MY AE'\n"
    "  dimse_timeout: 30\n"
    "allowed_peers:\n"
    "  - {ae_title: ORTHANC, host: 127.0.0.1}\n"
    "  - ae_title: MODALITY1\n"
    "spool: {dir: /tmp/spool, min_free_mb: 0}\n"
    "model:\n"
    "  path: /m/model.usvm\n"
    "  batch_size: 16\n"
    "  batch_wait_ms: 0\n"
    "  precision: bf16\n"
    "frames: {policy: every_nth, n: 5}\n"
    "crop:\n"
    "  - {manufacturer: ACME, model: X1, rows: 100, cols: 200, width: 50, height: 40}\n"
    "exclusion: {colour_fraction: 0.25}\n"
    "destinations:\n"
    "  - name: pacs\n"
    "    ae_title: PACS\n"
    "    host: 10.0.0.1\n"
    "    port: 104\n"
    "    send: [sr, tagged]\n"
    "    sop_classes: [1.2.840.10008.5.1.4.1.1.6.1, 1.2.840.10008.5.1.4.1.1.3.1]\n"
    "    max_attempts: 3\n"
    "    backoff_initial_s: 1\n"
    "    backoff_max_s: 2\n"
    "  - {name: archive, ae_title: ARCH, host: arch.example, port: 11112}\n"
    "http: {port: 8080, enabled: no}\n"
    "log: {level: debug, journald: false}\n";

static void test_every_type(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF] = "";

	(void)state;
	int r = load(every_type, &c, err, sizeof err);
	if (r)
		fprintf(stderr, "%s\n", err);
	assert_int_equal(r, 0);
	assert_string_equal(c.listen.bind, "127.0.0.1");
	assert_int_equal(c.listen.port, 4242);
	assert_string_equal(c.listen.ae_title, "MY AE");
	assert_int_equal(c.listen.dimse_timeout, 30);
	assert_int_equal(c.listen.acse_timeout, 10); /* default kept */
	assert_int_equal(c.n_allowed_peers, 2);
	assert_string_equal(c.allowed_peers[0].host, "127.0.0.1");
	assert_string_equal(c.allowed_peers[1].ae_title, "MODALITY1");
	assert_string_equal(c.allowed_peers[1].host, "");
	assert_string_equal(c.spool.dir, "/tmp/spool");
	assert_int_equal(c.spool.min_free_mb, 0);
	assert_string_equal(c.model.path, "/m/model.usvm");
	assert_int_equal(c.model.batch_size, 16);
	assert_int_equal(c.model.batch_wait_ms, 0);
	assert_int_equal(c.frames.policy, USV_CFG_FRAMES_EVERY_NTH);
	assert_int_equal(c.model.precision, USV_CFG_PRECISION_BF16);
	assert_int_equal(c.frames.n, 5);
	assert_int_equal(c.n_crop, 1); /* the file's list replaces the defaults */
	assert_string_equal(c.crop[0].model, "X1");
	assert_int_equal(c.crop[0].x, -1);
	assert_true(c.exclusion.colour_fraction == 0.25);
	assert_int_equal(c.n_destinations, 2);
	assert_string_equal(c.destinations[0].name, "pacs");
	assert_int_equal(c.destinations[0].port, 104);
	assert_int_equal(c.destinations[0].send, USV_CFG_SEND_SR | USV_CFG_SEND_TAGGED);
	assert_int_equal(c.destinations[0].n_sop_classes, 2);
	assert_string_equal(c.destinations[0].sop_classes[1], "1.2.840.10008.5.1.4.1.1.3.1");
	assert_int_equal(c.destinations[0].max_attempts, 3);
	assert_int_equal(c.destinations[1].send, USV_CFG_SEND_SR);
	assert_int_equal(c.destinations[1].max_attempts, 10);
	assert_int_equal(c.destinations[1].backoff_max_s, 3600);
	assert_int_equal(c.destinations[1].max_age_h, 72);
	assert_int_equal(c.http.port, 8080);
	assert_int_equal(c.http.enabled, 0);
	assert_int_equal(c.log.level, USV_CFG_LOG_DEBUG);
	assert_int_equal(c.log.journald, 0);
	assert_string_equal(usv_config_enum_name("frames.policy", c.frames.policy), "every_nth");
}

/* dump -> parse gives back the same struct, for the defaults and a full file */
static void roundtrip(const struct usv_config *a)
{
	char *text = NULL, err[USV_ERRBUF] = "";
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	struct usv_config b;

	assert_non_null(f);
	assert_int_equal(usv_config_dump(a, f), 0);
	fclose(f);
	usv_config_defaults(&b);
	int r = usv_config_load_string(text, len, "dump.yaml", &b, err, sizeof err);
	if (r)
		fprintf(stderr, "%s\n%s\n", err, text);
	assert_int_equal(r, 0);
	assert_memory_equal(a, &b, sizeof b);
	free(text);
}

static void test_dump_roundtrip(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF];

	(void)state;
	usv_config_defaults(&c);
	roundtrip(&c);
	assert_int_equal(load(every_type, &c, err, sizeof err), 0);
	roundtrip(&c);
}

struct bad_case {
	const char *yaml;
	const char *expect; /* prefix of the error message */
	const char *reason; /* substring of the error message */
};

static const struct bad_case bad_cases[] = {
    {"listen:\n  prot: 11112\n", "t.yaml:2:3: listen.prot: ", "unknown key"},
    {"lisen:\n  port: 1\n", "t.yaml:1:1: lisen: ", "unknown key"},
    {"listen:\n  bind: localhost\n", "t.yaml:2:9: listen.bind: ", "not a numeric IPv4"},
    {"listen:\n  port: eleven\n", "t.yaml:2:9: listen.port: ", "expected an integer"},
    {"listen:\n  port: 70000\n", "t.yaml:2:9: listen.port: ", "out of range [0, 65535]"},
    {"listen:\n  port: -1\n", "t.yaml:2:9: listen.port: ", "out of range"},
    {"listen:\n  port: \"104\"\n", "t.yaml:2:9: listen.port: ", "expected an integer"},
    {"listen:\n  port: [1]\n", "t.yaml:2:9: listen.port: ", "expected a scalar"},
    {"listen: 5\n", "t.yaml:1:9: listen: ", "expected a mapping"},
    {"listen:\n  ae_title: ABCDEFGHIJKLMNOPQ\n",
     "t.yaml:2:13: listen.ae_title: ", "longer than 16 characters"},
    {"listen:\n  ae_title: 'A\\B'\n", "t.yaml:2:13: listen.ae_title: ", "backslash"},
    {"listen:\n  ae_title: '   '\n", "t.yaml:2:13: listen.ae_title: ", "blank"},
    {"listen:\n  ae_title: \"A\\tB\"\n", "t.yaml:2:13: listen.ae_title: ", "control"},
    /* the storage SCP serves at most 64 associations at once */
    {"listen:\n  max_associations: 65\n",
     "t.yaml:2:21: listen.max_associations: ", "out of range [1, 64]"},
    {"frames:\n  policy: random\n",
     "t.yaml:2:11: frames.policy: ", "not one of: first, middle, every_nth, all"},
    {"http:\n  enabled: maybe\n", "t.yaml:2:12: http.enabled: ", "true or false"},
    {"exclusion:\n  colour_fraction: 1.5\n",
     "t.yaml:2:20: exclusion.colour_fraction: ", "out of range"},
    {"exclusion:\n  colour_fraction: lots\n",
     "t.yaml:2:20: exclusion.colour_fraction: ", "expected a number"},
    {"log: {level: loud}\n", "t.yaml:1:14: log.level: ", "not one of"},
    {"model:\n  workers: 2\n  workers: 3\n", "t.yaml:3:3: model.workers: ", "duplicate key"},
    {"destinations:\n"
     "  - {name: a, ae_title: A, host: h, port: 1}\n"
     "  - {name: a, ae_title: B, host: h, port: 2}\n",
     "t.yaml:3:5: destinations[1]: ", "duplicate name 'a'"},
    {"destinations:\n  - {name: a, ae_title: A, port: 1}\n",
     "t.yaml:2:5: destinations[0]: ", "missing required key 'host'"},
    {"destinations:\n  - {name: a, ae_title: A, host: h, port: 1, colour: red}\n",
     "t.yaml:2:46: destinations[0].colour: ", "unknown key"},
    {"destinations:\n  - {name: a, ae_title: A, host: h, port: 1, send: [sr, pdf]}\n",
     "t.yaml:2:57: destinations[0].send: ", "not one of: sr, tagged"},
    {"destinations:\n  - {name: 'a/x', ae_title: A, host: h, port: 1}\n",
     "t.yaml:2:12: destinations[0].name: ", "letters, digits"},
    {"destinations:\n"
     "  - {name: a, ae_title: A, host: h, port: 1, backoff_initial_s: 9, backoff_max_s: 5}\n",
     "t.yaml:2:5: destinations[0]: ", "backoff_initial_s (9) is larger"},
    {"destinations: {name: a}\n", "t.yaml:1:15: destinations: ", "expected a list"},
    {"destinations:\n  - pacs\n", "t.yaml:2:5: destinations[0]: ", "expected a mapping"},
    {"crop:\n  - {manufacturer: X, rows: 10, cols: 10, width: 20, height: 5}\n",
     "t.yaml:2:5: crop[0]: ", "larger than the image"},
    {"crop:\n  - {manufacturer: X, rows: 10, cols: 10, width: 5, height: 5, x: 8}\n",
     "t.yaml:2:5: crop[0]: ", "does not fit"},
    {"model:\n  precision: int8\n", "t.yaml:2:14: model.precision: ", "not one of: fp32, bf16"},
    {"allowed_peers:\n  - {host: 1.2.3.4}\n",
     "t.yaml:2:5: allowed_peers[0]: ", "missing required key 'ae_title'"},
    {"- a\n- b\n", "t.yaml:1:1: (root): ", "expected a mapping"},
    {"listen:\n  port: 1\n bad\n", "t.yaml:", "YAML syntax error"},
    {"http: {port: 11112, bind: 0.0.0.0}\nlisten: {bind: 0.0.0.0}\n",
     "t.yaml: http.port: ", "same address"},
    {"model:\n  test_views: 3\n",
     "t.yaml:2:15: model.test_views: ", "3 is not 0 (the model's), 1, 2 or 10"},
    {"results:\n  backend: postgresql\n",
     "t.yaml:2:12: results.dsn: ", "required with results.backend: postgresql"},
    {"results:\n  backend: mysql\n",
     "t.yaml:2:12: results.backend: ", "not one of: jsonl, postgresql"},
    {"results:\n  backend: postgresql\n  dsn: \"\"\n",
     "t.yaml:3:8: results.dsn: ", "required with results.backend: postgresql"},
    {"protocols:\n  - {name: renal, match: [RENAL], required_views: [a, b, a]}\n",
     "t.yaml:2:5: protocols[0]: ", "lists a twice"},
    {"protocols:\n  - {name: default, match: [X], required_views: [a]}\n",
     "t.yaml:2:5: protocols[0]: ", "built-in protocol"},
    {"protocols:\n  - {name: renal, required_views: [a]}\n",
     "t.yaml:2:5: protocols[0]: ", "missing required key 'match'"},
    {"protocols:\n  - {name: r, match: [X], required_views: [a]}\n"
     "  - {name: r, match: [Y], required_views: [b]}\n",
     "t.yaml:3:5: protocols[1]: ", "duplicate name 'r'"},
    {"model:\n  min_confidence: 1.5\n", "t.yaml:2:19: model.min_confidence: ", "out of range"},
    {"qa:\n  study_quiet_s: 0\n", "t.yaml:2:18: qa.study_quiet_s: ", "out of range"},
    {"qa:\n  ocr: sometimes\n", "t.yaml:2:8: qa.ocr: ", "true or false"},
    {"http:\n  token_file: /nonexistent/token\n", "t.yaml:2:15: http.token_file: ", ""},
};

/* The QA keys: defaults, a protocol list, send: [study_sr]. */
static void test_qa(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF] = "";

	(void)state;
	usv_config_defaults(&c);
	assert_int_equal(c.qa.labels, 1);
	assert_int_equal(c.qa.ocr, 1);
	assert_int_equal(c.qa.study_quiet_s, 300);
	assert_int_equal(c.n_protocols, 0);
	assert_true(c.model.min_confidence == 0);
	assert_int_equal(c.http.qa, 0);
	int r = load("model: {min_confidence: 0.45}\n"
	             "qa: {ocr: false, study_quiet_s: 5}\n"
	             "protocols:\n"
	             "  - name: renal\n"
	             "    match: [RENAL, Kidney]\n"
	             "    required_views: [kidney_left_long, kidney_right_long]\n"
	             "http: {qa: true}\n"
	             "destinations:\n"
	             "  - {name: a, ae_title: A, host: h, port: 1, send: [sr, study_sr]}\n",
	             &c, err, sizeof err);
	if (r)
		fail_msg("%s", err);
	assert_true(c.model.min_confidence > 0.449 && c.model.min_confidence < 0.451);
	assert_int_equal(c.qa.ocr, 0);
	assert_int_equal(c.qa.labels, 1);
	assert_int_equal(c.qa.study_quiet_s, 5);
	assert_int_equal(c.n_protocols, 1);
	assert_string_equal(c.protocols[0].name, "renal");
	assert_int_equal(c.protocols[0].n_match, 2);
	assert_string_equal(c.protocols[0].match[1], "Kidney");
	assert_int_equal(c.protocols[0].n_required_views, 2);
	assert_string_equal(c.protocols[0].required_views[1], "kidney_right_long");
	assert_int_equal(c.http.qa, 1);
	assert_int_equal(c.destinations[0].send, USV_CFG_SEND_SR | USV_CFG_SEND_STUDY_SR);
	roundtrip(&c);
}

static void test_bad_configs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		struct usv_config c;
		char err[USV_ERRBUF] = "";
		int r = load(bad_cases[i].yaml, &c, err, sizeof err);
		if (r >= 0 || strncmp(err, bad_cases[i].expect, strlen(bad_cases[i].expect)) ||
		    !strstr(err, bad_cases[i].reason))
			fail_msg("case %zu: r=%d err='%s' want '%s...%s'", i, r, err,
			         bad_cases[i].expect, bad_cases[i].reason);
	}
}

static void test_set_and_send_to(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF] = "";

	(void)state;
	usv_config_defaults(&c);
	assert_int_equal(usv_config_set(&c, "listen.port", "4000", err, sizeof err), 0);
	assert_int_equal(c.listen.port, 4000);
	assert_int_equal(usv_config_set(&c, "spool.dir", "/tmp/a: b", err, sizeof err), 0);
	assert_string_equal(c.spool.dir, "/tmp/a: b");
	assert_int_equal(usv_config_set(&c, "listen.ae_title", "TEST", err, sizeof err), 0);
	assert_string_equal(c.listen.ae_title, "TEST");
	assert_int_equal(usv_config_set(&c, "frames.policy", "all", err, sizeof err), 0);
	assert_int_equal(c.frames.policy, USV_CFG_FRAMES_ALL);
	assert_true(usv_config_set(&c, "listen.port", "99999", err, sizeof err) < 0);
	assert_non_null(strstr(err, "listen.port: 99999 is out of range"));
	assert_int_equal(c.listen.port, 4000);
	assert_int_equal(usv_config_set(&c, "listen.nope", "1", err, sizeof err), -ENOENT);
	assert_int_equal(usv_config_set(&c, "listen.max_associations", "64", err, sizeof err), 0);
	assert_int_equal(c.listen.max_associations, 64);
	assert_true(usv_config_set(&c, "listen.max_associations", "65", err, sizeof err) < 0);
	assert_int_equal(c.listen.max_associations, 64);

	assert_int_equal(usv_config_add_destination(&c, "ORTHANC@127.0.0.1:4242", err, sizeof err),
	                 0);
	assert_int_equal(usv_config_add_destination(&c, "ORTHANC@127.0.0.2:4243", err, sizeof err),
	                 0);
	assert_int_equal(c.n_destinations, 2);
	assert_string_equal(c.destinations[0].name, "ORTHANC");
	assert_string_equal(c.destinations[1].name, "ORTHANC_2");
	assert_string_equal(c.destinations[1].host, "127.0.0.2");
	assert_int_equal(c.destinations[1].port, 4243);
	assert_int_equal(c.destinations[1].send, USV_CFG_SEND_SR);
	assert_int_equal(usv_config_validate(&c, err, sizeof err), 0);
	assert_true(usv_config_add_destination(&c, "nohost", err, sizeof err) < 0);
	assert_true(usv_config_add_destination(&c, "A@h:0", err, sizeof err) < 0);
	assert_true(usv_config_add_destination(&c, "A@h:x", err, sizeof err) < 0);
}

/* spool.retention_h (nested mapping, decimals), sweep interval, index
 * rotation: defaults, values, refusals with their position, reload. */
static void test_spool_retention(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF] = "";

	(void)state;
	usv_config_defaults(&c);
	assert_true(c.spool.retention_h.done == 24.0);
	assert_true(c.spool.retention_h.sent == 24.0);
	assert_true(c.spool.retention_h.excluded == 168.0);
	assert_true(c.spool.retention_h.failed == 720.0);
	assert_true(c.spool.retention_h.dead == 720.0);
	assert_int_equal(c.spool.sweep_interval_s, 60);
	assert_int_equal(c.spool.index_max_mb, 256);
	assert_int_equal(c.spool.index_keep, 5);

	assert_int_equal(load("spool:\n"
	                      "  retention_h:\n"
	                      "    done: 0.0005\n"
	                      "    sent: 1.5\n"
	                      "    failed: 0\n"
	                      "  sweep_interval_s: 2\n"
	                      "  index_max_mb: 0\n"
	                      "  index_keep: 2\n",
	                      &c, err, sizeof err),
	                 0);
	assert_true(c.spool.retention_h.done > 0.00049 && c.spool.retention_h.done < 0.00051);
	assert_true(c.spool.retention_h.sent == 1.5);
	assert_true(c.spool.retention_h.failed == 0.0);
	assert_true(c.spool.retention_h.excluded == 168.0); /* untouched: default */
	assert_true(c.spool.retention_h.dead == 720.0);
	assert_int_equal(c.spool.sweep_interval_s, 2);
	assert_int_equal(c.spool.index_max_mb, 0);
	assert_int_equal(c.spool.index_keep, 2);
	/* flow style and --set reach the same keys */
	assert_int_equal(load("spool: {retention_h: {dead: 12}}\n", &c, err, sizeof err), 0);
	assert_true(c.spool.retention_h.dead == 12.0);
	assert_int_equal(usv_config_set(&c, "spool.retention_h.excluded", "0.25", err, sizeof err),
	                 0);
	assert_true(c.spool.retention_h.excluded == 0.25);

	static const struct bad_case bad[] = {
	    {"spool:\n  retention_h:\n    done: -1\n",
	     "t.yaml:3:11: spool.retention_h.done: ", "out of range"},
	    {"spool:\n  retention_h:\n    failed: -0.5\n",
	     "t.yaml:3:13: spool.retention_h.failed: ", "out of range"},
	    {"spool:\n  retention_h:\n    sent: soon\n",
	     "t.yaml:3:11: spool.retention_h.sent: ", "expected a number"},
	    {"spool:\n  retention_h:\n    outbox: 1\n",
	     "t.yaml:3:5: spool.retention_h.outbox: ", "unknown key"},
	    {"spool:\n  retention_h: 24\n",
	     "t.yaml:2:16: spool.retention_h: ", "expected a mapping"},
	    {"spool:\n  index_max_mb: -1\n", "t.yaml:2:17: spool.index_max_mb: ", "out of range"},
	    {"spool:\n  index_keep: 0\n", "t.yaml:2:15: spool.index_keep: ", "out of range"},
	    {"spool:\n  sweep_interval_s: 0\n",
	     "t.yaml:2:21: spool.sweep_interval_s: ", "out of range"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int r = load(bad[i].yaml, &c, err, sizeof err);
		if (r >= 0 || strncmp(err, bad[i].expect, strlen(bad[i].expect)) ||
		    !strstr(err, bad[i].reason))
			fail_msg("case %zu: r=%d err='%s' want '%s...%s'", i, r, err, bad[i].expect,
			         bad[i].reason);
	}
	assert_true(usv_config_set(&c, "spool.retention_h.done", "-2", err, sizeof err) < 0);
	assert_non_null(strstr(err, "spool.retention_h.done: -2 is out of range"));

	/* the nested mapping survives a dump and parse */
	assert_int_equal(load("spool: {retention_h: {done: 0.5, dead: 0}, index_keep: 3}\n", &c,
	                      err, sizeof err),
	                 0);
	roundtrip(&c);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void test_reload(void **state)
{
	char path[] = "/tmp/usv-config-test-XXXXXX";
	int fd = mkstemp(path);
	struct usv_config live, before;
	char err[USV_ERRBUF] = "", changed[256] = "";

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "listen: {port: 5000}\nlog: {level: info}\nmodel: {top_k: 2}\n");
	usv_config_defaults(&live);
	assert_int_equal(usv_config_load_file(path, &live, err, sizeof err), 0);
	before = live;

	/* broken file: error with position, old configuration untouched */
	write_file(path, "listen: {port: 5000}\nlog: {level: chatty}\n");
	assert_true(usv_config_reload(&live, path, changed, sizeof changed, err, sizeof err) < 0);
	if (!strstr(err, ":2:14: log.level: "))
		fail_msg("%s", err);
	assert_memory_equal(&live, &before, sizeof live);

	/* missing file */
	char missing[64];
	snprintf(missing, sizeof missing, "%s.none", path);
	assert_int_equal(
	    usv_config_reload(&live, missing, changed, sizeof changed, err, sizeof err), -ENOENT);
	assert_memory_equal(&live, &before, sizeof live);

	/* good file: reloadable keys applied, port kept and reported */
	write_file(path, "listen: {port: 5001}\nlog: {level: debug}\nmodel: {top_k: 5}\n"
	                 "destinations:\n  - {name: p, ae_title: P, host: h, port: 9}\n");
	assert_int_equal(usv_config_reload(&live, path, changed, sizeof changed, err, sizeof err),
	                 0);
	assert_int_equal(live.log.level, USV_CFG_LOG_DEBUG);
	assert_int_equal(live.model.top_k, 5);
	assert_int_equal(live.n_destinations, 1);
	assert_string_equal(live.destinations[0].ae_title, "P");
	assert_int_equal(live.listen.port, 5000);
	assert_string_equal(changed, "listen.port");

	/* retention and index rotation are reloadable */
	write_file(path, "listen: {port: 5000}\nlog: {level: debug}\nmodel: {top_k: 5}\n"
	                 "destinations:\n  - {name: p, ae_title: P, host: h, port: 9}\n"
	                 "spool:\n  retention_h: {done: 0.1, failed: 0}\n  index_keep: 9\n"
	                 "  sweep_interval_s: 5\n");
	assert_int_equal(usv_config_reload(&live, path, changed, sizeof changed, err, sizeof err),
	                 0);
	assert_string_equal(changed, "");
	assert_true(live.spool.retention_h.done == 0.1);
	assert_true(live.spool.retention_h.failed == 0.0);
	assert_true(live.spool.retention_h.sent == 24.0);
	assert_int_equal(live.spool.index_keep, 9);
	assert_int_equal(live.spool.sweep_interval_s, 5);
	/* a negative retention is refused with its position; nothing changes */
	struct usv_config kept = live;
	write_file(path, "spool:\n  retention_h:\n    done: -3\n");
	assert_true(usv_config_reload(&live, path, changed, sizeof changed, err, sizeof err) < 0);
	if (!strstr(err, ":3:11: spool.retention_h.done: "))
		fail_msg("%s", err);
	assert_memory_equal(&live, &kept, sizeof live);
	write_file(path, "listen: {port: 5001}\nlog: {level: debug}\nmodel: {top_k: 5}\n"
	                 "destinations:\n  - {name: p, ae_title: P, host: h, port: 9}\n");
	assert_int_equal(usv_config_reload(&live, path, changed, sizeof changed, err, sizeof err),
	                 0);
	assert_true(live.spool.retention_h.done == 24.0); /* back to the default */

	/* same file again: nothing changes */
	struct usv_config again = live;
	assert_int_equal(usv_config_reload(&live, path, changed, sizeof changed, err, sizeof err),
	                 0);
	assert_string_equal(changed, "listen.port");
	assert_memory_equal(&live, &again, sizeof live);
	unlink(path);

	/* load_file error names the file */
	assert_int_equal(usv_config_load_file(missing, &live, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, missing));
}

/* DICOM TLS: listen.tls and destinations[].tls, with files made here. */
static void test_tls(void **state)
{
	char dir[] = "/tmp/usv-config-tls-XXXXXX", cert[128], key[128], ca[128], yaml[2048];
	char err[USV_ERRBUF] = "", warn[512], changed[256];
	struct usv_config c;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof cert, "%s/server.pem", dir);
	snprintf(key, sizeof key, "%s/server.key", dir);
	snprintf(ca, sizeof ca, "%s/ca.pem", dir);
	write_file(cert, "cert\n");
	write_file(key, "key\n");
	write_file(ca, "ca\n");
	assert_int_equal(chmod(key, 0600), 0);

	/* defaults: no TLS port, BCP 195, client certificates required */
	usv_config_defaults(&c);
	assert_int_equal(c.listen.tls.port, 0);
	assert_int_equal(c.listen.tls.require_client_certificate, 1);
	assert_int_equal(c.listen.tls.profile, USV_CFG_TLS_BCP195);
	assert_string_equal(c.listen.tls.certificate, "");

	/* a TLS port beside the plain one, nested mapping form */
	snprintf(yaml, sizeof yaml,
	         "listen:\n  port: 11112\n  tls:\n    port: 2762\n    certificate: %s\n"
	         "    private_key: %s\n    ca_file: %s\n    profile: bcp195-nd\n"
	         "destinations:\n"
	         "  - {name: p, ae_title: P, host: h, port: 2762,\n"
	         "     tls: {ca_file: %s, certificate: %s, private_key: %s, profile: bcp195-ex}}\n"
	         "  - {name: q, ae_title: Q, host: h, port: 2763, tls.ca_file: %s}\n",
	         cert, key, ca, ca, cert, key, ca);
	int r = load(yaml, &c, err, sizeof err);
	if (r)
		fail_msg("%s", err);
	assert_int_equal(c.listen.tls.port, 2762);
	assert_string_equal(c.listen.tls.certificate, cert);
	assert_string_equal(c.listen.tls.ca_file, ca);
	assert_int_equal(c.listen.tls.profile, USV_CFG_TLS_BCP195_ND);
	assert_string_equal(c.destinations[0].tls.private_key, key);
	assert_int_equal(c.destinations[0].tls.profile, USV_CFG_TLS_BCP195_EX);
	assert_string_equal(c.destinations[1].tls.ca_file, ca);
	assert_string_equal(c.destinations[1].tls.certificate, "");
	assert_string_equal(usv_config_enum_name("listen.tls.profile", 1), "bcp195-nd");
	roundtrip(&c);
	/* key mode 0600: no warning; 0644: one, naming the key and the file */
	assert_int_equal(usv_config_warnings(&c, warn, sizeof warn), 0);
	assert_string_equal(warn, "");
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(usv_config_warnings(&c, warn, sizeof warn), 2);
	assert_non_null(strstr(warn, "listen.tls.private_key: "));
	assert_non_null(strstr(warn, key));
	assert_non_null(strstr(warn, "destinations[0].tls.private_key"));
	assert_int_equal(chmod(key, 0600), 0);

	/* TLS only */
	snprintf(yaml, sizeof yaml,
	         "listen:\n  port: 0\n  tls: {port: 2762, certificate: %s, private_key: %s, "
	         "ca_file: %s}\n",
	         cert, key, ca);
	r = load(yaml, &c, err, sizeof err);
	if (r)
		fail_msg("%s", err);
	assert_int_equal(c.listen.port, 0);
	/* without client certificates no CA file is needed */
	snprintf(yaml, sizeof yaml,
	         "listen:\n  tls: {port: 2762, certificate: %s, private_key: %s,\n"
	         "        require_client_certificate: false}\n",
	         cert, key);
	assert_int_equal(load(yaml, &c, err, sizeof err), 0);
	assert_int_equal(c.listen.tls.require_client_certificate, 0);

	/* refusals, with the key's place in the file where it is there */
	struct {
		const char *fmt, *expect, *reason;
	} bad[] = {
	    {"listen:\n  tls:\n    port: 2762\n    certificate: %s/none.pem\n",
	     "t.yaml:4:18: listen.tls.certificate: ", "No such file or directory"},
	    {"listen:\n  tls:\n    port: 2762\n    certificate: %s\n",
	     "t.yaml:4:18: listen.tls.certificate: ", "not a regular file"},
	    {"listen:\n  port: 2762\n  tls:\n    port: 2762\n    certificate: %s/server.pem\n",
	     "t.yaml:4:11: listen.tls.port: ", "2762 is listen.port too"},
	    {"listen:\n  port: 0\n", "t.yaml:2:9: listen.port: ", "without listen.tls.port"},
	    {"listen:\n  tls: {port: 2762, ca_file: %s/ca.pem}\n",
	     "t.yaml: listen.tls.certificate: ", "required with listen.tls.port"},
	    {"listen:\n  tls: {port: 2762, certificate: %s/server.pem, private_key: "
	     "%s/server.key}\n",
	     "t.yaml: listen.tls.ca_file: ", "require_client_certificate"},
	    {"listen:\n  tls:\n    profile: basic\n",
	     "t.yaml:3:14: listen.tls.profile: ", "not one of: bcp195, bcp195-nd, bcp195-ex"},
	    {"listen:\n  tls:\n    port: 70000\n",
	     "t.yaml:3:11: listen.tls.port: ", "out of range"},
	    {"destinations:\n  - {name: p, ae_title: P, host: h, port: 1,\n"
	     "     tls: {ca_file: %s/ca.pem, certificate: %s/server.pem}}\n",
	     "t.yaml:2:5: destinations[0]: ", "go together"},
	    {"destinations:\n  - {name: p, ae_title: P, host: h, port: 1,\n"
	     "     tls: {certificate: %s/server.pem, private_key: %s/server.key}}\n",
	     "t.yaml:2:5: destinations[0]: ", "tls.ca_file is required"},
	    {"destinations:\n  - {name: p, ae_title: P, host: h, port: 1, tls: {ca_file: "
	     "%s/x.pem}}\n",
	     "t.yaml:2:61: destinations[0].tls.ca_file: ", "No such file"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(yaml, sizeof yaml, bad[i].fmt, dir, dir, dir);
		r = load(yaml, &c, err, sizeof err);
		if (r >= 0 || strncmp(err, bad[i].expect, strlen(bad[i].expect)) ||
		    !strstr(err, bad[i].reason))
			fail_msg("tls case %zu: r=%d err='%s' want '%s...%s'", i, r, err,
			         bad[i].expect, bad[i].reason);
	}
	/* command line: the same file check, by key */
	usv_config_defaults(&c);
	assert_true(
	    usv_config_set(&c, "listen.tls.ca_file", "/nonexistent/ca.pem", err, sizeof err) < 0);
	assert_non_null(strstr(err, "listen.tls.ca_file: /nonexistent/ca.pem: "));
	assert_int_equal(usv_config_set(&c, "listen.tls.ca_file", ca, err, sizeof err), 0);

	/* reload: certificate paths and the profile apply, the port needs a restart */
	char path[160];
	snprintf(path, sizeof path, "%s/usviewd.yaml", dir);
	snprintf(yaml, sizeof yaml,
	         "listen:\n  tls: {port: 2762, certificate: %s, private_key: %s, ca_file: %s}\n",
	         cert, key, ca);
	write_file(path, yaml);
	usv_config_defaults(&c);
	assert_int_equal(usv_config_load_file(path, &c, err, sizeof err), 0);
	char cert2[160];
	snprintf(cert2, sizeof cert2, "%s/renewed.pem", dir);
	write_file(cert2, "cert 2\n");
	snprintf(yaml, sizeof yaml,
	         "listen:\n  tls: {port: 2763, certificate: %s, private_key: %s, ca_file: %s,\n"
	         "        profile: bcp195-nd}\n",
	         cert2, key, ca);
	write_file(path, yaml);
	assert_int_equal(usv_config_reload(&c, path, changed, sizeof changed, err, sizeof err), 0);
	assert_string_equal(c.listen.tls.certificate, cert2);
	assert_int_equal(c.listen.tls.profile, USV_CFG_TLS_BCP195_ND);
	assert_int_equal(c.listen.tls.port, 2762);
	assert_string_equal(changed, "listen.tls.port");
	/* a reload naming a missing file keeps everything */
	struct usv_config kept = c;
	snprintf(yaml, sizeof yaml,
	         "listen:\n  tls: {port: 2762, certificate: %s/gone.pem, private_key: %s, "
	         "ca_file: %s}\n",
	         dir, key, ca);
	write_file(path, yaml);
	assert_true(usv_config_reload(&c, path, changed, sizeof changed, err, sizeof err) < 0);
	assert_non_null(strstr(err, "listen.tls.certificate: "));
	assert_memory_equal(&c, &kept, sizeof c);

	unlink(path);
	unlink(cert2);
	unlink(cert);
	unlink(key);
	unlink(ca);
	rmdir(dir);
}

/* listen.proxy_protocol_from (IPv4 addresses and blocks, checked per item)
 * and listen.drain_timeout_s. */
static void test_proxy_and_drain(void **state)
{
	struct usv_config c;
	char err[USV_ERRBUF] = "";

	(void)state;
	usv_config_defaults(&c);
	assert_int_equal(c.listen.n_proxy_protocol_from, 0);
	assert_int_equal(c.listen.drain_timeout_s, 30);
	assert_int_equal(load("listen:\n  proxy_protocol_from: [127.0.0.1, 10.0.0.0/8, "
	                      "192.168.4.0/23]\n  drain_timeout_s: 0\n",
	                      &c, err, sizeof err),
	                 0);
	assert_int_equal(c.listen.n_proxy_protocol_from, 3);
	assert_string_equal(c.listen.proxy_protocol_from[0], "127.0.0.1");
	assert_string_equal(c.listen.proxy_protocol_from[1], "10.0.0.0/8");
	assert_string_equal(c.listen.proxy_protocol_from[2], "192.168.4.0/23");
	assert_int_equal(c.listen.drain_timeout_s, 0);
	assert_int_equal(usv_config_validate(&c, err, sizeof err), 0);

	static const struct {
		const char *yaml, *where, *reason;
	} bad[] = {
	    {"listen:\n  proxy_protocol_from: [127.0.0.1, haproxy.local]\n",
	     "t.yaml:2:36: listen.proxy_protocol_from[1]", "not an IPv4 address"},
	    {"listen:\n  proxy_protocol_from: [10.0.0.1/8]\n",
	     "t.yaml:2:25: listen.proxy_protocol_from[0]", "host bits"},
	    {"listen:\n  proxy_protocol_from: [10.0.0.0/40]\n",
	     "t.yaml:2:25: listen.proxy_protocol_from[0]", "0..32"},
	    {"listen:\n  proxy_protocol_from: ['::1']\n",
	     "t.yaml:2:25: listen.proxy_protocol_from[0]", "not an IPv4"},
	    {"listen:\n  proxy_protocol_from: 127.0.0.1\n",
	     "t.yaml:2:24: listen.proxy_protocol_from", "expected a list"},
	    {"listen:\n  drain_timeout_s: 3601\n", "t.yaml:2:20: listen.drain_timeout_s",
	     "out of range"},
	    {"listen:\n  drain_timeout_s: -1\n", "t.yaml:2:20: listen.drain_timeout_s",
	     "out of range"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int r = load(bad[i].yaml, &c, err, sizeof err);
		if (r >= 0 || strncmp(err, bad[i].where, strlen(bad[i].where)) ||
		    !strstr(err, bad[i].reason))
			fail_msg("case %zu: r=%d err='%s' want '%s...%s'", i, r, err, bad[i].where,
			         bad[i].reason);
	}
	/* 17 entries: over the cap */
	char big[1024] = "listen:\n  proxy_protocol_from: [";
	for (int i = 0; i < USV_CFG_MAX_PROXIES + 1; i++)
		snprintf(big + strlen(big), sizeof big - strlen(big), "%s10.0.0.%d", i ? ", " : "",
		         i + 1);
	strcat(big, "]\n");
	assert_true(load(big, &c, err, sizeof err) < 0);
	assert_non_null(strstr(err, "more than 16 items"));
}

/* The shipped, commented configuration says exactly the defaults, and the
 * copies in config/ and packaging/ are identical. */
static void test_shipped_file(void **state)
{
	const char *src = getenv("USV_SOURCE_DIR");
	char a[4096], b[4096], err[USV_ERRBUF] = "";
	struct usv_config def, c;

	(void)state;
	if (!src)
		skip();
	snprintf(a, sizeof a, "%s/config/usviewd.yaml", src);
	snprintf(b, sizeof b, "%s/packaging/usviewd.yaml", src);
	usv_config_defaults(&def);
	usv_config_defaults(&c);
	int r = usv_config_load_file(a, &c, err, sizeof err);
	if (r)
		fail_msg("%s", err);
	assert_memory_equal(&def, &c, sizeof c);
	assert_string_equal(c.model.path, "/usr/share/usview/usview-views.usvm");

	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	assert_non_null(fa);
	assert_non_null(fb);
	int ca, cb;
	do {
		ca = fgetc(fa);
		cb = fgetc(fb);
		assert_int_equal(ca, cb);
	} while (ca != EOF);
	fclose(fa);
	fclose(fb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_empty_file),
	    cmocka_unit_test(test_every_type),
	    cmocka_unit_test(test_dump_roundtrip),
	    cmocka_unit_test(test_bad_configs),
	    cmocka_unit_test(test_set_and_send_to),
	    cmocka_unit_test(test_reload),
	    cmocka_unit_test(test_shipped_file),
	    cmocka_unit_test(test_spool_retention),
	    cmocka_unit_test(test_tls),
	    cmocka_unit_test(test_qa),
	    cmocka_unit_test(test_proxy_and_drain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
