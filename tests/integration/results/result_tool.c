/*
 * NAME
 *	result_tool - test driver for the result writers and the C-STORE SCU
 *
 * SYNOPSIS
 *	result_tool sr|tagged SRC OUT FRAME MODEL_SHA256 TOPK [@tech=LABEL]
 *	            [@source=SOURCE] [@min_confidence=P] LABEL=PROB...
 *	result_tool store HOST PORT CALLED_AE CALLING_AE FILE
 *	result_tool echo HOST PORT CALLED_AE CALLING_AE
 *	result_tool sr-parallel SRC OUTDIR THREADS COUNT LABEL=PROB...
 *
 * DESCRIPTION
 *	sr/tagged: fills a usv_result from the arguments (model name
 *	"testnet", version "1.2"), writes the object and prints one JSON line
 *	with the result UIDs. @tech sets the technologist's label (agrees =
 *	it equals the most probable class), @source its source, and
 *	@min_confidence the threshold below which the result is uncertain,
 *	as the daemon does. store: sends FILE and prints the outcome as
 *	JSON. sr-parallel: writes COUNT SRs (model hash = index) from
 *	THREADS threads as OUTDIR/par-NNN.dcm, then the same ones one by one
 *	as OUTDIR/seq-NNN.dcm. Exit status 0 on success, 1 on failure (message on stderr).
 */
#include "usv/dcm_result.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/version.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_result(int argc, char **argv)
{
	static usv_result r;
	usv_result_ids ids;
	char err[USV_ERRBUF];
	const char *labels[USV_RESULT_MAX_CLASSES];
	float probs[USV_RESULT_MAX_CLASSES];
	char buf[USV_RESULT_MAX_CLASSES][USV_RESULT_LABEL_MAX];
	const char *tech = NULL, *source = NULL;
	double min_conf = 0;
	int n = 0, i, rc;

	if (argc < 8)
		return 2;
	for (i = 7; i < argc && n < USV_RESULT_MAX_CLASSES; i++) {
		const char *eq = strrchr(argv[i], '=');

		if (!strncmp(argv[i], "@tech=", 6)) {
			tech = argv[i] + 6;
			continue;
		}
		if (!strncmp(argv[i], "@source=", 8)) {
			source = argv[i] + 8;
			continue;
		}
		if (!strncmp(argv[i], "@min_confidence=", 16)) {
			min_conf = strtod(argv[i] + 16, NULL);
			continue;
		}

		if (!eq || (size_t)(eq - argv[i]) >= USV_RESULT_LABEL_MAX)
			return 2;
		memcpy(buf[n], argv[i], (size_t)(eq - argv[i]));
		buf[n][eq - argv[i]] = '\0';
		labels[n] = buf[n];
		probs[n] = strtof(eq + 1, NULL);
		n++;
	}
	memset(&r, 0, sizeof r);
	snprintf(r.source_path, sizeof r.source_path, "%s", argv[2]);
	r.frame = (uint32_t)strtoul(argv[4], NULL, 10);
	snprintf(r.model_sha256, sizeof r.model_sha256, "%s", argv[5]);
	snprintf(r.model_name, sizeof r.model_name, "testnet");
	snprintf(r.model_version, sizeof r.model_version, "1.2");
	snprintf(r.algorithm_version, sizeof r.algorithm_version, "%s", USV_VERSION_STRING);
	r.t_decode_ms = 1.5;
	r.t_infer_ms = 2.5;
	r.t_total_ms = 4.0;
	rc = usv_result_fill(&r, labels, probs, (size_t)n, strtoul(argv[6], NULL, 10), err,
	                     sizeof err);
	if (rc == 0 && tech) {
		snprintf(r.tech_label, sizeof r.tech_label, "%s", tech);
		snprintf(r.tech_source, sizeof r.tech_source, "%s", source ? source : "");
		r.agrees = !strcmp(tech, r.pred_label);
	}
	if (rc == 0 && min_conf > 0) {
		r.min_confidence = (float)min_conf;
		r.uncertain = r.probs[r.pred_index] < min_conf;
	}
	if (rc == 0) {
		if (strcmp(argv[1], "sr") == 0)
			rc = usv_sr_write(&r, NULL, argv[3], &ids, err, sizeof err);
		else
			rc = usv_tagged_write(&r, NULL, argv[3], &ids, err, sizeof err);
	}
	if (rc) {
		fprintf(stderr, "result_tool: %s (%s)\n", err, usv_strerror(rc));
		return 1;
	}
	printf(
	    "{\"sop_class\":\"%s\",\"sop_instance\":\"%s\",\"series\":\"%s\",\"study\":\"%s\"}\n",
	    ids.sop_class_uid, ids.sop_instance_uid, ids.series_uid, ids.study_uid);
	return 0;
}

/* sr-parallel: the same results written from several threads at once and
 * then one after the other, for comparison by the test. */
struct par_job {
	const char *src, *outdir;
	int first, step, count;
	const char *const *labels;
	const float *probs;
	size_t n;
	int failed;
};

static int write_one(const struct par_job *pj, int i, const char *prefix)
{
	static __thread usv_result r;
	char out[4096], err[USV_ERRBUF];

	memset(&r, 0, sizeof r);
	snprintf(r.source_path, sizeof r.source_path, "%s", pj->src);
	snprintf(r.model_sha256, sizeof r.model_sha256, "%064x", i);
	snprintf(r.model_name, sizeof r.model_name, "testnet");
	snprintf(r.model_version, sizeof r.model_version, "1.2");
	if (usv_result_fill(&r, pj->labels, pj->probs, pj->n, 3, err, sizeof err))
		return -1;
	snprintf(out, sizeof out, "%s/%s-%03d.dcm", pj->outdir, prefix, i);
	if (usv_sr_write(&r, NULL, out, NULL, err, sizeof err)) {
		fprintf(stderr, "result_tool: %s\n", err);
		return -1;
	}
	return 0;
}

static void *par_main(void *arg)
{
	struct par_job *pj = arg;

	for (int i = pj->first; i < pj->count; i += pj->step)
		if (write_one(pj, i, "par"))
			pj->failed = 1;
	return NULL;
}

static int cmd_parallel(int argc, char **argv)
{
	static char buf[USV_RESULT_MAX_CLASSES][USV_RESULT_LABEL_MAX];
	const char *labels[USV_RESULT_MAX_CLASSES];
	float probs[USV_RESULT_MAX_CLASSES];
	pthread_t th[16];
	struct par_job jobs[16];
	int nth, count, n = 0, i, rc = 0;

	if (argc < 7)
		return 2;
	nth = atoi(argv[4]);
	count = atoi(argv[5]);
	if (nth < 1 || nth > 16 || count < 1)
		return 2;
	for (i = 6; i < argc && n < USV_RESULT_MAX_CLASSES; i++, n++) {
		const char *eq = strrchr(argv[i], '=');

		if (!eq || (size_t)(eq - argv[i]) >= USV_RESULT_LABEL_MAX)
			return 2;
		memcpy(buf[n], argv[i], (size_t)(eq - argv[i]));
		buf[n][eq - argv[i]] = '\0';
		labels[n] = buf[n];
		probs[n] = strtof(eq + 1, NULL);
	}
	for (i = 0; i < nth; i++) {
		jobs[i] =
		    (struct par_job){argv[2], argv[3], i, nth, count, labels, probs, (size_t)n, 0};
		if (pthread_create(&th[i], NULL, par_main, &jobs[i]))
			return 1;
	}
	for (i = 0; i < nth; i++) {
		pthread_join(th[i], NULL);
		rc |= jobs[i].failed;
	}
	for (i = 0; i < count; i++)
		rc |= write_one(&jobs[0], i, "seq") ? 1 : 0;
	return rc ? 1 : 0;
}

static int cmd_store(int argc, char **argv)
{
	usv_scu_peer p;
	usv_scu_result res;
	char err[USV_ERRBUF];
	int rc;

	if (argc < (strcmp(argv[1], "echo") == 0 ? 6 : 7))
		return 2;
	memset(&p, 0, sizeof p);
	p.host = argv[2];
	p.port = (uint16_t)atoi(argv[3]);
	p.called_ae = argv[4];
	p.calling_ae = argv[5];
	p.acse_timeout_s = 5;
	p.dimse_timeout_s = 10;
	usv_scu_global_init(5);
	if (strcmp(argv[1], "echo") == 0)
		rc = usv_scu_echo(&p, &res, err, sizeof err);
	else
		rc = usv_scu_store(&p, argv[6], &res, err, sizeof err);
	printf("{\"rc\":%d,\"outcome\":\"%s\",\"status\":%u,\"reason\":\"", rc,
	       usv_scu_outcome_name(res.outcome), (unsigned)res.status);
	for (const char *s = res.reason; *s; s++)
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s >= 0x20)
			putchar(*s);
	printf("\"}\n");
	return 0;
}

int main(int argc, char **argv)
{
	char err[USV_ERRBUF];
	int rc;

	if (usv_dcm_global_init(err, sizeof err) != 0) {
		fprintf(stderr, "result_tool: %s\n", err);
		return 1;
	}
	if (argc >= 2 && (strcmp(argv[1], "sr") == 0 || strcmp(argv[1], "tagged") == 0))
		rc = cmd_result(argc, argv);
	else if (argc >= 2 && strcmp(argv[1], "sr-parallel") == 0)
		rc = cmd_parallel(argc, argv);
	else if (argc >= 2 && (strcmp(argv[1], "store") == 0 || strcmp(argv[1], "echo") == 0))
		rc = cmd_store(argc, argv);
	else
		rc = 2;
	if (rc == 2)
		fprintf(stderr, "usage: result_tool sr|tagged SRC OUT FRAME SHA TOPK LABEL=P...\n"
		                "       result_tool store HOST PORT CALLED CALLING FILE\n"
		                "       result_tool echo HOST PORT CALLED CALLING\n");
	usv_dcm_global_cleanup();
	return rc;
}
