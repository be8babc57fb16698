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
 *	instance gets one line in <spool>/results.jsonl.
 *
 *	The configuration is YAML (-c FILE, see packaging/usviewd.yaml);
 *	command-line options override it. Without -c the daemon starts from
 *	the built-in defaults (quick start: --spool, --port and --aet are then
 *	required; without --model it only receives; the HTTP endpoint is off
 *	unless --http-port is given).
 *
 *	Options (each overrides the configuration key named):
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
 * SIGNALS
 *	SIGTERM, SIGINT: STOPPING=1, stop accepting, let running associations
 *	finish, let workers finish their batch, stop the sender, exit 0.
 *	SIGHUP: RELOADING=1, re-read -c FILE; on error keep the running
 *	configuration (logged); else apply the reloadable keys (log level,
 *	destinations, crop rules, frames, exclusion, top_k, batch_wait_ms),
 *	log the keys that need a restart; READY=1.
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
#include "receiver.h"
#include "results_index.h"
#include "sender.h"
#include "spool.h"
#include "worker.h"
#include "usv/config.h"
#include "usv/dcm_scp.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/nn.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#ifndef USV_VERSION
#define USV_VERSION "0.1.0"
#endif

#define MAX_OVERRIDES 64
#define MAX_SENDTO USV_CFG_MAX_DESTS

struct override {
	const char *key;
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

/* The daemon's shared state. cfg is read by workers (get_config) and the
 * reload path under cfg_mu. */
struct daemon {
	pthread_mutex_t cfg_mu;
	struct usv_config cfg;
	struct opts *opts;
	usv_spool *spool;
	usv_model *model;
	struct usv_results_index *index;
	struct usv_metrics *metrics;
	struct usv_worker_pool *pool;
	usv_sender *sender;
	pthread_mutex_t sender_mu;
	usv_scp *scp;
	struct usv_http *http;
};

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

static int add_override(struct opts *o, const char *key, const char *value)
{
	if (o->nov == MAX_OVERRIDES) {
		fprintf(stderr, "usviewd: too many options\n");
		return -1;
	}
	o->ov[o->nov].key = key;
	snprintf(o->ov[o->nov].value, sizeof o->ov[o->nov].value, "%s", value);
	o->nov++;
	return 0;
}

/* Returns 0 to run, 1/2 to exit with that status (after printing). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct {
		const char *opt;
		const char *key;
	} simple[] = {
	    {"--spool", "spool.dir"},
	    {"--port", "listen.port"},
	    {"--aet", "listen.ae_title"},
	    {"--bind", "listen.bind"},
	    {"--max-assoc", "listen.max_associations"},
	    {"--acse-timeout", "listen.acse_timeout"},
	    {"--dimse-timeout", "listen.dimse_timeout"},
	    {"--max-pdu", "listen.max_pdu"},
	    {"--model", "model.path"},
	    {"--workers", "model.workers"},
	    {"--batch-size", "model.batch_size"},
	    {"--log-level", "log.level"},
	};

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int used = 0;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return -1;
		}
		if (!strcmp(a, "--version")) {
			printf("usviewd %s\n", USV_VERSION);
			return -1;
		}
		if (!strcmp(a, "--check-config")) {
			o->check = 1;
			continue;
		}
		if (!strcmp(a, "--dump-config")) {
			o->dump = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "usviewd: %s: missing value or unknown option\n", a);
			usage(stderr);
			return 2;
		}
		for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++)
			if (!strcmp(a, simple[k].opt)) {
				if (add_override(o, simple[k].key, v) < 0)
					return 2;
				used = 1;
			}
		if (used) {
			i++;
			continue;
		}
		if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			o->config_file = v;
		} else if (!strcmp(a, "--send-to")) {
			if (o->nsend_to == MAX_SENDTO) {
				fprintf(stderr, "usviewd: too many --send-to\n");
				return 2;
			}
			o->send_to[o->nsend_to++] = v;
		} else if (!strcmp(a, "--allow")) {
			if (o->nallow == USV_CFG_MAX_PEERS) {
				fprintf(stderr, "usviewd: too many --allow\n");
				return 2;
			}
			o->allow[o->nallow++] = v;
		} else if (!strcmp(a, "--sop-class")) {
			if (o->nextra == USV_SCP_MAX_EXTRA_SOP) {
				fprintf(stderr, "usviewd: too many --sop-class\n");
				return 2;
			}
			o->extra_sop[o->nextra++] = v;
		} else if (!strcmp(a, "--min-free")) {
			char *end;
			errno = 0;
			unsigned long long b = strtoull(v, &end, 10);
			char mb[32];
			if (*v == '-' || !*v || *end || errno) {
				fprintf(stderr, "usviewd: --min-free: bad number '%s'\n", v);
				return 2;
			}
			snprintf(mb, sizeof mb, "%llu", (b + 1048575) / 1048576);
			if (add_override(o, "spool.min_free_mb", mb) < 0)
				return 2;
		} else if (!strcmp(a, "--http-port")) {
			if (add_override(o, "http.port", v) < 0 ||
			    add_override(o, "http.enabled", "true") < 0)
				return 2;
			o->http_given = 1;
		} else if (!strcmp(a, "--set")) {
			const char *eq = strchr(v, '=');
			static char keys[MAX_OVERRIDES][128];
			if (!eq || eq == v || (size_t)(eq - v) >= sizeof keys[0]) {
				fprintf(stderr, "usviewd: --set %s: expected KEY=VALUE\n", v);
				return 2;
			}
			memcpy(keys[o->nov], v, (size_t)(eq - v));
			keys[o->nov][eq - v] = 0;
			if (add_override(o, keys[o->nov], eq + 1) < 0)
				return 2;
		} else {
			fprintf(stderr, "usviewd: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	return 0;
}

/* Command-line values over cfg (file or defaults). */
static int apply_overrides(const struct opts *o, struct usv_config *cfg, char *err, size_t errlen)
{
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
			if (al < 1 || al > 16 || (at && strlen(at + 1) >= sizeof p->host))
				return usv_seterr(err, errlen, -EINVAL,
				                  "--allow %s: expected AET[@ADDR]", o->allow[i]);
			memset(p, 0, sizeof *p);
			memcpy(p->ae_title, o->allow[i], al);
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

/* ---------------- callbacks ---------------- */

static struct daemon D;

static void get_config(void *ctx, struct usv_config *out)
{
	struct daemon *d = ctx;

	pthread_mutex_lock(&d->cfg_mu);
	*out = d->cfg;
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
	char f[10][160];
	const char *fields[10];

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
	for (int i = 0; i < 10; i++)
		fields[i] = f[i];
	usv_log_fields(r->accepted ? LOG_INFO : LOG_WARNING, USV_MSGID_ASSOC, fields, 10,
	               "association %s from %s@%s: %s, %u stored, %u failed", r->called_aet,
	               r->calling_aet, r->peer_addr, r->outcome, r->n_stored, r->n_failed);
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

static int make_sender(struct daemon *d, const struct usv_config *cfg, usv_sender **out, char *err,
                       size_t errlen)
{
	usv_dest dests[USV_CFG_MAX_DESTS];
	usv_sender_opts so;

	*out = NULL;
	if (cfg->n_destinations == 0)
		return 0;
	memset(dests, 0, sizeof dests);
	for (int i = 0; i < cfg->n_destinations; i++) {
		const struct usv_config_dest *c = &cfg->destinations[i];
		usv_dest *u = &dests[i];
		snprintf(u->name, sizeof u->name, "%s", c->name);
		snprintf(u->called_ae, sizeof u->called_ae, "%s", c->ae_title);
		snprintf(u->host, sizeof u->host, "%s", c->host);
		u->port = (uint16_t)c->port;
		snprintf(u->calling_ae, sizeof u->calling_ae, "%s", cfg->listen.ae_title);
		u->kinds = (unsigned)c->send;
		u->nsop = (uint32_t)c->n_sop_classes;
		for (int k = 0; k < c->n_sop_classes; k++)
			snprintf(u->sop_classes[k], sizeof u->sop_classes[k], "%s",
			         c->sop_classes[k]);
		u->max_attempts = (uint32_t)c->max_attempts;
		u->max_age_s = c->max_age_h * 3600.0;
		u->backoff_base_s = c->backoff_initial_s;
		u->backoff_max_s = c->backoff_max_s;
		u->acse_timeout_s = cfg->listen.acse_timeout;
		u->dimse_timeout_s = cfg->listen.dimse_timeout;
	}
	memset(&so, 0, sizeof so);
	so.log = sender_log;
	so.log_ctx = d;
	int r =
	    usv_sender_create(d->spool, dests, (size_t)cfg->n_destinations, &so, out, err, errlen);
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
	}
	usv_metrics_family(f, "usview_workers_inflight", "gauge",
	                   "Instances claimed by workers and not finished.");
	fprintf(f, "usview_workers_inflight %d\n", usv_worker_pool_inflight(d->pool));

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
					usv_outbox_item *items = NULL;
					size_t ni = 0;
					if (usv_spool_outbox_list(d->spool, dd.name, &items, &ni) <
					    0)
						continue;
					free(items);
					v = ni;
				} else {
					v = k == 1 ? c.sent : k == 2 ? c.retries : c.dead;
				}
				fprintf(f, "%s{destination=\"%s\"} %llu\n", fam[k][0], dd.name, v);
			}
		}
	}
	pthread_mutex_unlock(&d->sender_mu);
	return 0;
}

static int health(void *ctx, char *why, size_t whylen)
{
	struct daemon *d = ctx;

	if (!d->scp)
		return usv_seterr(why, whylen, -EIO, "listener not running");
	if (d->model && !d->pool)
		return usv_seterr(why, whylen, -EIO, "workers not running");
	if (d->pool)
		return usv_worker_pool_health(d->pool, 60.0, why, whylen);
	return 0;
}

/* ---------------- reload ---------------- */

static void reload(struct daemon *d)
{
	char err[USV_ERRBUF], changed[512] = "";
	struct usv_config *next = malloc(sizeof *next);
	int r;

	usv_notify_reloading();
	if (!next) {
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
		r = make_sender(d, next, &ns, err, sizeof err);
		if (r < 0) {
			char err2[USV_ERRBUF];
			usv_log_fields(LOG_ERR, USV_MSGID_RELOAD, NULL, 0,
			               "reload failed (destinations), keeping the running "
			               "configuration: %s",
			               err);
			pthread_mutex_lock(&d->cfg_mu);
			*next = d->cfg;
			pthread_mutex_unlock(&d->cfg_mu);
			if (make_sender(d, next, &ns, err2, sizeof err2) < 0)
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
		for (int i = 0; i < next->n_allowed_peers; i++) {
			memset(&peers[i], 0, sizeof peers[i]);
			snprintf(peers[i].aet, sizeof peers[i].aet, "%s",
			         next->allowed_peers[i].ae_title);
			snprintf(peers[i].addr, sizeof peers[i].addr, "%s",
			         next->allowed_peers[i].host);
		}
		if (usv_scp_set_access(d->scp, peers, (size_t)next->n_allowed_peers,
		                       (uint64_t)next->spool.min_free_mb * 1048576ull, err,
		                       sizeof err) < 0) {
			usv_log_fields(LOG_ERR, USV_MSGID_RELOAD, NULL, 0,
			               "reload failed (allowed peers), keeping the running "
			               "configuration: %s",
			               err);
			goto ready;
		}
	}
	pthread_mutex_lock(&d->cfg_mu);
	d->cfg = *next;
	pthread_mutex_unlock(&d->cfg_mu);
	usv_log_set_level(next->log.level);
	usv_log_fields(LOG_NOTICE, USV_MSGID_RELOAD, NULL, 0,
	               "configuration reloaded from %s%s%s%s", d->opts->config_file,
	               dest_changed ? "; destinations replaced" : "",
	               changed[0] ? "; needs a restart to change: " : "", changed);
ready:
	free(next);
	usv_notify_ready("reloaded");
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

static int fail_start(const char *msg)
{
	usv_log_fields(LOG_ERR, USV_MSGID_START, NULL, 0, "%s", msg);
	return 1;
}

int main(int argc, char **argv)
{
	static struct opts o;
	char err[USV_ERRBUF];
	struct daemon *d = &D;
	int r, rc = 0;

	r = parse_args(argc, argv, &o);
	if (r)
		return r < 0 ? 0 : r;
	d->opts = &o;
	pthread_mutex_init(&d->cfg_mu, NULL);
	pthread_mutex_init(&d->sender_mu, NULL);

	usv_config_defaults(&d->cfg);
	if (o.config_file) {
		r = usv_config_load_file(o.config_file, &d->cfg, err, sizeof err);
		if (r < 0) {
			fprintf(stderr, "usviewd: %s\n", err);
			return 1;
		}
	} else if (!o.check && !o.dump) {
		/* quick start: the spool, port and AE title must be explicit */
		int have[3] = {0, 0, 0};
		for (int i = 0; i < o.nov; i++) {
			have[0] |= !strcmp(o.ov[i].key, "spool.dir");
			have[1] |= !strcmp(o.ov[i].key, "listen.port");
			have[2] |= !strcmp(o.ov[i].key, "listen.ae_title");
		}
		if (!have[0] || !have[1] || !have[2]) {
			usage(stderr);
			return 2;
		}
	}
	r = apply_overrides(&o, &d->cfg, err, sizeof err);
	if (r < 0) {
		fprintf(stderr, "usviewd: %s\n", err);
		return o.config_file ? 1 : 2;
	}
	if (o.check) {
		printf("usviewd: %s: configuration OK\n",
		       o.config_file ? o.config_file : "(defaults)");
		return 0;
	}
	if (o.dump)
		return usv_config_dump(&d->cfg, stdout) < 0 ? 1 : 0;

	/* Signals: blocked before any thread exists, taken by sigtimedwait. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct usv_config *cfg = &d->cfg; /* main thread only until workers start */
	usv_log_init(cfg->log.level, cfg->log.journald);
	usv_log_fields(LOG_INFO, USV_MSGID_START, NULL, 0, "usviewd %s starting (config %s)",
	               USV_VERSION, o.config_file ? o.config_file : "command line");

	if (usv_dcm_global_init(err, sizeof err) < 0)
		return fail_start(err);
	r = usv_scu_global_init(cfg->listen.acse_timeout);
	if (r < 0) {
		snprintf(err, sizeof err, "DICOM network init failed: %s", usv_strerror(r));
		rc = fail_start(err);
		goto out_dcm;
	}
	if (usv_spool_open(cfg->spool.dir, &d->spool, err, sizeof err) < 0) {
		rc = fail_start(err);
		goto out_dcm;
	}
	unsigned rq = 0, rm = 0;
	r = usv_spool_recover(d->spool, &rq, &rm);
	if (r < 0) {
		snprintf(err, sizeof err, "%.300s: spool recovery failed: %s", cfg->spool.dir,
		         usv_strerror(r));
		rc = fail_start(err);
		goto out_spool;
	}
	usv_log(LOG_INFO, "spool %s recovered: %u requeued, %u removed", cfg->spool.dir, rq, rm);
	if (usv_results_index_open(cfg->spool.dir, &d->index, err, sizeof err) < 0 ||
	    usv_metrics_new(&d->metrics) < 0) {
		rc = fail_start(err);
		goto out_spool;
	}
	if (cfg->model.path[0]) {
		usv_nn_set_threads(cfg->model.threads);
		/* read when the model is built: kernels for this process */
		usv_nn_set_kernels(1, cfg->model.precision == USV_CFG_PRECISION_BF16);
		if (usv_model_load(cfg->model.path, &d->model, err, sizeof err) < 0) {
			rc = fail_start(err);
			goto out_spool;
		}
		const usv_model_meta *m = usv_model_get_meta(d->model);
		usv_metrics_set_model(d->metrics, m->sha256, m->arch, m->name);
		usv_log(LOG_INFO, "model %s: %s (%s, %d labels, sha256 %s)", cfg->model.path,
		        m->name, m->arch, m->n_labels, m->sha256);
	} else {
		usv_log(LOG_WARNING, "no model configured (model.path): receiving only");
	}
	if (make_sender(d, cfg, &d->sender, err, sizeof err) < 0) {
		rc = fail_start(err);
		goto out_model;
	}
	if (d->model) {
		struct usv_worker_env env = {
		    .spool = d->spool,
		    .model = d->model,
		    .index = d->index,
		    .metrics = d->metrics,
		    .workers = cfg->model.workers,
		    .batch_size = cfg->model.batch_size,
		    .threads = cfg->model.threads,
		    .get_config = get_config,
		    .on_output = on_output,
		    .ctx = d,
		    .software_version = USV_VERSION,
		};
		if (usv_worker_pool_start(&env, &d->pool, err, sizeof err) < 0) {
			rc = fail_start(err);
			goto out_sender;
		}
	}

	/* The listener last: once it is bound we are ready. */
	usv_scp_config sc;
	usv_scp_peer peers[USV_CFG_MAX_PEERS];
	usv_scp_sink sink;
	usv_scp_callbacks cbs = {
	    .ctx = d, .on_stored = on_stored, .on_assoc = on_assoc, .on_instance = on_instance};
	usv_scp_config_init(&sc);
	sc.bind_addr = cfg->listen.bind;
	sc.port = cfg->listen.port;
	sc.aet = cfg->listen.ae_title;
	for (int i = 0; i < cfg->n_allowed_peers; i++) {
		memset(&peers[i], 0, sizeof peers[i]);
		snprintf(peers[i].aet, sizeof peers[i].aet, "%s", cfg->allowed_peers[i].ae_title);
		snprintf(peers[i].addr, sizeof peers[i].addr, "%s", cfg->allowed_peers[i].host);
	}
	sc.peers = peers;
	sc.npeers = (size_t)cfg->n_allowed_peers;
	sc.max_assoc = cfg->listen.max_associations > 64 ? 64 : cfg->listen.max_associations;
	sc.acse_timeout_s = cfg->listen.acse_timeout;
	sc.dimse_timeout_s = cfg->listen.dimse_timeout;
	sc.max_pdu = (unsigned)cfg->listen.max_pdu;
	sc.extra_sop_classes = o.extra_sop;
	sc.nextra = (size_t)o.nextra;
	sc.min_free_bytes = (uint64_t)cfg->spool.min_free_mb * 1048576ull;
	usv_receiver_sink(d->spool, &sink);
	if (usv_scp_start(&sc, &cbs, &sink, &d->scp, err, sizeof err) < 0) {
		rc = fail_start(err);
		goto out_pool;
	}
	if (cfg->http.enabled &&
	    usv_http_start(cfg->http.bind, cfg->http.port, d->metrics, metrics_extra, health, d,
	                   &d->http, err, sizeof err) < 0) {
		rc = fail_start(err);
		goto out_scp;
	}
	usv_log_fields(LOG_NOTICE, USV_MSGID_START, NULL, 0,
	               "listening on %s:%d as %s, spool %s%s%s", cfg->listen.bind, cfg->listen.port,
	               cfg->listen.ae_title, cfg->spool.dir, d->http ? ", http on " : "",
	               d->http ? cfg->http.bind : "");
	/* Work left in incoming/ from before the restart. */
	usv_worker_pool_wake(d->pool);

	char status[512];
	status_line(d, status, sizeof status, 0);
	usv_notify_ready(status);

	uint64_t wd_usec = 0;
	int wd = usv_notify_watchdog_usec(&wd_usec);
	double wd_every = wd ? wd_usec / 2e6 : 0, last_wd = 0, last_status = mono();
	uint64_t last_done = 0;
	for (;;) {
		struct timespec ts = {1, 0};
		int sig;

		if (wd && wd_every < 1.0) {
			ts.tv_sec = 0;
			ts.tv_nsec = (long)(wd_every * 1e9);
		}
		sig = sigtimedwait(&set, NULL, &ts);
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
	usv_http_stop(d->http);
	d->http = NULL;
out_scp:
	usv_scp_stop(d->scp);
	d->scp = NULL;
out_pool:
	usv_worker_pool_stop(d->pool);
	d->pool = NULL;
out_sender:
	pthread_mutex_lock(&d->sender_mu);
	usv_sender_free(d->sender);
	d->sender = NULL;
	pthread_mutex_unlock(&d->sender_mu);
out_model:
	usv_model_free(d->model);
out_spool:
	usv_results_index_close(d->index);
	usv_metrics_free(d->metrics);
	usv_spool_free(d->spool);
out_dcm:
	usv_dcm_global_cleanup();
	if (rc == 0)
		usv_log_fields(LOG_NOTICE, USV_MSGID_START, NULL, 0, "stopped");
	return rc;
}
