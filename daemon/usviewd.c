/*
 * NAME
 *	usviewd - the usview DICOM node (receiver, classifier, result sender)
 *
 * SYNOPSIS
 *	usviewd --spool DIR --port N --aet TITLE [--bind ADDR]
 *		[--allow AET[@ADDR]]... [--max-assoc N] [--acse-timeout S]
 *		[--dimse-timeout S] [--max-pdu BYTES] [--min-free BYTES]
 *		[--sop-class UID]...
 *
 * DESCRIPTION
 *	Quick start: runs the storage SCP into the spool DIR with no
 *	configuration file, the way storescp starts. Received instances are
 *	committed durably to DIR/incoming/ before the C-STORE is answered.
 *	One line per association and per instance goes to stderr (no patient
 *	data). SIGTERM or SIGINT stops cleanly: no new associations, running
 *	ones finish, then exit 0.
 *
 *	--min-free: C-STOREs are answered 0xA700 while the spool's file
 *	system has less free space (default 100 MB; 0 = no check).
 */
#include "receiver.h"
#include "spool.h"
#include "usv/dcm_scp.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_assoc(void *ctx, const usv_scp_assoc_record *r)
{
	(void)ctx;
	pthread_mutex_lock(&log_mu);
	fprintf(stderr,
	        "usviewd: association peer=%s calling=%s called=%s outcome=\"%s\" stored=%u "
	        "failed=%u echo=%u bytes=%llu seconds=%.3f\n",
	        r->peer_addr, r->calling_aet, r->called_aet, r->outcome, r->n_stored, r->n_failed,
	        r->n_echo, (unsigned long long)r->bytes, r->seconds);
	pthread_mutex_unlock(&log_mu);
}

static void on_instance(void *ctx, const usv_scp_instance_record *r)
{
	(void)ctx;
	pthread_mutex_lock(&log_mu);
	fprintf(stderr,
	        "usviewd: instance peer=%s calling=%s sop_instance=%s spool_id=%s bytes=%llu "
	        "status=0x%04X%s%s\n",
	        r->peer_addr, r->calling_aet, r->sop_instance_uid,
	        r->spool_id[0] ? r->spool_id : "-", (unsigned long long)r->bytes, r->status,
	        r->detail[0] ? " detail=" : "", r->detail);
	pthread_mutex_unlock(&log_mu);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: usviewd --spool DIR --port N --aet TITLE [--bind ADDR]\n"
	           "               [--allow AET[@ADDR]]... [--max-assoc N] [--acse-timeout S]\n"
	           "               [--dimse-timeout S] [--max-pdu BYTES] [--min-free BYTES]\n"
	           "               [--sop-class UID]...\n");
}

static int parse_num(const char *opt, const char *s, unsigned long long max,
                     unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s ? s : "", &end, 10);
	if (!s || !*s || *end || errno || v > max || s[0] == '-') {
		fprintf(stderr, "usviewd: %s: bad number '%s'\n", opt, s ? s : "");
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	usv_scp_config cfg;
	usv_scp_config_init(&cfg);
	cfg.min_free_bytes = 100ULL * 1000 * 1000;
	const char *spool_dir = NULL;
	static usv_scp_peer peers[USV_SCP_MAX_PEERS];
	static const char *extra[USV_SCP_MAX_EXTRA_SOP];
	size_t npeers = 0, nextra = 0;
	int have_port = 0, have_aet = 0;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		unsigned long long n;
		if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "usviewd: %s: missing value\n", o);
			usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(o, "--spool")) {
			spool_dir = v;
		} else if (!strcmp(o, "--port")) {
			if (parse_num(o, v, 65535, &n))
				return 2;
			cfg.port = (int)n;
			have_port = 1;
		} else if (!strcmp(o, "--aet")) {
			cfg.aet = v;
			have_aet = 1;
		} else if (!strcmp(o, "--bind")) {
			cfg.bind_addr = v;
		} else if (!strcmp(o, "--allow")) {
			if (npeers == USV_SCP_MAX_PEERS) {
				fprintf(stderr, "usviewd: too many --allow\n");
				return 2;
			}
			const char *at = strchr(v, '@');
			size_t al = at ? (size_t)(at - v) : strlen(v);
			if (al < 1 || al > 16 || (at && strlen(at + 1) >= sizeof peers[0].addr)) {
				fprintf(stderr, "usviewd: --allow %s: expected AET[@ADDR]\n", v);
				return 2;
			}
			memcpy(peers[npeers].aet, v, al);
			peers[npeers].aet[al] = 0;
			snprintf(peers[npeers].addr, sizeof peers[npeers].addr, "%s",
			         at ? at + 1 : "");
			npeers++;
		} else if (!strcmp(o, "--max-assoc")) {
			if (parse_num(o, v, 64, &n))
				return 2;
			cfg.max_assoc = (int)n;
		} else if (!strcmp(o, "--acse-timeout")) {
			if (parse_num(o, v, 3600, &n))
				return 2;
			cfg.acse_timeout_s = (int)n;
		} else if (!strcmp(o, "--dimse-timeout")) {
			if (parse_num(o, v, 3600, &n))
				return 2;
			cfg.dimse_timeout_s = (int)n;
		} else if (!strcmp(o, "--max-pdu")) {
			if (parse_num(o, v, 131072, &n))
				return 2;
			cfg.max_pdu = (unsigned)n;
		} else if (!strcmp(o, "--min-free")) {
			if (parse_num(o, v, UINT64_MAX, &n))
				return 2;
			cfg.min_free_bytes = n;
		} else if (!strcmp(o, "--sop-class")) {
			if (nextra == USV_SCP_MAX_EXTRA_SOP) {
				fprintf(stderr, "usviewd: too many --sop-class\n");
				return 2;
			}
			extra[nextra++] = v;
		} else {
			fprintf(stderr, "usviewd: unknown option %s\n", o);
			usage(stderr);
			return 2;
		}
	}
	if (!spool_dir || !have_port || !have_aet) {
		usage(stderr);
		return 2;
	}
	cfg.peers = peers;
	cfg.npeers = npeers;
	cfg.extra_sop_classes = extra;
	cfg.nextra = nextra;

	/* Signals: blocked before any thread exists, taken by sigwait below. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	char err[USV_ERRBUF];
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usviewd: %s\n", err);
		return 1;
	}
	usv_spool *sp = NULL;
	if (usv_spool_open(spool_dir, &sp, err, sizeof err)) {
		fprintf(stderr, "usviewd: %s\n", err);
		return 1;
	}
	unsigned rq = 0, rm = 0;
	int rc = usv_spool_recover(sp, &rq, &rm);
	if (rc) {
		fprintf(stderr, "usviewd: %s: spool recovery failed: %s\n", spool_dir,
		        usv_strerror(rc));
		return 1;
	}
	if (rq || rm)
		fprintf(stderr, "usviewd: spool recovery: %u requeued, %u removed\n", rq, rm);

	usv_scp_sink sink;
	usv_receiver_sink(sp, &sink);
	usv_scp_callbacks cbs = {
	    .ctx = NULL, .on_stored = NULL, .on_assoc = on_assoc, .on_instance = on_instance};
	usv_scp *scp = NULL;
	if (usv_scp_start(&cfg, &cbs, &sink, &scp, err, sizeof err)) {
		fprintf(stderr, "usviewd: %s\n", err);
		usv_spool_free(sp);
		usv_dcm_global_cleanup();
		return 1;
	}
	fprintf(stderr, "usviewd: listening on %s:%d as %s, spool %s\n",
	        cfg.bind_addr ? cfg.bind_addr : "0.0.0.0", cfg.port, cfg.aet, spool_dir);

	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(stderr, "usviewd: signal %d, stopping\n", sig);
	usv_scp_stop(scp);
	usv_spool_free(sp);
	usv_dcm_global_cleanup();
	fprintf(stderr, "usviewd: stopped\n");
	return 0;
}
