/*
 * NAME
 *	usviewd - the usview DICOM node (receiver, classifier, result sender)
 *
 * SYNOPSIS
 *	usviewd -c FILE [--check-config | --dump-config] [OPTIONS]
 *	usviewd --spool DIR --port N --aet TITLE [--model FILE]
 *		[--send-to AE@HOST:PORT]... [OPTIONS]
 *
 * DESCRIPTION
 *	Runs in the foreground (as systemd's Type=notify expects). A storage
 *	SCP commits received instances durably to the spool's incoming/; a
 *	worker pool classifies them in micro-batches with one shared model and
 *	writes SRs and/or tagged copies into outbox/<destination>/; a sender
 *	delivers them with retries, backoff and dead letters. Every processed
 *	instance gets one line in <spool>/results.jsonl. A sweeper thread
 *	applies the spool's retention (spool.retention_h, every
 *	spool.sweep_interval_s, at most SWEEP_MAX deletions per pass) and the
 *	results index rotates itself by size (spool.index_max_mb,
 *	spool.index_keep).
 *
 *	The configuration is YAML (-c FILE, see packaging/usviewd.yaml);
 *	command-line options override it. Without -c the daemon starts from
 *	the built-in defaults (quick start: --spool, --port and --aet are then
 *	required; without --model it only receives; the HTTP endpoint is off
 *	unless --http-port is given).
 *
 *	Options (getopt_long; each overrides the configuration key named):
 *	  --spool DIR            spool.dir
 *	  --port N               listen.port
 *	  --aet TITLE            listen.ae_title
 *	  --bind ADDR            listen.bind
 *	  --allow AET[@ADDR]     allowed_peers (repeatable; replaces the list)
 *	  --max-assoc N          listen.max_associations
 *	  --acse-timeout S       listen.acse_timeout
 *	  --dimse-timeout S      listen.dimse_timeout
 *	  --max-pdu BYTES        listen.max_pdu
 *	  --min-free BYTES       spool.min_free_mb (rounded up to MB)
 *	  --sop-class UID        extra SOP class accepted (repeatable)
 *	  --model FILE           model.path
 *	  --workers N            model.workers
 *	  --batch-size N         model.batch_size
 *	  --send-to AE@HOST:PORT destinations (repeatable; replaces the list;
 *	                         sends SRs)
 *	  --http-port N          http.port (and http.enabled)
 *	  --log-level LEVEL      log.level
 *	  --set KEY=VALUE        any scalar key
 *
 *	--check-config validates the file plus options and exits 0, or prints
 *	"FILE:LINE:COLUMN: KEY: reason" and exits 1. --dump-config prints the
 *	effective configuration.
 *
 *	Who owns what: the configuration (usv/config.h) is read here only.
 *	From it this file builds, once per start or reload, the worker
 *	settings and the destinations (results_route.h:
 *	usv_worker_settings_from_config), the sender (from those same
 *	destinations) and the storage SCP's settings, allow-list and TLS
 *	files (scp_tls). Configuration warnings (usv_config_warnings: a
 *	private key readable by others) are logged at start and reload and
 *	printed by --check-config.
 *
 * SIGNALS
 *	SIGTERM, SIGINT: STOPPING=1, stop accepting (listener closed, /healthz
 *	503 "draining"), let running associations finish within
 *	listen.drain_timeout_s (then abort them), let workers finish their
 *	batch, stop the sender, exit 0.
 *	SIGHUP: RELOADING=1, re-read -c FILE; on error keep the running
 *	configuration (logged); else apply the reloadable keys (log level,
 *	destinations, crop rules, frames, exclusion, top_k, batch_wait_ms,
 *	retention, index rotation), read the TLS certificate, key and CA
 *	file again (a file that does not load keeps the running ones, logged),
 *	read the QA bearer token (http.token_file) again (on failure the
 *	running one stays, logged), log the keys that need a restart; READY=1.
 *	The main thread takes all three with sigtimedwait; a thread started
 *	before main() blocked them (OpenBLAS's pool) passes them on to it
 *	(forward_signal), so no thread ends the process on its own.
 *
 * SYSTEMD
 *	READY=1 only after the configuration is valid, the spool recovered,
 *	the model loaded and the DICOM port bound. STATUS= every 2 s;
 *	WATCHDOG=1 from the main loop while every worker makes progress.
 *
 * EXIT STATUS
 *	0 clean stop, 1 start-up failure or invalid configuration, 2 usage.
 */
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "qa_web.h"
#include "receiver.h"
#include "results_index.h"
#include "results_route.h"
#include "sender.h"
#include "spool.h"
#include "results_db.h"
#include "study.h"
#include "worker.h"
#include "usv/config.h"
#include "usv/dcm_ae.h"
#include "usv/dcm_scp.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/label_text.h"
#include "usv/nn.h"
#include "usv/parse.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "usv/version.h"

#define MAX_OVERRIDES 64
#define MAX_SENDTO USV_CFG_MAX_DESTS

struct override {
	char key[128];
	char value[USV_CFG_PATH_MAX];
};

struct opts {
	const char *config_file;
	int check, dump;
	struct override ov[MAX_OVERRIDES];
	int nov;
	const char *send_to[MAX_SENDTO];
	int nsend_to;
	const char *allow[USV_CFG_MAX_PEERS];
	int nallow;
	const char *extra_sop[USV_SCP_MAX_EXTRA_SOP];
	int nextra;
	int http_given;
};

/* The daemon's shared state. cfg and settings are read by workers
 * (get_settings) and replaced by the reload path, under cfg_mu. */
struct daemon {
	pthread_mutex_t cfg_mu;
	struct usv_config cfg;
	struct usv_worker_settings *settings; /* built from cfg */
	struct opts *opts;
	sigset_t signals; /* taken by sigtimedwait in the main loop */
	int dcm_ready;    /* usv_dcm_global_init succeeded */
	usv_spool *spool;
	usv_model *model;
	struct usv_results_index *index;
	struct usv_metrics *metrics;
	struct usv_worker_pool *pool;
	usv_label_table *label_table;    /* qa.views (or the built-in one), loaded at start */
	struct usv_study_tracker *study; /* QA study records (study.h) */
	struct usv_results_db *db;       /* results.backend: postgresql */
	usv_sender *sender;
	pthread_mutex_t sender_mu;
	usv_scp *scp;
	struct usv_http *http;
	struct usv_qa_web *qa; /* /qa pages (http.qa) */
	/* retention sweeper (spool.retention_h, spool.sweep_interval_s) */
	pthread_t sweeper;
	int sweeper_started;
	pthread_mutex_t sweep_mu; /* guards sweep_stop, sweep_kick; with sweep_cv */
	pthread_cond_t sweep_cv;
	int sweep_stop, sweep_kick;
	_Atomic unsigned long long purged[5]; /* done sent excluded failed dead */
};

static const char *const purged_state[5] = {"done", "sent", "excluded", "failed", "dead"};

/* ---------------- command line ---------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: usviewd -c FILE [--check-config | --dump-config] [OPTIONS]\n"
	           "       usviewd --spool DIR --port N --aet TITLE [--model FILE]\n"
	           "               [--send-to AE@HOST:PORT]... [OPTIONS]\n"
	           "options: --bind ADDR --allow AET[@ADDR] --max-assoc N --acse-timeout S\n"
	           "         --dimse-timeout S --max-pdu BYTES --min-free BYTES --sop-class UID\n"
	           "         --workers N --batch-size N --http-port N --log-level LEVEL\n"
	           "         --set KEY=VALUE --version\n");
}

static int add_override(struct opts *o, const char *key, size_t keylen, const char *value)
{
	if (o->nov == MAX_OVERRIDES) {
		fprintf(stderr, "usviewd: too many options\n");
		return -1;
	}
	if (keylen == 0 || keylen >= sizeof o->ov[0].key) {
		fprintf(stderr, "usviewd: option key '%.*s' is too long\n", (int)keylen, key);
		return -1;
	}
	memcpy(o->ov[o->nov].key, key, keylen);
	o->ov[o->nov].key[keylen] = 0;
	snprintf(o->ov[o->nov].value, sizeof o->ov[o->nov].value, "%s", value);
	o->nov++;
	return 0;
}

static int add_list(const char **list, int *n, int max, const char *v, const char *opt)
{
	if (*n == max) {
		fprintf(stderr, "usviewd: too many %s\n", opt);
		return -1;
	}
	list[(*n)++] = v;
	return 0;
}

enum {
	OPT_CHECK = 0x100,
	OPT_DUMP,
	OPT_VERSION,
	OPT_SEND_TO,
	OPT_ALLOW,
	OPT_SOP_CLASS,
	OPT_MIN_FREE,
	OPT_HTTP_PORT,
	OPT_SET,
	OPT_SIMPLE, /* OPT_SIMPLE + i: simple_keys[i] */
};

/* Options that set one configuration key to their value, as given. */
static const struct {
	const char *opt;
	const char *key;
} simple_keys[] = {
    {"spool", "spool.dir"},
    {"port", "listen.port"},
    {"aet", "listen.ae_title"},
    {"bind", "listen.bind"},
    {"max-assoc", "listen.max_associations"},
    {"acse-timeout", "listen.acse_timeout"},
    {"dimse-timeout", "listen.dimse_timeout"},
    {"max-pdu", "listen.max_pdu"},
    {"model", "model.path"},
    {"workers", "model.workers"},
    {"batch-size", "model.batch_size"},
    {"log-level", "log.level"},
};

#define N_SIMPLE (sizeof simple_keys / sizeof simple_keys[0])

/* Returns 0 to run, -1 to exit 0 (--help, --version), 2 for a usage error
 * (after printing). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	struct option longopts[N_SIMPLE + 12];
	size_t n = 0;
	int c;

	for (size_t i = 0; i < N_SIMPLE; i++)
		longopts[n++] = (struct option){simple_keys[i].opt, required_argument, NULL,
		                                OPT_SIMPLE + (int)i};
	longopts[n++] = (struct option){"config", required_argument, NULL, 'c'};
	longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
	longopts[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
	longopts[n++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
	longopts[n++] = (struct option){"dump-config", no_argument, NULL, OPT_DUMP};
	longopts[n++] = (struct option){"send-to", required_argument, NULL, OPT_SEND_TO};
	longopts[n++] = (struct option){"allow", required_argument, NULL, OPT_ALLOW};
	longopts[n++] = (struct option){"sop-class", required_argument, NULL, OPT_SOP_CLASS};
	longopts[n++] = (struct option){"min-free", required_argument, NULL, OPT_MIN_FREE};
	longopts[n++] = (struct option){"http-port", required_argument, NULL, OPT_HTTP_PORT};
	longopts[n++] = (struct option){"set", required_argument, NULL, OPT_SET};
	longopts[n] = (struct option){NULL, 0, NULL, 0};

	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		const char *v = optarg;

		if (c >= OPT_SIMPLE && c < OPT_SIMPLE + (int)N_SIMPLE) {
			const char *key = simple_keys[c - OPT_SIMPLE].key;
			if (add_override(o, key, strlen(key), v) < 0)
				return 2;
			continue;
		}
		switch (c) {
		case 'c':
			o->config_file = v;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case OPT_VERSION:
			printf("usviewd %s\n", USV_VERSION_STRING);
			return -1;
		case OPT_CHECK:
			o->check = 1;
			break;
		case OPT_DUMP:
			o->dump = 1;
			break;
		case OPT_SEND_TO:
			if (add_list(o->send_to, &o->nsend_to, MAX_SENDTO, v, "--send-to") < 0)
				return 2;
			break;
		case OPT_ALLOW:
			if (add_list(o->allow, &o->nallow, USV_CFG_MAX_PEERS, v, "--allow") < 0)
				return 2;
			break;
		case OPT_SOP_CLASS:
			if (add_list(o->extra_sop, &o->nextra, USV_SCP_MAX_EXTRA_SOP, v,
			             "--sop-class") < 0)
				return 2;
			break;
		case OPT_MIN_FREE: {
			uint64_t b;
			char mb[32];
			if (usv_parse_u64(v, 0, UINT64_MAX, &b) < 0) {
				fprintf(stderr, "usviewd: --min-free: bad number '%s'\n", v);
				return 2;
			}
			/* bytes rounded up to whole MB (without overflowing) */
			snprintf(mb, sizeof mb, "%llu",
			         (unsigned long long)(b / 1048576 + (b % 1048576 != 0)));
			if (add_override(o, "spool.min_free_mb", strlen("spool.min_free_mb"), mb) <
			    0)
				return 2;
			break;
		}
		case OPT_HTTP_PORT:
			if (add_override(o, "http.port", strlen("http.port"), v) < 0 ||
			    add_override(o, "http.enabled", strlen("http.enabled"), "true") < 0)
				return 2;
			o->http_given = 1;
			break;
		case OPT_SET: {
			const char *eq = strchr(v, '=');
			if (!eq || eq == v) {
				fprintf(stderr, "usviewd: --set %s: expected KEY=VALUE\n", v);
				return 2;
			}
			if (add_override(o, v, (size_t)(eq - v), eq + 1) < 0)
				return 2;
			break;
		}
		default: /* getopt_long has said what is wrong */
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "usviewd: unexpected argument %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return 0;
}

/* ---------------- configuration ---------------- */

/* Command-line values over cfg (file or defaults). */
static int apply_overrides(const struct opts *o, struct usv_config *cfg, char *err, size_t errlen)
{
	char why[128];
	int r;

	if (!o->config_file) {
		/* quick start: no HTTP unless asked, no model unless given */
		if (!o->http_given)
			cfg->http.enabled = 0;
		cfg->model.path[0] = 0;
	}
	for (int i = 0; i < o->nov; i++) {
		r = usv_config_set(cfg, o->ov[i].key, o->ov[i].value, err, errlen);
		if (r < 0)
			return r;
	}
	if (o->nallow) {
		cfg->n_allowed_peers = 0;
		for (int i = 0; i < o->nallow; i++) {
			struct usv_config_peer *p = &cfg->allowed_peers[cfg->n_allowed_peers];
			const char *at = strchr(o->allow[i], '@');
			size_t al = at ? (size_t)(at - o->allow[i]) : strlen(o->allow[i]);
			if (al < 1 || al >= sizeof p->ae_title ||
			    (at && strlen(at + 1) >= sizeof p->host))
				return usv_seterr(err, errlen, -EINVAL,
				                  "--allow %s: expected AET[@ADDR]", o->allow[i]);
			memset(p, 0, sizeof *p);
			memcpy(p->ae_title, o->allow[i], al);
			if (usv_dcm_ae_check(p->ae_title, why, sizeof why) < 0)
				return usv_seterr(err, errlen, -EINVAL, "--allow %s: %s",
				                  o->allow[i], why);
			snprintf(p->host, sizeof p->host, "%s", at ? at + 1 : "");
			cfg->n_allowed_peers++;
		}
	}
	if (o->nsend_to) {
		cfg->n_destinations = 0;
		for (int i = 0; i < o->nsend_to; i++) {
			r = usv_config_add_destination(cfg, o->send_to[i], err, errlen);
			if (r < 0)
				return r;
		}
	}
	return usv_config_validate(cfg, err, errlen);
}

/* Phase 1: the configuration from -c FILE (or the defaults) and the
 * command line. Returns -1 to go on, or the exit status (--check-config,
 * --dump-config, or an error already printed). */
static int load_config(struct daemon *d, const struct opts *o)
{
	char err[USV_ERRBUF];
	int r;

	usv_config_defaults(&d->cfg);
	if (o->config_file) {
		r = usv_config_load_file(o->config_file, &d->cfg, err, sizeof err);
		if (r < 0) {
			fprintf(stderr, "usviewd: %s\n", err);
			return 1;
		}
	} else if (!o->check && !o->dump) {
		/* quick start: the spool, port and AE title must be explicit */
		int have[3] = {0, 0, 0};
		for (int i = 0; i < o->nov; i++) {
			have[0] |= !strcmp(o->ov[i].key, "spool.dir");
			have[1] |= !strcmp(o->ov[i].key, "listen.port");
			have[2] |= !strcmp(o->ov[i].key, "listen.ae_title");
		}
		if (!have[0] || !have[1] || !have[2]) {
			usage(stderr);
			return 2;
		}
	}
	r = apply_overrides(o, &d->cfg, err, sizeof err);
	if (r < 0) {
		fprintf(stderr, "usviewd: %s\n", err);
		return o->config_file ? 1 : 2;
	}
	if (o->check) {
		char warn[2048];
		if (usv_config_warnings(&d->cfg, warn, sizeof warn) > 0)
			fprintf(stderr, "usviewd: warning: %s\n", warn);
		printf("usviewd: %s: configuration OK\n",
		       o->config_file ? o->config_file : "(defaults)");
		return 0;
	}
	if (o->dump)
		return usv_config_dump(&d->cfg, stdout) < 0 ? 1 : 0;
	return -1;
}

/* The storage SCP's allow-list from the configuration; returns the count. */
static size_t scp_peers(const struct usv_config *cfg, usv_scp_peer peers[USV_CFG_MAX_PEERS])
{
	size_t n = 0;

	for (int i = 0; i < cfg->n_allowed_peers && i < USV_CFG_MAX_PEERS; i++, n++) {
		memset(&peers[n], 0, sizeof peers[n]);
		snprintf(peers[n].aet, sizeof peers[n].aet, "%s", cfg->allowed_peers[i].ae_title);
		snprintf(peers[n].addr, sizeof peers[n].addr, "%s", cfg->allowed_peers[i].host);
	}
	return n;
}

/* The storage SCP's TLS settings from the configuration (paths borrowed). */
static void scp_tls(const struct usv_config *cfg, usv_scp_tls *t)
{
	memset(t, 0, sizeof *t);
	t->port = cfg->listen.tls.port;
	t->certificate = cfg->listen.tls.certificate;
	t->private_key = cfg->listen.tls.private_key;
	t->ca_file = cfg->listen.tls.ca_file;
	t->require_client_certificate = cfg->listen.tls.require_client_certificate;
	t->profile = (usv_tls_profile)cfg->listen.tls.profile;
}

/* Logs usv_config_warnings(), one line each. */
static void log_config_warnings(const struct usv_config *cfg)
{
	char warn[2048];

	if (usv_config_warnings(cfg, warn, sizeof warn) <= 0)
		return;
	for (char *line = warn, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = 0;
		usv_log(LOG_WARNING, "configuration: %s", line);
	}
}

/* ---------------- callbacks ---------------- */

static struct daemon D;

static void get_settings(void *ctx, struct usv_worker_settings *out)
{
	struct daemon *d = ctx;

	pthread_mutex_lock(&d->cfg_mu);
	*out = *d->settings;
	pthread_mutex_unlock(&d->cfg_mu);
}

static void on_output(void *ctx)
{
	struct daemon *d = ctx;

	pthread_mutex_lock(&d->sender_mu);
	if (d->sender)
		usv_sender_wake(d->sender);
	pthread_mutex_unlock(&d->sender_mu);
}

static int on_stored(void *ctx, const char *spool_id, const usv_stored_info *info)
{
	struct daemon *d = ctx;

	(void)spool_id, (void)info;
	usv_metrics_inc(d->metrics, USV_C_INST_RECEIVED, 1);
	usv_worker_pool_wake(d->pool);
	return 0;
}

static void on_assoc(void *ctx, const usv_scp_assoc_record *r)
{
	struct daemon *d = ctx;
	char f[12][300];
	const char *fields[12];
	int nf = 10;

	usv_metrics_inc(d->metrics, r->accepted ? USV_C_ASSOC_ACCEPTED : USV_C_ASSOC_REJECTED, 1);
	snprintf(f[0], sizeof f[0], "USV_PEER_ADDR=%s", r->peer_addr);
	snprintf(f[1], sizeof f[1], "USV_CALLING_AE=%s", r->calling_aet);
	snprintf(f[2], sizeof f[2], "USV_CALLED_AE=%s", r->called_aet);
	snprintf(f[3], sizeof f[3], "USV_OUTCOME=%s", r->outcome);
	snprintf(f[4], sizeof f[4], "USV_ACCEPTED=%d", r->accepted);
	snprintf(f[5], sizeof f[5], "USV_STORED=%u", r->n_stored);
	snprintf(f[6], sizeof f[6], "USV_FAILED=%u", r->n_failed);
	snprintf(f[7], sizeof f[7], "USV_ECHO=%u", r->n_echo);
	snprintf(f[8], sizeof f[8], "USV_BYTES=%llu", (unsigned long long)r->bytes);
	snprintf(f[9], sizeof f[9], "USV_SECONDS=%.3f", r->seconds);
	if (r->tls) {
		snprintf(f[nf++], sizeof f[0], "USV_TLS=1");
		snprintf(f[nf++], sizeof f[0], "USV_PEER_CERTIFICATE=%s",
		         r->peer_certificate ? r->peer_certificate : "");
	}
	for (int i = 0; i < nf; i++)
		fields[i] = f[i];
	if (r->tls && !r->calling_aet[0])
		/* refused before any association request: the TLS handshake */
		usv_log_fields(LOG_WARNING, USV_MSGID_ASSOC, fields, nf,
		               "TLS connection from %s: %s", r->peer_addr, r->outcome);
	else
		usv_log_fields(
		    r->accepted ? LOG_INFO : LOG_WARNING, USV_MSGID_ASSOC, fields, nf,
		    "association %s from %s@%s%s%s%s: %s, %u stored, %u failed", r->called_aet,
		    r->calling_aet, r->peer_addr, r->tls ? " over TLS" : "",
		    r->tls && r->peer_certificate && r->peer_certificate[0] ? " as " : "",
		    r->tls && r->peer_certificate ? r->peer_certificate : "", r->outcome,
		    r->n_stored, r->n_failed);
}

static void on_instance(void *ctx, const usv_scp_instance_record *r)
{
	struct daemon *d = ctx;
	char f[7][160];
	const char *fields[7];

	if (r->status != 0)
		usv_metrics_inc(d->metrics, USV_C_INST_REFUSED, 1);
	snprintf(f[0], sizeof f[0], "USV_PEER_ADDR=%s", r->peer_addr);
	snprintf(f[1], sizeof f[1], "USV_CALLING_AE=%s", r->calling_aet);
	snprintf(f[2], sizeof f[2], "USV_SOP_CLASS_UID=%s", r->sop_class_uid);
	snprintf(f[3], sizeof f[3], "USV_SOP_INSTANCE_UID=%s", r->sop_instance_uid);
	snprintf(f[4], sizeof f[4], "USV_SPOOL_ID=%s", r->spool_id);
	snprintf(f[5], sizeof f[5], "USV_STATUS=0x%04X", r->status);
	snprintf(f[6], sizeof f[6], "USV_BYTES=%llu", (unsigned long long)r->bytes);
	for (int i = 0; i < 7; i++)
		fields[i] = f[i];
	usv_log_fields(r->status ? LOG_WARNING : LOG_DEBUG, USV_MSGID_INSTANCE, fields, 7,
	               "received %s from %s: status 0x%04X%s%s", r->sop_instance_uid,
	               r->calling_aet, r->status, r->detail[0] ? ": " : "", r->detail);
}

static void sender_log(void *ctx, int level, const char *dest, const char *msg)
{
	char f[160];
	const char *fields[1] = {f};

	(void)ctx;
	snprintf(f, sizeof f, "USV_DESTINATION=%s", dest ? dest : "");
	usv_log_fields(level, USV_MSGID_SEND, fields, 1, "destination %s: %s", dest ? dest : "-",
	               msg);
}

/* ---------------- sender ---------------- */

/* A started sender for the given destinations; *out NULL when there are
 * none. */
static int make_sender(struct daemon *d, const struct usv_routes *routes, usv_sender **out,
                       char *err, size_t errlen)
{
	usv_sender_opts so;

	*out = NULL;
	if (routes->n == 0)
		return 0;
	memset(&so, 0, sizeof so);
	so.log = sender_log;
	so.log_ctx = d;
	int r = usv_sender_create(d->spool, routes->dests, routes->n, &so, out, err, errlen);
	if (r < 0)
		return r;
	r = usv_sender_start(*out);
	if (r < 0) {
		usv_sender_free(*out);
		*out = NULL;
		return usv_seterr(err, errlen, r, "sender: cannot start: %s", usv_strerror(r));
	}
	return 0;
}

/* ---------------- metrics and health ---------------- */

static int metrics_extra(void *ctx, FILE *f)
{
	struct daemon *d = ctx;
	static const struct {
		const char *name;
		enum usv_spool_state st;
	} qs[] = {{"incoming", USV_SPOOL_INCOMING},
	          {"active", USV_SPOOL_ACTIVE},
	          {"done", USV_SPOOL_DONE},
	          {"failed", USV_SPOOL_FAILED},
	          {"excluded", USV_SPOOL_EXCLUDED}};

	usv_metrics_family(f, "usview_queue_depth", "gauge", "Instances in each spool state.");
	for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
		size_t n = 0;
		if (usv_spool_count(d->spool, qs[i].st, &n) == 0)
			fprintf(f, "usview_queue_depth{queue=\"%s\"} %zu\n", qs[i].name, n);
	}
	if (d->scp) {
		usv_scp_stats st;
		usv_scp_get_stats(d->scp, &st);
		usv_metrics_family(f, "usview_associations_active", "gauge",
		                   "DICOM associations in progress.");
		fprintf(f, "usview_associations_active %llu\n",
		        (unsigned long long)st.assoc_active);
		usv_metrics_family(f, "usview_associations_busy_rejected_total", "counter",
		                   "Associations rejected because every SCP worker was busy.");
		fprintf(f, "usview_associations_busy_rejected_total %llu\n",
		        (unsigned long long)st.assoc_busy);
		usv_metrics_family(f, "usview_associations_address_rejected_total", "counter",
		                   "Associations rejected because their address already had "
		                   "listen.max_associations_per_address.");
		fprintf(f, "usview_associations_address_rejected_total %llu\n",
		        (unsigned long long)st.assoc_rejected_addr);
		usv_metrics_family(f, "usview_connections_halfopen", "gauge",
		                   "Connections whose A-ASSOCIATE-RQ is not complete yet.");
		fprintf(f, "usview_connections_halfopen %llu\n",
		        (unsigned long long)st.halfopen_active);
		usv_metrics_family(f, "usview_connections_closed_total", "counter",
		                   "Connections closed before their A-ASSOCIATE-RQ was complete, "
		                   "by reason.");
		fprintf(f, "usview_connections_closed_total{reason=\"evicted\"} %llu\n",
		        (unsigned long long)st.halfopen_evicted);
		fprintf(f, "usview_connections_closed_total{reason=\"timeout\"} %llu\n",
		        (unsigned long long)st.halfopen_timeout);
		fprintf(f, "usview_connections_closed_total{reason=\"not_dicom\"} %llu\n",
		        (unsigned long long)st.not_dicom);
		fprintf(f, "usview_connections_closed_total{reason=\"proxy_header\"} %llu\n",
		        (unsigned long long)st.proxy_refused);
		usv_metrics_family(f, "usview_tls_handshake_failures_total", "counter",
		                   "TLS connections refused in the handshake (no or untrusted "
		                   "client certificate, not TLS, no common cipher, ...).");
		fprintf(f, "usview_tls_handshake_failures_total %llu\n",
		        (unsigned long long)st.tls_handshake_failed);
	}
	usv_metrics_family(f, "usview_workers_inflight", "gauge",
	                   "Instances claimed by workers and not finished.");
	fprintf(f, "usview_workers_inflight %d\n", usv_worker_pool_inflight(d->pool));

	uint64_t fb = 0, minfree;
	if (usv_spool_free_bytes(d->spool, &fb) == 0) {
		usv_metrics_family(f, "usview_spool_free_bytes", "gauge",
		                   "Bytes available on the spool's file system (statvfs).");
		fprintf(f, "usview_spool_free_bytes %llu\n", (unsigned long long)fb);
	}
	pthread_mutex_lock(&d->cfg_mu);
	minfree = (uint64_t)d->cfg.spool.min_free_mb * 1048576ull;
	pthread_mutex_unlock(&d->cfg_mu);
	usv_metrics_family(f, "usview_spool_min_free_bytes", "gauge",
	                   "spool.min_free_mb in bytes: below it C-STOREs are refused (0: off).");
	fprintf(f, "usview_spool_min_free_bytes %llu\n", (unsigned long long)minfree);

	pthread_mutex_lock(&d->sender_mu);
	if (d->sender) {
		size_t n = usv_sender_ndest(d->sender);
		static const char *const fam[][3] = {
		    {"usview_outbox_depth", "gauge", "Results waiting in a destination's outbox."},
		    {"usview_sent_total", "counter", "Results delivered, per destination."},
		    {"usview_send_retries_total", "counter",
		     "Delivery attempts that failed and will be retried."},
		    {"usview_dead_total", "counter", "Results given up (dead/), per destination."},
		};
		for (int k = 0; k < 4; k++) {
			usv_metrics_family(f, fam[k][0], fam[k][1], fam[k][2]);
			for (size_t i = 0; i < n; i++) {
				usv_dest dd;
				usv_sender_counters c;
				unsigned long long v = 0;
				if (usv_sender_counters_get(d->sender, i, &dd, &c) < 0)
					continue;
				if (k == 0) {
					size_t ni = 0; /* from memory: no listing per scrape */
					if (usv_spool_outbox_count(d->spool, dd.name, &ni, NULL,
					                           NULL) < 0)
						continue;
					v = ni;
				} else {
					v = k == 1 ? c.sent : k == 2 ? c.retries : c.dead;
				}
				fprintf(f, "%s{destination=\"%s\"} %llu\n", fam[k][0], dd.name, v);
			}
		}
	}
	pthread_mutex_unlock(&d->sender_mu);

	usv_metrics_family(f, "usview_spool_purged_total", "counter",
	                   "Files deleted by the retention sweep, per state.");
	for (int i = 0; i < 5; i++)
		fprintf(f, "usview_spool_purged_total{state=\"%s\"} %llu\n", purged_state[i],
		        (unsigned long long)atomic_load(&d->purged[i]));
	if (d->db) {
		struct usv_results_db_stats st;
		usv_results_db_stats(d->db, &st);
		usv_metrics_family(
		    f, "usview_results_db_up", "gauge",
		    "1 while the results database is connected and its schema current.");
		fprintf(f, "usview_results_db_up %d\n", st.up);
		usv_metrics_family(f, "usview_results_db_lines_total", "counter",
		                   "Lines of results.jsonl copied into the results database.");
		fprintf(f, "usview_results_db_lines_total %llu\n", (unsigned long long)st.lines);
		usv_metrics_family(
		    f, "usview_results_db_backlog_bytes", "gauge",
		    "Bytes of results.jsonl not yet copied into the results database.");
		fprintf(f, "usview_results_db_backlog_bytes %llu\n",
		        (unsigned long long)st.backlog_bytes);
		usv_metrics_family(f, "usview_results_db_study_records_total", "counter",
		                   "Study records this node wrote into the results database.");
		fprintf(f, "usview_results_db_study_records_total %llu\n",
		        (unsigned long long)st.studies);
		usv_metrics_family(f, "usview_results_db_errors_total", "counter",
		                   "Copy or study passes that ended in a database error.");
		fprintf(f, "usview_results_db_errors_total %llu\n", (unsigned long long)st.errors);
		usv_metrics_family(f, "usview_results_db_lost_total", "counter",
		                   "results.jsonl files rotated away before they were copied.");
		fprintf(f, "usview_results_db_lost_total %llu\n", (unsigned long long)st.lost);
	}
	return 0;
}

static int health(void *ctx, char *why, size_t whylen)
{
	struct daemon *d = ctx;

	if (!d->scp)
		return usv_seterr(why, whylen, -EIO, "listener not running");
	usv_scp_stats sst;
	usv_scp_get_stats(d->scp, &sst);
	if (sst.draining) /* SIGTERM: a balancer should move on */
		return usv_seterr(why, whylen, -ESHUTDOWN, "draining");
	if (d->model && !d->pool)
		return usv_seterr(why, whylen, -EIO, "workers not running");
	if (d->pool)
		return usv_worker_pool_health(d->pool, 60.0, why, whylen);
	return 0;
}

/* ---------------- main ---------------- */

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void status_line(struct daemon *d, char *buf, size_t len, double rate)
{
	size_t in = 0, fa = 0;
	usv_scp_stats st = {0};

	usv_spool_count(d->spool, USV_SPOOL_INCOMING, &in);
	usv_spool_count(d->spool, USV_SPOOL_FAILED, &fa);
	if (d->scp)
		usv_scp_get_stats(d->scp, &st);
	snprintf(buf, len,
	         "assoc=%llu received=%llu queued=%zu inflight=%d done=%llu failed=%zu "
	         "excluded=%llu rate=%.1f/s",
	         (unsigned long long)st.assoc_active,
	         (unsigned long long)usv_metrics_get(d->metrics, USV_C_INST_RECEIVED), in,
	         usv_worker_pool_inflight(d->pool),
	         (unsigned long long)usv_metrics_get(d->metrics, USV_C_INST_DONE), fa,
	         (unsigned long long)usv_metrics_get(d->metrics, USV_C_INST_EXCLUDED), rate);
}

/* ---------------- reload ---------------- */

static void reload(struct daemon *d)
{
	char err[USV_ERRBUF], changed[512] = "";
	struct usv_config *next = malloc(sizeof *next);
	struct usv_worker_settings *next_set = malloc(sizeof *next_set), *old_set = NULL;
	int r;

	usv_notify_reloading();
	if (d->qa && usv_qa_web_reload_token(d->qa, err, sizeof err) < 0)
		usv_log(LOG_ERR, "reload: QA token not replaced, keeping the running one: %s", err);
	if (!next || !next_set) {
		usv_log(LOG_ERR, "reload: out of memory");
		goto ready;
	}
	if (!d->opts->config_file) {
		usv_log_fields(LOG_NOTICE, USV_MSGID_RELOAD, NULL, 0,
		               "reload: no configuration file (-c); nothing to do");
		goto ready;
	}
	pthread_mutex_lock(&d->cfg_mu);
	*next = d->cfg;
	pthread_mutex_unlock(&d->cfg_mu);
	r = usv_config_reload(next, d->opts->config_file, changed, sizeof changed, err, sizeof err);
	if (r == 0) /* the command line still wins over the file */
		r = apply_overrides(d->opts, next, err, sizeof err);
	if (r == 0)
		r = usv_worker_settings_from_config(next, next_set, err, sizeof err);
	if (r < 0) {
		usv_log_fields(LOG_ERR, USV_MSGID_RELOAD, NULL, 0,
		               "reload failed, keeping the running configuration: %s", err);
		goto ready;
	}
	int dest_changed =
	    d->cfg.n_destinations != next->n_destinations ||
	    memcmp(d->cfg.destinations, next->destinations, sizeof next->destinations) != 0;
	if (dest_changed) {
		/* One sender per outbox at a time: stop the old one (its send in
		 * progress completes) before the new one starts. */
		usv_sender *ns = NULL, *old;
		pthread_mutex_lock(&d->sender_mu);
		old = d->sender;
		d->sender = NULL;
		pthread_mutex_unlock(&d->sender_mu);
		usv_sender_free(old);
		r = make_sender(d, &next_set->routes, &ns, err, sizeof err);
		if (r < 0) {
			char err2[USV_ERRBUF];
			usv_log_fields(LOG_ERR, USV_MSGID_RELOAD, NULL, 0,
			               "reload failed (destinations), keeping the running "
			               "configuration: %s",
			               err);
			/* the running destinations (only this thread replaces them) */
			if (make_sender(d, &d->settings->routes, &ns, err2, sizeof err2) < 0)
				usv_log(LOG_ERR, "sender: cannot restart: %s", err2);
		}
		pthread_mutex_lock(&d->sender_mu);
		d->sender = ns;
		pthread_mutex_unlock(&d->sender_mu);
		if (r < 0)
			goto ready;
	}
	if (d->scp) {
		/* Access control applies to associations that start from now on. */
		usv_scp_peer peers[USV_CFG_MAX_PEERS];
		size_t np = scp_peers(next, peers);
		if (usv_scp_set_access(d->scp, peers, np,
		                       (uint64_t)next->spool.min_free_mb * 1048576ull, err,
		                       sizeof err) < 0) {
			usv_log_fields(LOG_ERR, USV_MSGID_RELOAD, NULL, 0,
			               "reload failed (allowed peers), keeping the running "
			               "configuration: %s",
			               err);
			goto ready;
		}
	}
	int tls_reloaded = 0;
	if (d->scp && d->cfg.listen.tls.port) {
		/* Certificates are read again even when their paths did not
		 * change (renewed files); a file that does not load keeps the
		 * running TLS context. */
		usv_scp_tls t;
		char info[512];
		scp_tls(next, &t);
		t.port = d->cfg.listen.tls.port; /* a new port needs a restart */
		if (usv_scp_set_tls(d->scp, &t, err, sizeof err) < 0) {
			usv_log_fields(LOG_ERR, USV_MSGID_RELOAD, NULL, 0,
			               "reload: TLS certificates not replaced, keeping the running "
			               "ones: %s",
			               err);
		} else {
			tls_reloaded = 1;
			if (usv_scp_tls_info(d->scp, info, sizeof info) == 0)
				usv_log(LOG_INFO, "TLS port %d: certificate %s", t.port, info);
		}
	}
	log_config_warnings(next);
	/* workers pick the new settings up at their next batch */
	pthread_mutex_lock(&d->cfg_mu);
	d->cfg = *next;
	old_set = d->settings;
	d->settings = next_set;
	next_set = NULL;
	pthread_mutex_unlock(&d->cfg_mu);
	usv_log_set_level(next->log.level);
	usv_results_index_set_limits(d->index, (uint64_t)next->spool.index_max_mb * 1048576ull,
	                             next->spool.index_keep);
	/* the sweeper reads spool.retention_h from d->cfg at each pass; wake
	 * it so that a new interval or retention applies now */
	pthread_mutex_lock(&d->sweep_mu);
	d->sweep_kick = 1;
	pthread_cond_signal(&d->sweep_cv);
	pthread_mutex_unlock(&d->sweep_mu);
	usv_study_tracker_wake(d->study); /* new quiet period, protocols */
	usv_log_fields(LOG_NOTICE, USV_MSGID_RELOAD, NULL, 0,
	               "configuration reloaded from %s%s%s%s%s", d->opts->config_file,
	               dest_changed ? "; destinations replaced" : "",
	               tls_reloaded ? "; TLS certificates reloaded" : "",
	               changed[0] ? "; needs a restart to change: " : "", changed);
ready:
	free(old_set);
	free(next_set);
	free(next);
	usv_notify_ready("reloaded");
}

/* ---------------- start-up phases ---------------- */

static int fail_start(const char *msg)
{
	usv_log_fields(LOG_ERR, USV_MSGID_START, NULL, 0, "%s", msg);
	return 1;
}

/* Phase 2: signals blocked before any thread exists (taken by
 * sigtimedwait in the main loop), then logging. */
/* The main thread, which takes SIGTERM, SIGINT and SIGHUP with sigtimedwait. */
static pthread_t main_thread;

/* Threads started before main() blocked the signals (OpenBLAS starts its
 * own when the library loads) leave them unblocked, so the kernel may hand
 * a process-directed signal to one of them while the main thread is not
 * in sigtimedwait; its default action would end the process at once,
 * without the clean stop. This handler only runs in such a thread and
 * passes the signal on to the main thread, where it stays pending until
 * sigtimedwait takes it. pthread_kill is async-signal-safe. */
static void forward_signal(int sig)
{
	int saved = errno;

	pthread_kill(main_thread, sig);
	errno = saved;
}

static void init_signals_and_log(struct daemon *d)
{
	struct sigaction sa;

	sigemptyset(&d->signals);
	sigaddset(&d->signals, SIGTERM);
	sigaddset(&d->signals, SIGINT);
	sigaddset(&d->signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &d->signals, NULL);
	main_thread = pthread_self();
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = forward_signal;
	sigfillset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	usv_log_init(d->cfg.log.level, d->cfg.log.journald);
	usv_log_fields(LOG_INFO, USV_MSGID_START, NULL, 0, "usviewd %s starting (config %s)",
	               USV_VERSION_STRING,
	               d->opts->config_file ? d->opts->config_file : "command line");
}

/* Phase 3: process-wide state of the DICOM toolkit, set once before any
 * thread exists. 0 or 1 (logged). */
static int init_process(struct daemon *d)
{
	const struct usv_config *cfg = &d->cfg;
	char err[USV_ERRBUF];
	int r;

	if (usv_dcm_global_init(err, sizeof err) < 0)
		return fail_start(err);
	d->dcm_ready = 1;
	r = usv_scu_global_init(cfg->listen.acse_timeout);
	if (r < 0) {
		snprintf(err, sizeof err, "DICOM network init failed: %s", usv_strerror(r));
		return fail_start(err);
	}
	return 0;
}

/* Phase 4: spool (recovered), results index, metrics. 0 or 1 (logged). */
static int open_state(struct daemon *d)
{
	const struct usv_config *cfg = &d->cfg;
	char err[USV_ERRBUF];
	unsigned rq = 0, rm = 0;
	int r;

	if (usv_spool_open(cfg->spool.dir, &d->spool, err, sizeof err) < 0)
		return fail_start(err);
	r = usv_spool_recover(d->spool, &rq, &rm);
	if (r < 0) {
		snprintf(err, sizeof err, "%.300s: spool recovery failed: %s", cfg->spool.dir,
		         usv_strerror(r));
		return fail_start(err);
	}
	usv_log(LOG_INFO, "spool %s recovered: %u requeued, %u removed", cfg->spool.dir, rq, rm);
	if (usv_results_index_open(cfg->spool.dir, &d->index, err, sizeof err) < 0)
		return fail_start(err);
	usv_results_index_set_limits(d->index, (uint64_t)cfg->spool.index_max_mb * 1048576ull,
	                             cfg->spool.index_keep);
	r = usv_metrics_new(&d->metrics);
	if (r < 0) {
		snprintf(err, sizeof err, "metrics: %s", usv_strerror(r));
		return fail_start(err);
	}
	return 0;
}

/* Phase 5: the model, when one is configured (the BLAS thread count is
 * process-wide and set before any worker exists). 0 or 1 (logged). */
static int load_model(struct daemon *d)
{
	const struct usv_config *cfg = &d->cfg;
	char err[USV_ERRBUF];

	if (!cfg->model.path[0]) {
		usv_log(LOG_WARNING, "no model configured (model.path): receiving only");
		return 0;
	}
	/* process setting, once, before the workers: OpenBLAS
	 * single-threaded; each worker's session splits its layers
	 * over its own model.threads threads */
	usv_nn_set_threads(1);
	usv_model_opts mo = usv_model_opts_default();
	if (cfg->model.precision == USV_CFG_PRECISION_BF16)
		mo.bf16 = USV_BF16_FC;
	if (usv_model_load_ex(cfg->model.path, &mo, &d->model, err, sizeof err) < 0) {
		char msg[USV_ERRBUF + 256];
		snprintf(msg, sizeof msg,
		         "model.path %s: install a model file there or set model.path in %s", err,
		         d->opts->config_file ? d->opts->config_file
		                              : "a -c FILE (or --model FILE)");
		return fail_start(msg);
	}
	const usv_model_meta *m = usv_model_get_meta(d->model);
	usv_metrics_set_model(d->metrics, m->sha256, m->arch, m->name);
	usv_log(LOG_INFO, "model %s: %s (%s, %d labels, sha256 %s)", cfg->model.path, m->name,
	        m->arch, m->n_labels, m->sha256);
	return 0;
}

/* Phase 6: worker settings and destinations from the configuration, and
 * the sender for those destinations. 0 or 1 (logged). */
static int start_sender(struct daemon *d)
{
	char err[USV_ERRBUF];

	d->settings = malloc(sizeof *d->settings);
	if (!d->settings)
		return fail_start("out of memory");
	if (usv_worker_settings_from_config(&d->cfg, d->settings, err, sizeof err) < 0 ||
	    make_sender(d, &d->settings->routes, &d->sender, err, sizeof err) < 0)
		return fail_start(err);
	return 0;
}

/* The QA study tracker: gets the current settings under cfg_mu. */
static void get_study_settings(void *ctx, struct usv_study_settings *out)
{
	struct daemon *d = ctx;

	pthread_mutex_lock(&d->cfg_mu);
	usv_study_settings_from_config(&d->cfg, &d->settings->routes, out);
	pthread_mutex_unlock(&d->cfg_mu);
}

static void study_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	usv_log(level, "qa: %s", msg);
}

/* worker.h on_instance: each finished instance to the study tracker, or
 * (results.backend: postgresql) a nudge to the copier: the database keeps
 * the studies then */
static int on_qa_instance(void *ctx, const struct usv_qa_instance *qi)
{
	struct daemon *d = ctx;

	if (d->db) {
		usv_results_db_wake(d->db);
		return 0;
	}
	return d->study ? usv_study_note(d->study, qi) : 0;
}

/* worker.h match_protocol: the first configured protocol of an instance */
static void match_protocol(void *ctx, const char *sd, const char *rpd, const char *pn, char *name,
                           size_t len)
{
	struct daemon *d = ctx;

	pthread_mutex_lock(&d->cfg_mu);
	struct usv_study_settings set = {.n_protocols = d->cfg.n_protocols};
	int p = -1;
	if (set.n_protocols > 0 && set.n_protocols <= USV_CFG_MAX_PROTOCOLS) {
		memcpy(set.protocols, d->cfg.protocols,
		       (size_t)set.n_protocols * sizeof set.protocols[0]);
		p = usv_study_protocol_index(&set, sd, rpd, pn);
	}
	snprintf(name, len, "%s", p >= 0 ? set.protocols[p].name : "");
	pthread_mutex_unlock(&d->cfg_mu);
}

static int db_quiet_s(void *ctx)
{
	struct daemon *d = ctx;

	pthread_mutex_lock(&d->cfg_mu);
	int q = d->cfg.qa.study_quiet_s;
	pthread_mutex_unlock(&d->cfg_mu);
	return q;
}

static void db_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	usv_log(level, "%s", msg);
}

/* Before the workers: the study tracker (recovers <spool>/studies/). 0 or
 * 1 (logged). */
static int start_study(struct daemon *d)
{
	char err[USV_ERRBUF];
	struct usv_study_env env = {
	    .spool = d->spool,
	    .index = d->index,
	    .model_sha256 = d->model ? usv_model_get_meta(d->model)->sha256 : "",
	    .software_version = USV_VERSION_STRING,
	    .get_settings = get_study_settings,
	    .on_output = on_output,
	    .log = study_log,
	    .ctx = d,
	};
	/* with a results database the studies live there: the tracker only
	 * builds records and SRs for the database's passes */
	env.no_thread = d->cfg.results.backend == USV_CFG_RESULTS_POSTGRESQL;
	if (usv_study_tracker_open(&env, &d->study, err, sizeof err) < 0)
		return fail_start(err);
	if (env.no_thread) {
		struct usv_results_db_env denv = {
		    .spool_dir = d->cfg.spool.dir,
		    .dsn = d->cfg.results.dsn,
		    .node = d->cfg.results.node,
		    .study = d->study,
		    .quiet_s = db_quiet_s,
		    .log = db_log,
		    .ctx = d,
		};
		if (usv_results_db_open(&denv, &d->db, err, sizeof err) < 0)
			return fail_start(err);
	}
	return 0;
}

/* Phase 7: the worker pool, when there is a model. 0 or 1 (logged). */
static int start_workers(struct daemon *d)
{
	const struct usv_config *cfg = &d->cfg;
	char err[USV_ERRBUF];

	if (!d->model)
		return 0;
	/* the view table of the technologist's labels: loaded once (qa.views
	 * is not reloadable), used by the workers while qa.labels is on */
	if (cfg->qa.views[0]) {
		char lerr[USV_ERRBUF - 16];
		if (usv_label_table_load(cfg->qa.views, &d->label_table, lerr, sizeof lerr) < 0) {
			/* lerr names the file (and the line) */
			snprintf(err, sizeof err, "qa.views: %s", lerr);
			return fail_start(err);
		}
	} else if (usv_label_table_default(&d->label_table) < 0) {
		return fail_start("qa: the built-in view table: out of memory");
	}
	struct usv_worker_env env = {
	    .spool = d->spool,
	    .model = d->model,
	    .index = d->index,
	    .metrics = d->metrics,
	    .workers = cfg->model.workers,
	    .batch_size = cfg->model.batch_size,
	    .threads = cfg->model.threads,
	    .get_settings = get_settings,
	    .on_output = on_output,
	    .on_instance = on_qa_instance,
	    .match_protocol = match_protocol,
	    .label_table = d->label_table,
	    .ctx = d,
	    .software_version = USV_VERSION_STRING,
	};
	if (start_study(d) != 0)
		return 1;
	if (usv_worker_pool_start(&env, &d->pool, err, sizeof err) < 0)
		return fail_start(err);
	return 0;
}

/* ---------------- retention sweep ---------------- */

/* Deletions per pass: a pass over a large backlog stops there and the next
 * one follows a second later, so no pass holds the disk for long. */
#define SWEEP_MAX 5000

/* The sweeper thread: one pass at start, then every
 * spool.sweep_interval_s (1 s while a pass hit SWEEP_MAX), with the
 * retention read from the live configuration at each pass (SIGHUP). */
static void *sweep_main(void *arg)
{
	struct daemon *d = arg;
	int wait_s = 0;

	pthread_mutex_lock(&d->sweep_mu);
	for (;;) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += wait_s;
		while (!d->sweep_stop && !d->sweep_kick &&
		       pthread_cond_timedwait(&d->sweep_cv, &d->sweep_mu, &until) != ETIMEDOUT)
			;
		if (d->sweep_stop)
			break;
		d->sweep_kick = 0;
		pthread_mutex_unlock(&d->sweep_mu);

		struct usv_spool_retention ret;
		pthread_mutex_lock(&d->cfg_mu);
		ret.done_h = d->cfg.spool.retention_h.done;
		ret.sent_h = d->cfg.spool.retention_h.sent;
		ret.excluded_h = d->cfg.spool.retention_h.excluded;
		ret.failed_h = d->cfg.spool.retention_h.failed;
		ret.dead_h = d->cfg.spool.retention_h.dead;
		wait_s = d->cfg.spool.sweep_interval_s;
		pthread_mutex_unlock(&d->cfg_mu);

		struct usv_spool_swept sw;
		int r = usv_spool_sweep(d->spool, &ret, time(NULL), SWEEP_MAX, &sw);
		const unsigned n[5] = {sw.done, sw.sent, sw.excluded, sw.failed, sw.dead};
		unsigned total = 0;
		for (int i = 0; i < 5; i++) {
			atomic_fetch_add(&d->purged[i], n[i]);
			total += n[i];
		}
		if (r < 0)
			usv_log(LOG_WARNING, "retention sweep: %s", usv_strerror(r));
		if (total)
			usv_log(LOG_INFO,
			        "retention sweep: removed %u (done %u, sent %u, excluded %u, "
			        "failed %u, dead %u)%s",
			        total, n[0], n[1], n[2], n[3], n[4],
			        sw.more ? "; more to remove" : "");
		if (sw.more)
			wait_s = 1;
		pthread_mutex_lock(&d->sweep_mu);
	}
	pthread_mutex_unlock(&d->sweep_mu);
	return NULL;
}

/* Phase 7b: the retention sweeper. 0 or 1 (logged). */
static int start_sweeper(struct daemon *d)
{
	int r = pthread_create(&d->sweeper, NULL, sweep_main, d);
	if (r) {
		char err[USV_ERRBUF];
		snprintf(err, sizeof err, "retention sweeper: %s", strerror(r));
		return fail_start(err);
	}
	d->sweeper_started = 1;
	return 0;
}

static void stop_sweeper(struct daemon *d)
{
	if (!d->sweeper_started)
		return;
	pthread_mutex_lock(&d->sweep_mu);
	d->sweep_stop = 1;
	pthread_cond_signal(&d->sweep_cv);
	pthread_mutex_unlock(&d->sweep_mu);
	pthread_join(d->sweeper, NULL);
	d->sweeper_started = 0;
}

/* Phase 8: the storage SCP (once it is bound we are ready) and the HTTP
 * endpoint. 0 or 1 (logged). */
static int start_listeners(struct daemon *d)
{
	const struct usv_config *cfg = &d->cfg;
	const struct opts *o = d->opts;
	char err[USV_ERRBUF];
	usv_scp_config sc;
	usv_scp_peer peers[USV_CFG_MAX_PEERS];
	usv_scp_sink sink;
	usv_scp_callbacks cbs = {
	    .ctx = d, .on_stored = on_stored, .on_assoc = on_assoc, .on_instance = on_instance};

	usv_scp_config_init(&sc);
	sc.bind_addr = cfg->listen.bind;
	sc.port = cfg->listen.port;
	sc.aet = cfg->listen.ae_title;
	sc.peers = peers;
	sc.npeers = scp_peers(cfg, peers);
	sc.max_assoc = cfg->listen.max_associations; /* the table's bound is the SCP's */
	sc.acse_timeout_s = cfg->listen.acse_timeout;
	sc.dimse_timeout_s = cfg->listen.dimse_timeout;
	sc.max_pdu = (unsigned)cfg->listen.max_pdu;
	sc.max_pending_per_address = cfg->listen.max_pending_per_address;
	sc.max_assoc_per_address = cfg->listen.max_associations_per_address;
	const char *proxies[USV_CFG_MAX_PROXIES];
	for (int i = 0; i < cfg->listen.n_proxy_protocol_from; i++)
		proxies[i] = cfg->listen.proxy_protocol_from[i];
	sc.proxy_from = proxies;
	sc.nproxy_from = (size_t)cfg->listen.n_proxy_protocol_from;
	sc.extra_sop_classes = o->extra_sop;
	sc.nextra = (size_t)o->nextra;
	sc.min_free_bytes = (uint64_t)cfg->spool.min_free_mb * 1048576ull;
	scp_tls(cfg, &sc.tls);
	log_config_warnings(cfg);
	usv_receiver_sink(d->spool, &sink);
	if (usv_scp_start(&sc, &cbs, &sink, &d->scp, err, sizeof err) < 0)
		return fail_start(err);
	if (cfg->listen.tls.port) {
		char info[512] = "";
		usv_scp_tls_info(d->scp, info, sizeof info);
		usv_log(LOG_NOTICE, "DICOM TLS on %s:%d (%s%s), certificate %s", cfg->listen.bind,
		        cfg->listen.tls.port,
		        usv_config_enum_name("listen.tls.profile", cfg->listen.tls.profile),
		        cfg->listen.tls.require_client_certificate ? ", client certificate required"
		                                                   : "",
		        info);
	}
	if (cfg->http.enabled &&
	    usv_http_start(cfg->http.bind, cfg->http.port, d->metrics, metrics_extra, health, d,
	                   &d->http, err, sizeof err) < 0)
		return fail_start(err);
	if (d->http && cfg->http.qa) {
		struct usv_qa_web_opts qo = {
		    .spool_dir = cfg->spool.dir,
		    .spool = d->spool,
		    .token_file = cfg->http.token_file,
		    .get_settings = get_settings,
		    .ctx = d,
		    .preload = 1,
		    .dsn = cfg->results.backend == USV_CFG_RESULTS_POSTGRESQL ? cfg->results.dsn
		                                                              : NULL};
		if (usv_qa_web_new(&qo, &d->qa, err, sizeof err) < 0)
			return fail_start(err);
		usv_http_set_route(d->http, "/qa", usv_qa_web_route, d->qa);
	} else if (cfg->http.qa) {
		usv_log(LOG_WARNING, "http.qa is on but http.enabled is off: no QA pages");
	}
	char where[64];
	if (cfg->listen.port)
		snprintf(where, sizeof where, "%d", cfg->listen.port);
	else
		snprintf(where, sizeof where, "%d (TLS only)", cfg->listen.tls.port);
	usv_log_fields(LOG_NOTICE, USV_MSGID_START, NULL, 0,
	               "listening on %s:%s as %s, spool %s%s%s", cfg->listen.bind, where,
	               cfg->listen.ae_title, cfg->spool.dir, d->http ? ", http on " : "",
	               d->http ? cfg->http.bind : "");
	return 0;
}

/* After SIGTERM: the listener stops accepting at once (/healthz says
 * "draining"), associations in progress get listen.drain_timeout_s to
 * finish (a second SIGTERM or SIGINT cuts that short), then the rest are
 * aborted. The watchdog is fed meanwhile. */
static void drain(struct daemon *d)
{
	int n, limit = d->cfg.listen.drain_timeout_s;
	double t0 = mono(), last_wd = t0;
	uint64_t wd_usec = 0;
	int wd = usv_notify_watchdog_usec(&wd_usec);

	if (!d->scp)
		return;
	usv_scp_drain(d->scp);
	n = usv_scp_in_progress(d->scp);
	usv_log(LOG_NOTICE,
	        "draining: listener closed, %d association(s) in progress, waiting up to %d s", n,
	        limit);
	while ((n = usv_scp_in_progress(d->scp)) > 0 && mono() - t0 < limit) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		int sig = sigtimedwait(&d->signals, NULL, &ts);
		if (wd && mono() - last_wd >= wd_usec / 2e6) {
			usv_notify_watchdog();
			last_wd = mono();
		}
		if (sig == SIGTERM || sig == SIGINT)
			break;
	}
	if (n > 0) {
		usv_log(LOG_WARNING, "draining: aborting %d association(s) after %.1f s",
		        usv_scp_abort(d->scp), mono() - t0);
		/* they end at their next read; the SCP's stop joins them */
	} else {
		usv_log(LOG_NOTICE, "draining: done after %.1f s", mono() - t0);
	}
}

/* Phase 9: READY=1, then signals, watchdog and STATUS= until SIGTERM or
 * SIGINT. */
static void main_loop(struct daemon *d)
{
	char status[512];
	uint64_t wd_usec = 0, last_done = 0;
	int wd;
	double wd_every, last_wd = 0, last_status;

	/* Work left in incoming/ from before the restart. */
	usv_worker_pool_wake(d->pool);
	status_line(d, status, sizeof status, 0);
	usv_notify_ready(status);

	wd = usv_notify_watchdog_usec(&wd_usec);
	wd_every = wd ? wd_usec / 2e6 : 0;
	last_status = mono();
	for (;;) {
		struct timespec ts = {1, 0};
		int sig;

		if (wd && wd_every < 1.0) {
			ts.tv_sec = 0;
			ts.tv_nsec = (long)(wd_every * 1e9);
		}
		sig = sigtimedwait(&d->signals, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			usv_log_fields(LOG_NOTICE, USV_MSGID_START, NULL, 0, "signal %d, stopping",
			               sig);
			break;
		}
		if (sig == SIGHUP)
			reload(d);
		double now = mono();
		if (wd && now - last_wd >= wd_every) {
			char why[256];
			if (health(d, why, sizeof why) == 0) {
				usv_notify_watchdog();
				last_wd = now;
			} else {
				usv_log(LOG_WARNING, "not pinging the watchdog: %s", why);
			}
		}
		if (now - last_status >= 2.0) {
			uint64_t done = usv_metrics_get(d->metrics, USV_C_INST_DONE);
			status_line(d, status, sizeof status,
			            (double)(done - last_done) / (now - last_status));
			usv_notify_status("%s", status);
			last_done = done;
			last_status = now;
		}
	}
	usv_notify_stopping("stopping: finishing associations and batches");
	drain(d);
}

/* Phase 10: stops and frees whatever was started, in reverse order: the
 * listeners (running associations finish), the workers (their batch
 * finishes), the sender, then the model, index, metrics and spool. */
static void teardown(struct daemon *d)
{
	usv_http_stop(d->http);
	d->http = NULL;
	usv_qa_web_free(d->qa);
	d->qa = NULL;
	usv_scp_stop(d->scp);
	d->scp = NULL;
	usv_worker_pool_stop(d->pool);
	d->pool = NULL;
	usv_label_table_free(d->label_table);
	d->label_table = NULL;
	usv_results_db_free(d->db);
	d->db = NULL;
	usv_study_tracker_free(d->study);
	d->study = NULL;
	stop_sweeper(d);
	pthread_mutex_lock(&d->sender_mu);
	usv_sender_free(d->sender);
	d->sender = NULL;
	pthread_mutex_unlock(&d->sender_mu);
	usv_model_free(d->model);
	d->model = NULL;
	usv_results_index_close(d->index);
	d->index = NULL;
	usv_metrics_free(d->metrics);
	d->metrics = NULL;
	usv_spool_free(d->spool);
	d->spool = NULL;
	free(d->settings);
	d->settings = NULL;
	if (d->dcm_ready)
		usv_dcm_global_cleanup();
	d->dcm_ready = 0;
}

int main(int argc, char **argv)
{
	static struct opts o;
	struct daemon *d = &D;
	int r, rc;

	r = parse_args(argc, argv, &o);
	if (r)
		return r < 0 ? 0 : r;
	d->opts = &o;
	pthread_mutex_init(&d->cfg_mu, NULL);
	pthread_mutex_init(&d->sender_mu, NULL);
	pthread_mutex_init(&d->sweep_mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->sweep_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	r = load_config(d, &o);
	if (r >= 0)
		return r;

	init_signals_and_log(d);
	rc = init_process(d);
	if (!rc)
		rc = open_state(d);
	if (!rc)
		rc = load_model(d);
	if (!rc)
		rc = start_sender(d);
	if (!rc)
		rc = start_workers(d);
	if (!rc)
		rc = start_sweeper(d);
	if (!rc)
		rc = start_listeners(d);
	if (!rc)
		main_loop(d);
	teardown(d);
	if (rc == 0)
		usv_log_fields(LOG_NOTICE, USV_MSGID_START, NULL, 0, "stopped");
	return rc;
}
