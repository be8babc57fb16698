/*
 * NAME
 *	sender_tool - test driver for the results sender over a real spool
 *
 * SYNOPSIS
 *	sender_tool SPOOL enqueue KIND SOP_CLASS FILE DEST...
 *	sender_tool SPOOL run SECONDS DEST...
 *
 * DESCRIPTION
 *	DEST is "key=value,..." with keys name, ae, host, port, calling,
 *	attempts, base, max, age (seconds), kinds (1 SR, 2 tagged, 3 both),
 *	sop (one SOP class), acse, dimse (timeouts, s; default 5 and 10).
 *	KIND is "sr" or "tagged".
 *
 *	enqueue: usv_sender_enqueue() of FILE; prints the number of outboxes.
 *	run: runs the sender thread until every outbox is empty, SECONDS have
 *	passed, or SIGTERM/SIGINT; prints one JSON line of counters per
 *	destination. Log callback lines go to stderr.
 */
#include "sender.h"
#include "spool.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DESTS 8

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static int parse_dest(const char *spec, usv_dest *d)
{
	char buf[1024], *save = NULL, *tok;

	memset(d, 0, sizeof *d);
	d->acse_timeout_s = 5;
	d->dimse_timeout_s = 10;
	snprintf(buf, sizeof buf, "%s", spec);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *v = strchr(tok, '=');

		if (!v)
			return -1;
		*v++ = '\0';
		if (!strcmp(tok, "name"))
			snprintf(d->name, sizeof d->name, "%s", v);
		else if (!strcmp(tok, "ae"))
			snprintf(d->called_ae, sizeof d->called_ae, "%s", v);
		else if (!strcmp(tok, "host"))
			snprintf(d->host, sizeof d->host, "%s", v);
		else if (!strcmp(tok, "port"))
			d->port = (uint16_t)atoi(v);
		else if (!strcmp(tok, "calling"))
			snprintf(d->calling_ae, sizeof d->calling_ae, "%s", v);
		else if (!strcmp(tok, "attempts"))
			d->max_attempts = (uint32_t)atoi(v);
		else if (!strcmp(tok, "base"))
			d->backoff_base_s = atof(v);
		else if (!strcmp(tok, "max"))
			d->backoff_max_s = atof(v);
		else if (!strcmp(tok, "age"))
			d->max_age_s = atof(v);
		else if (!strcmp(tok, "kinds"))
			d->kinds = (unsigned)atoi(v);
		else if (!strcmp(tok, "dimse"))
			d->dimse_timeout_s = atoi(v);
		else if (!strcmp(tok, "acse"))
			d->acse_timeout_s = atoi(v);
		else if (!strcmp(tok, "sop") && d->nsop < USV_DEST_MAX_SOP)
			snprintf(d->sop_classes[d->nsop++], sizeof d->sop_classes[0], "%s", v);
		else
			return -1;
	}
	return 0;
}

static void log_cb(void *ctx, int level, const char *dest, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "<%d> %s: %s\n", level, dest, msg);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char err[USV_ERRBUF];
	usv_dest dests[MAX_DESTS];
	usv_spool *sp = NULL;
	usv_sender *s = NULL;
	usv_sender_opts o;
	int nd = 0, first, i, rc = 1;

	if (argc < 4 || (strcmp(argv[2], "enqueue") && strcmp(argv[2], "run"))) {
		fprintf(stderr, "usage: sender_tool SPOOL enqueue KIND SOP FILE DEST...\n"
		                "       sender_tool SPOOL run SECONDS DEST...\n");
		return 2;
	}
	if (usv_dcm_global_init(err, sizeof err) || usv_scu_global_init(3)) {
		fprintf(stderr, "sender_tool: %s\n", err);
		return 1;
	}
	first = strcmp(argv[2], "enqueue") == 0 ? 6 : 4;
	for (i = first; i < argc && nd < MAX_DESTS; i++)
		if (parse_dest(argv[i], &dests[nd++])) {
			fprintf(stderr, "sender_tool: bad destination %s\n", argv[i]);
			return 2;
		}
	if (usv_spool_open(argv[1], &sp, err, sizeof err)) {
		fprintf(stderr, "sender_tool: %s\n", err);
		return 1;
	}
	memset(&o, 0, sizeof o);
	o.log = log_cb;
	o.poll_interval_s = 0.2;
	if (usv_sender_create(sp, dests, (size_t)nd, &o, &s, err, sizeof err)) {
		fprintf(stderr, "sender_tool: %s\n", err);
		goto out;
	}
	if (!strcmp(argv[2], "enqueue")) {
		size_t q = 0;
		unsigned kind = strcmp(argv[3], "sr") == 0 ? USV_DEST_SR : USV_DEST_TAGGED;

		if (argc < 6)
			goto out;
		if (usv_sender_enqueue(s, kind, argv[4], argv[5], &q, err, sizeof err)) {
			fprintf(stderr, "sender_tool: %s\n", err);
			goto out;
		}
		printf("%zu\n", q);
		rc = 0;
		goto out;
	}

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	double end = now_s() + atof(argv[3]);
	if (usv_sender_start(s)) {
		fprintf(stderr, "sender_tool: cannot start the sender\n");
		goto out;
	}
	while (!g_stop && now_s() < end) {
		size_t total = 0;

		for (i = 0; i < nd; i++) {
			usv_outbox_item *items = NULL;
			size_t n = 0;

			if (usv_spool_outbox_list(sp, dests[i].name, &items, &n) == 0)
				total += n;
			free(items);
		}
		if (total == 0)
			break;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	usv_sender_stop(s);
	for (i = 0; i < nd; i++) {
		usv_sender_counters c;
		usv_dest d;

		usv_sender_counters_get(s, (size_t)i, &d, &c);
		printf("{\"name\":\"%s\",\"attempts\":%llu,\"sent\":%llu,\"warnings\":%llu,"
		       "\"retries\":%llu,\"dead\":%llu,\"skipped\":%llu}\n",
		       d.name, (unsigned long long)c.attempts, (unsigned long long)c.sent,
		       (unsigned long long)c.warnings, (unsigned long long)c.retries,
		       (unsigned long long)c.dead, (unsigned long long)c.skipped);
	}
	rc = 0;
out:
	usv_sender_free(s);
	usv_spool_free(sp);
	usv_dcm_global_cleanup();
	return rc;
}
