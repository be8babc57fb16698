/*
 * NAME
 *	config.c - the usviewd option table and its libyaml walker
 *
 * DESCRIPTION
 *	DESIGN. Everything about an option lives in its table row (name, type,
 *	bounds, offsetof() target, default text, reloadable flag, help), in the
 *	style of redis' config.c and OpenSSH's servconf: defaults, the file
 *	parser, command-line overrides, validation, reload and --dump-config
 *	all walk the same rows, so a new option is one line.
 *
 *	Defaults are YAML text parsed by the same code as the file (a scalar
 *	for most options, a flow sequence for lists such as the crop rules),
 *	so a default can never be something the file could not say.
 *
 *	The file is loaded with yaml_parser_load() into a document; the walker
 *	then visits mappings: a key that names an option is applied, a key
 *	that is the prefix of dotted names ("listen") must hold a mapping and
 *	is walked with that prefix, anything else is an unknown key. Errors
 *	carry the libyaml start mark of the offending node (0-based, printed
 *	1-based) and the dotted key, e.g. "a.yaml:7:11: listen.port: 70000 is
 *	out of range [1, 65535]".
 */
#include "usv/config.h"
#include "usv/dcm_ae.h"
#include "usv/err.h"
#include "usv/proxy_v2.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CFG_FILE_MAX (1u << 20)

#define OFF(f) offsetof(struct usv_config, f)
#define SZ(f) sizeof(((struct usv_config *)0)->f)
#define POFF(f) offsetof(struct usv_config_peer, f)
#define PSZ(f) sizeof(((struct usv_config_peer *)0)->f)
#define COFF(f) offsetof(struct usv_config_crop, f)
#define CSZ(f) sizeof(((struct usv_config_crop *)0)->f)
#define DOFF(f) offsetof(struct usv_config_dest, f)
#define DSZ(f) sizeof(((struct usv_config_dest *)0)->f)

static const char *const precision_names[] = {"fp32", "bf16", NULL};
static const int precision_values[] = {USV_CFG_PRECISION_FP32, USV_CFG_PRECISION_BF16};
static const char *const frames_names[] = {"first", "middle", "every_nth", "all", NULL};
static const int frames_values[] = {USV_CFG_FRAMES_FIRST, USV_CFG_FRAMES_MIDDLE,
                                    USV_CFG_FRAMES_EVERY_NTH, USV_CFG_FRAMES_ALL};
static const char *const backend_names[] = {"jsonl", "postgresql", NULL};
static const int backend_values[] = {USV_CFG_RESULTS_JSONL, USV_CFG_RESULTS_POSTGRESQL};
static const char *const level_names[] = {"error", "warning", "notice", "info", "debug", NULL};
static const int level_values[] = {USV_CFG_LOG_ERR, USV_CFG_LOG_WARNING, USV_CFG_LOG_NOTICE,
                                   USV_CFG_LOG_INFO, USV_CFG_LOG_DEBUG};
static const char *const send_names[] = {"sr", "tagged", "study_sr", NULL};
/* the retired Basic and AES profiles are not offered (weak ciphers) */
static const char *const tls_profile_names[] = {"bcp195", "bcp195-nd", "bcp195-ex", NULL};
static const int tls_profile_values[] = {USV_CFG_TLS_BCP195, USV_CFG_TLS_BCP195_ND,
                                         USV_CFG_TLS_BCP195_EX};
static const int send_values[] = {USV_CFG_SEND_SR, USV_CFG_SEND_TAGGED, USV_CFG_SEND_STUDY_SR};

static int check_cidr(const void *item, char *why, size_t whylen)
{
	usv_cidr4 c;
	return usv_cidr4_parse(item, &c, why, whylen);
}

static int check_crop(const void *item, char *why, size_t whylen)
{
	const struct usv_config_crop *c = item;
	int x = c->x < 0 ? (c->cols - c->width) / 2 : c->x;
	int y = c->y < 0 ? (c->rows - c->height) / 2 : c->y;

	if (c->width > c->cols || c->height > c->rows)
		return usv_seterr(why, whylen, -EINVAL, "crop %dx%d larger than the image %dx%d",
		                  c->width, c->height, c->cols, c->rows);
	if (x + c->width > c->cols || y + c->height > c->rows)
		return usv_seterr(why, whylen, -EINVAL,
		                  "crop (%d,%d) %dx%d does not fit in the image %dx%d", x, y,
		                  c->width, c->height, c->cols, c->rows);
	return 0;
}

static int check_dest(const void *item, char *why, size_t whylen)
{
	const struct usv_config_dest *d = item;

	if (d->backoff_initial_s > d->backoff_max_s)
		return usv_seterr(why, whylen, -EINVAL,
		                  "backoff_initial_s (%d) is larger than backoff_max_s (%d)",
		                  d->backoff_initial_s, d->backoff_max_s);
	if (d->send == 0)
		return usv_seterr(why, whylen, -EINVAL,
		                  "send is empty (use sr, tagged and/or study_sr)");
	if (!d->tls.certificate[0] != !d->tls.private_key[0])
		return usv_seterr(why, whylen, -EINVAL,
		                  "tls.certificate and tls.private_key go together");
	if (d->tls.certificate[0] && !d->tls.ca_file[0])
		return usv_seterr(why, whylen, -EINVAL,
		                  "tls.ca_file is required for TLS (the peer's certificate is "
		                  "verified against it)");
	return 0;
}

#define PROFF(f) offsetof(struct usv_config_protocol, f)
#define PRSZ(f) sizeof(((struct usv_config_protocol *)0)->f)

static int check_protocol(const void *item, char *why, size_t whylen)
{
	const struct usv_config_protocol *p = item;

	if (!strcmp(p->name, "default"))
		return usv_seterr(why, whylen, -EINVAL,
		                  "the name \"default\" is the built-in protocol's");
	for (int i = 0; i < p->n_match; i++)
		if (!p->match[i][0])
			return usv_seterr(why, whylen, -EINVAL, "match[%d] is empty", i);
	for (int i = 0; i < p->n_required_views; i++) {
		if (!p->required_views[i][0])
			return usv_seterr(why, whylen, -EINVAL, "required_views[%d] is empty", i);
		for (int j = 0; j < i; j++)
			if (!strcmp(p->required_views[i], p->required_views[j]))
				return usv_seterr(why, whylen, -EINVAL,
				                  "required_views lists %s twice",
				                  p->required_views[i]);
	}
	return 0;
}

static const struct usv_config_option protocol_opts[] = {
    {.name = "name",
     .type = USV_CFG_IDENT,
     .offset = PROFF(name),
     .size = PRSZ(name),
     .flags = USV_CFG_REQUIRED,
     .help = "protocol name (in study records and the study SR)"},
    {.name = "match",
     .type = USV_CFG_STRLIST,
     .offset = PROFF(match),
     .size = USV_CFG_NAME_MAX,
     .count_offset = PROFF(n_match),
     .max_items = USV_CFG_MAX_MATCH,
     .flags = USV_CFG_REQUIRED,
     .help = "case-insensitive substrings of Study Description, Requested Procedure "
             "Description or Protocol Name"},
    {.name = "required_views",
     .type = USV_CFG_STRLIST,
     .offset = PROFF(required_views),
     .size = USV_CFG_NAME_MAX,
     .count_offset = PROFF(n_required_views),
     .max_items = USV_CFG_MAX_VIEWS,
     .flags = USV_CFG_REQUIRED,
     .help = "class names a complete study shows"},
    {0},
};

static const struct usv_config_option peer_opts[] = {
    {.name = "ae_title",
     .type = USV_CFG_AETITLE,
     .offset = POFF(ae_title),
     .size = PSZ(ae_title),
     .flags = USV_CFG_REQUIRED,
     .help = "calling AE title"},
    {.name = "host",
     .type = USV_CFG_STRING,
     .offset = POFF(host),
     .size = PSZ(host),
     .def = "\"\"",
     .help = "peer IP address; empty = any"},
    {0},
};

static const struct usv_config_option crop_opts[] = {
    {.name = "manufacturer",
     .type = USV_CFG_STRING,
     .offset = COFF(manufacturer),
     .size = CSZ(manufacturer),
     .flags = USV_CFG_REQUIRED,
     .help = "substring of (0008,0070) Manufacturer, case-insensitive"},
    {.name = "model",
     .type = USV_CFG_STRING,
     .offset = COFF(model),
     .size = CSZ(model),
     .def = "\"\"",
     .help = "substring of (0008,1090) model name; empty = any"},
    {.name = "rows",
     .type = USV_CFG_INT,
     .offset = COFF(rows),
     .min = 1,
     .max = 65535,
     .flags = USV_CFG_REQUIRED,
     .help = "image rows"},
    {.name = "cols",
     .type = USV_CFG_INT,
     .offset = COFF(cols),
     .min = 1,
     .max = 65535,
     .flags = USV_CFG_REQUIRED,
     .help = "image columns"},
    {.name = "width",
     .type = USV_CFG_INT,
     .offset = COFF(width),
     .min = 1,
     .max = 65535,
     .flags = USV_CFG_REQUIRED,
     .help = "crop width"},
    {.name = "height",
     .type = USV_CFG_INT,
     .offset = COFF(height),
     .min = 1,
     .max = 65535,
     .flags = USV_CFG_REQUIRED,
     .help = "crop height"},
    {.name = "x",
     .type = USV_CFG_INT,
     .offset = COFF(x),
     .min = -1,
     .max = 65535,
     .def = "-1",
     .help = "left column; -1 = centred"},
    {.name = "y",
     .type = USV_CFG_INT,
     .offset = COFF(y),
     .min = -1,
     .max = 65535,
     .def = "-1",
     .help = "top row; -1 = centred"},
    {0},
};

static const struct usv_config_option dest_opts[] = {
    {.name = "name",
     .type = USV_CFG_IDENT,
     .offset = DOFF(name),
     .size = DSZ(name),
     .flags = USV_CFG_REQUIRED,
     .help = "unique name, also the outbox folder"},
    {.name = "ae_title",
     .type = USV_CFG_AETITLE,
     .offset = DOFF(ae_title),
     .size = DSZ(ae_title),
     .flags = USV_CFG_REQUIRED,
     .help = "called AE title"},
    {.name = "host",
     .type = USV_CFG_STRING,
     .offset = DOFF(host),
     .size = DSZ(host),
     .flags = USV_CFG_REQUIRED,
     .help = "host name or address"},
    {.name = "port",
     .type = USV_CFG_INT,
     .offset = DOFF(port),
     .min = 1,
     .max = 65535,
     .flags = USV_CFG_REQUIRED,
     .help = "TCP port"},
    {.name = "send",
     .type = USV_CFG_FLAGS,
     .offset = DOFF(send),
     .def = "[sr]",
     .names = send_names,
     .values = send_values,
     .help = "what to send: sr, tagged, study_sr"},
    {.name = "sop_classes",
     .type = USV_CFG_STRLIST,
     .offset = DOFF(sop_classes),
     .size = USV_CFG_UID_MAX,
     .count_offset = DOFF(n_sop_classes),
     .max_items = USV_CFG_MAX_SOP_CLASSES,
     .def = "[]",
     .help = "SOP classes of result objects this destination takes; empty = all"},
    {.name = "max_attempts",
     .type = USV_CFG_INT,
     .offset = DOFF(max_attempts),
     .min = 1,
     .max = 1000,
     .def = "10",
     .help = "attempts before dead/"},
    {.name = "backoff_initial_s",
     .type = USV_CFG_INT,
     .offset = DOFF(backoff_initial_s),
     .min = 1,
     .max = 86400,
     .def = "30",
     .help = "first retry delay"},
    {.name = "backoff_max_s",
     .type = USV_CFG_INT,
     .offset = DOFF(backoff_max_s),
     .min = 1,
     .max = 86400,
     .def = "3600",
     .help = "longest retry delay"},
    {.name = "max_age_h",
     .type = USV_CFG_INT,
     .offset = DOFF(max_age_h),
     .min = 1,
     .max = 8760,
     .def = "72",
     .help = "age after which a result goes to dead/"},
    {.name = "tls.ca_file",
     .type = USV_CFG_FILE,
     .offset = DOFF(tls.ca_file),
     .size = DSZ(tls.ca_file),
     .def = "\"\"",
     .help = "DICOM TLS: PEM CA certificates the peer's certificate must chain to; empty = "
             "plain TCP"},
    {.name = "tls.certificate",
     .type = USV_CFG_FILE,
     .offset = DOFF(tls.certificate),
     .size = DSZ(tls.certificate),
     .def = "\"\"",
     .help = "DICOM TLS: our client certificate (PEM); empty = none"},
    {.name = "tls.private_key",
     .type = USV_CFG_FILE,
     .offset = DOFF(tls.private_key),
     .size = DSZ(tls.private_key),
     .def = "\"\"",
     .help = "DICOM TLS: the client certificate's private key (PEM, unencrypted)"},
    {.name = "tls.profile",
     .type = USV_CFG_ENUM,
     .offset = DOFF(tls.profile),
     .names = tls_profile_names,
     .values = tls_profile_values,
     .def = "bcp195",
     .help = "DICOM TLS profile: bcp195, bcp195-nd, bcp195-ex"},
    {0},
};

/* Default crop rules: the fixed centred crops used for images without an
 * ultrasound region (Philips 1024x768 -> 600x600, Toshiba 716x537 ->
 * 372x372). */
#define CROP_DEFAULT                                                                               \
	"[{manufacturer: Philips, rows: 768, cols: 1024, width: 600, height: 600, x: 212, y: "     \
	"84}, "                                                                                    \
	"{manufacturer: TOSHIBA, rows: 537, cols: 716, width: 372, height: 372, x: 172, y: 82}]"

#define R USV_CFG_RELOADABLE

static const struct usv_config_option options[] = {
    {.name = "listen.bind",
     .type = USV_CFG_IPV4,
     .offset = OFF(listen.bind),
     .size = SZ(listen.bind),
     .def = "0.0.0.0",
     .help = "address of the DICOM listener"},
    {.name = "listen.port",
     .type = USV_CFG_INT,
     .offset = OFF(listen.port),
     .min = 0,
     .max = 65535,
     .def = "11112",
     .help = "DICOM port (104 needs CAP_NET_BIND_SERVICE); 0 = none (TLS only)"},
    {.name = "listen.ae_title",
     .type = USV_CFG_AETITLE,
     .offset = OFF(listen.ae_title),
     .size = SZ(listen.ae_title),
     .def = "USVIEW",
     .help = "our (called) AE title"},
    {.name = "listen.max_associations",
     .type = USV_CFG_INT,
     .offset = OFF(listen.max_associations),
     .min = 1,
     .max = 64, /* the storage SCP runs one thread per association, 64 at most */
     .def = "16",
     .help = "concurrent associations; more are rejected transiently"},
    {.name = "listen.acse_timeout",
     .type = USV_CFG_INT,
     .offset = OFF(listen.acse_timeout),
     .min = 1,
     .max = 600,
     .def = "10",
     .help = "seconds"},
    {.name = "listen.dimse_timeout",
     .type = USV_CFG_INT,
     .offset = OFF(listen.dimse_timeout),
     .min = 1,
     .max = 3600,
     .def = "60",
     .help = "seconds"},
    {.name = "listen.max_pdu",
     .type = USV_CFG_INT,
     .offset = OFF(listen.max_pdu),
     .min = 4096,
     .max = 131072,
     .def = "65536",
     .help = "bytes"},
    {.name = "listen.max_pending_per_address",
     .type = USV_CFG_INT,
     .offset = OFF(listen.max_pending_per_address),
     .min = 1,
     .max = 1024,
     .def = "32",
     .help = "connections per peer address whose association request is incomplete; at "
             "the cap the oldest is closed"},
    {.name = "listen.max_associations_per_address",
     .type = USV_CFG_INT,
     .offset = OFF(listen.max_associations_per_address),
     .min = 0,
     .max = 64,
     .def = "0",
     .help = "associations per peer address (0 = no limit beyond max_associations); more "
             "are rejected transiently"},
    {.name = "listen.proxy_protocol_from",
     .type = USV_CFG_STRLIST,
     .offset = OFF(listen.proxy_protocol_from),
     .size = USV_CFG_CIDR_MAX,
     .count_offset = OFF(listen.n_proxy_protocol_from),
     .max_items = USV_CFG_MAX_PROXIES,
     .check = check_cidr,
     .def = "[]",
     .help = "load balancers (IPv4 addresses or a.b.c.d/n) whose connections start with a "
             "PROXY protocol v2 header; [] = off"},
    {.name = "listen.drain_timeout_s",
     .type = USV_CFG_INT,
     .offset = OFF(listen.drain_timeout_s),
     .min = 0,
     .max = 3600,
     .def = "30",
     .help = "on SIGTERM: seconds running associations may take to finish before they "
             "are aborted"},
    {.name = "listen.tls.port",
     .type = USV_CFG_INT,
     .offset = OFF(listen.tls.port),
     .min = 0,
     .max = 65535,
     .def = "0",
     .help = "DICOM TLS port (e.g. 2762); 0 = no TLS"},
    {.name = "listen.tls.certificate",
     .type = USV_CFG_FILE,
     .offset = OFF(listen.tls.certificate),
     .size = SZ(listen.tls.certificate),
     .def = "\"\"",
     .flags = USV_CFG_RELOADABLE,
     .help = "our certificate (PEM, chain allowed); re-read on SIGHUP"},
    {.name = "listen.tls.private_key",
     .type = USV_CFG_FILE,
     .offset = OFF(listen.tls.private_key),
     .size = SZ(listen.tls.private_key),
     .def = "\"\"",
     .flags = USV_CFG_RELOADABLE,
     .help = "its private key (PEM, unencrypted, mode 0600); re-read on SIGHUP"},
    {.name = "listen.tls.ca_file",
     .type = USV_CFG_FILE,
     .offset = OFF(listen.tls.ca_file),
     .size = SZ(listen.tls.ca_file),
     .def = "\"\"",
     .flags = USV_CFG_RELOADABLE,
     .help = "CA certificates (PEM) that client certificates must chain to"},
    {.name = "listen.tls.require_client_certificate",
     .type = USV_CFG_BOOL,
     .offset = OFF(listen.tls.require_client_certificate),
     .def = "true",
     .flags = USV_CFG_RELOADABLE,
     .help = "refuse clients without a certificate from ca_file"},
    {.name = "listen.tls.profile",
     .type = USV_CFG_ENUM,
     .offset = OFF(listen.tls.profile),
     .names = tls_profile_names,
     .values = tls_profile_values,
     .def = "bcp195",
     .flags = USV_CFG_RELOADABLE,
     .help = "bcp195 (TLS 1.2+, falls back to 1.0), bcp195-nd (1.2+ only), bcp195-ex (1.2 "
             "only)"},
    {.name = "allowed_peers",
     .type = USV_CFG_LIST,
     .offset = OFF(allowed_peers),
     .size = sizeof(struct usv_config_peer),
     .count_offset = OFF(n_allowed_peers),
     .max_items = USV_CFG_MAX_PEERS,
     .sub = peer_opts,
     .def = "[]",
     .flags = USV_CFG_RELOADABLE,
     .help = "calling AEs (and hosts) allowed to store; empty = anyone"},
    {.name = "spool.dir",
     .type = USV_CFG_STRING,
     .offset = OFF(spool.dir),
     .size = SZ(spool.dir),
     .def = "/var/lib/usview",
     .help = "spool root"},
    {.name = "spool.min_free_mb",
     .type = USV_CFG_INT,
     .offset = OFF(spool.min_free_mb),
     .min = 0,
     .max = 16777216,
     .def = "1024",
     .flags = USV_CFG_RELOADABLE,
     .help = "refuse associations below this free space"},
    {.name = "spool.retention_h.done",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(spool.retention_h.done),
     .min = 0,
     .max = 876000,
     .def = "24",
     .flags = R,
     .help = "hours to keep classified instances (done/); 0 = for ever"},
    {.name = "spool.retention_h.sent",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(spool.retention_h.sent),
     .min = 0,
     .max = 876000,
     .def = "24",
     .flags = R,
     .help = "hours to keep delivered results (sent/<dest>/); 0 = for ever"},
    {.name = "spool.retention_h.excluded",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(spool.retention_h.excluded),
     .min = 0,
     .max = 876000,
     .def = "168",
     .flags = R,
     .help = "hours to keep instances excluded by policy (excluded/); 0 = for ever"},
    {.name = "spool.retention_h.failed",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(spool.retention_h.failed),
     .min = 0,
     .max = 876000,
     .def = "720",
     .flags = R,
     .help = "hours to keep instances that could not be processed (failed/); 0 = for ever"},
    {.name = "spool.retention_h.dead",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(spool.retention_h.dead),
     .min = 0,
     .max = 876000,
     .def = "720",
     .flags = R,
     .help = "hours to keep results given up (dead/<dest>/); 0 = for ever"},
    {.name = "spool.sweep_interval_s",
     .type = USV_CFG_INT,
     .offset = OFF(spool.sweep_interval_s),
     .min = 1,
     .max = 86400,
     .def = "60",
     .flags = R,
     .help = "seconds between retention sweeps"},
    {.name = "spool.index_max_mb",
     .type = USV_CFG_INT,
     .offset = OFF(spool.index_max_mb),
     .min = 0,
     .max = 1048576,
     .def = "256",
     .flags = R,
     .help = "rotate results.jsonl when it reaches this size in MB; 0 = never"},
    {.name = "spool.index_keep",
     .type = USV_CFG_INT,
     .offset = OFF(spool.index_keep),
     .min = 1,
     .max = 1000,
     .def = "5",
     .flags = R,
     .help = "rotated results files kept (results.jsonl.1 ... .N)"},
    {.name = "results.backend",
     .type = USV_CFG_ENUM,
     .offset = OFF(results.backend),
     .names = backend_names,
     .values = backend_values,
     .def = "jsonl",
     .help = "results index: jsonl (<spool>/results.jsonl only) or postgresql (also a "
             "database shared by several nodes)"},
    {.name = "results.dsn",
     .type = USV_CFG_STRING,
     .offset = OFF(results.dsn),
     .size = SZ(results.dsn),
     .def = "\"\"",
     .help = "libpq connection string of the results database (postgresql)"},
    {.name = "results.node",
     .type = USV_CFG_STRING,
     .offset = OFF(results.node),
     .size = SZ(results.node),
     .def = "\"\"",
     .help = "this node's name in the results database; empty = the host name"},
    {.name = "model.path",
     .type = USV_CFG_STRING,
     .offset = OFF(model.path),
     .size = SZ(model.path),
     .def = "/usr/share/usview/usview-views.usvm",
     .help = "model file"},
    {.name = "model.threads",
     .type = USV_CFG_INT,
     .offset = OFF(model.threads),
     .min = 1,
     .max = 64,
     .def = "1",
     .help = "engine threads per worker"},
    {.name = "model.batch_size",
     .type = USV_CFG_INT,
     .offset = OFF(model.batch_size),
     .min = 1,
     .max = 64,
     .def = "8",
     .help = "images per batched inference"},
    {.name = "model.batch_wait_ms",
     .type = USV_CFG_INT,
     .offset = OFF(model.batch_wait_ms),
     .min = 0,
     .max = 10000,
     .def = "20",
     .flags = R,
     .help = "longest wait to fill a batch"},
    {.name = "model.top_k",
     .type = USV_CFG_INT,
     .offset = OFF(model.top_k),
     .min = 1,
     .max = 20,
     .def = "3",
     .flags = R,
     .help = "probabilities reported per image"},
    {.name = "model.workers",
     .type = USV_CFG_INT,
     .offset = OFF(model.workers),
     .min = 1,
     .max = 64,
     .def = "2",
     .help = "worker threads"},
    {.name = "model.precision",
     .type = USV_CFG_ENUM,
     .offset = OFF(model.precision),
     .names = precision_names,
     .values = precision_values,
     .def = "fp32",
     .help = "inner products in fp32, or bf16 where the CPU has AVX512_BF16"},
    {.name = "model.min_confidence",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(model.min_confidence),
     .min = 0,
     .max = 1,
     .def = "0",
     .flags = R,
     .help = "below this top probability the label is \"uncertain\" (top-k kept); 0 = off"},
    {.name = "model.test_views",
     .type = USV_CFG_INT,
     .offset = OFF(model.test_views),
     .min = 0,
     .max = 10,
     .def = "0",
     .flags = R,
     .help = "views averaged per image: 0 = the model file's (meta.test_views), 1 = the "
             "centre crop, 2 = with its mirror, 10 = centre and corners, mirrored"},
    {.name = "frames.policy",
     .type = USV_CFG_ENUM,
     .offset = OFF(frames.policy),
     .names = frames_names,
     .values = frames_values,
     .def = "first",
     .flags = R,
     .help = "frames classified: first, middle, every_nth, all"},
    {.name = "frames.n",
     .type = USV_CFG_INT,
     .offset = OFF(frames.n),
     .min = 1,
     .max = 10000,
     .def = "10",
     .flags = R,
     .help = "step of every_nth"},
    {.name = "crop",
     .type = USV_CFG_LIST,
     .offset = OFF(crop),
     .size = sizeof(struct usv_config_crop),
     .count_offset = OFF(n_crop),
     .max_items = USV_CFG_MAX_CROPS,
     .sub = crop_opts,
     .def = CROP_DEFAULT,
     .flags = R,
     .check = check_crop,
     .help = "fixed crops for images without an ultrasound region"},
    {.name = "exclusion.colour_fraction",
     .type = USV_CFG_DOUBLE,
     .offset = OFF(exclusion.colour_fraction),
     .min = 0,
     .max = 1,
     .def = "0.02",
     .flags = R,
     .help = "exclude images with more colour (Doppler) pixels than this fraction"},
    {.name = "destinations",
     .type = USV_CFG_LIST,
     .offset = OFF(destinations),
     .size = sizeof(struct usv_config_dest),
     .count_offset = OFF(n_destinations),
     .max_items = USV_CFG_MAX_DESTS,
     .sub = dest_opts,
     .def = "[]",
     .flags = R,
     .unique = "name",
     .check = check_dest,
     .help = "where results are sent"},
    {.name = "qa.labels",
     .type = USV_CFG_BOOL,
     .offset = OFF(qa.labels),
     .def = "true",
     .flags = R,
     .help = "read the technologist's label of each instance and record the agreement"},
    {.name = "qa.ocr",
     .type = USV_CFG_BOOL,
     .offset = OFF(qa.ocr),
     .def = "true",
     .flags = R,
     .help = "also read the label from the burned-in annotation text (Tesseract)"},
    {.name = "qa.views",
     .type = USV_CFG_FILE,
     .offset = OFF(qa.views),
     .size = SZ(qa.views),
     .def = "\"\"",
     .help = "view table (YAML, as usview harvest --views); empty = built in"},
    {.name = "qa.tessdata",
     .type = USV_CFG_STRING,
     .offset = OFF(qa.tessdata),
     .size = SZ(qa.tessdata),
     .def = "\"\"",
     .help = "Tesseract language data folder; empty = Tesseract's default"},
    {.name = "qa.study_quiet_s",
     .type = USV_CFG_INT,
     .offset = OFF(qa.study_quiet_s),
     .min = 1,
     .max = 604800,
     .def = "300",
     .flags = R,
     .help = "seconds without a new instance before a study's record is written"},
    {.name = "protocols",
     .type = USV_CFG_LIST,
     .offset = OFF(protocols),
     .size = sizeof(struct usv_config_protocol),
     .count_offset = OFF(n_protocols),
     .max_items = USV_CFG_MAX_PROTOCOLS,
     .sub = protocol_opts,
     .def = "[]",
     .flags = R,
     .unique = "name",
     .check = check_protocol,
     .help = "QA protocols: required views per kind of study (none matching: the 11 "
             "views of the paper)"},
    {.name = "http.bind",
     .type = USV_CFG_IPV4,
     .offset = OFF(http.bind),
     .size = SZ(http.bind),
     .def = "127.0.0.1",
     .help = "address of /metrics and /healthz"},
    {.name = "http.port",
     .type = USV_CFG_INT,
     .offset = OFF(http.port),
     .min = 1,
     .max = 65535,
     .def = "9104",
     .help = "HTTP port"},
    {.name = "http.enabled",
     .type = USV_CFG_BOOL,
     .offset = OFF(http.enabled),
     .def = "true",
     .help = "serve /metrics and /healthz"},
    {.name = "http.qa",
     .type = USV_CFG_BOOL,
     .offset = OFF(http.qa),
     .def = "false",
     .help = "serve the QA page (/qa)"},
    {.name = "http.token_file",
     .type = USV_CFG_FILE,
     .offset = OFF(http.token_file),
     .size = SZ(http.token_file),
     .def = "\"\"",
     .help = "file holding the bearer token /qa requires; empty = none"},
    {.name = "log.level",
     .type = USV_CFG_ENUM,
     .offset = OFF(log.level),
     .names = level_names,
     .values = level_values,
     .def = "info",
     .flags = R,
     .help = "error, warning, notice, info, debug"},
    {.name = "log.journald",
     .type = USV_CFG_BOOL,
     .offset = OFF(log.journald),
     .def = "true",
     .help = "structured journal records when started by systemd"},
};

#undef R

#define N_OPTIONS (sizeof options / sizeof options[0])

const struct usv_config_option *usv_config_options(size_t *n)
{
	if (n)
		*n = N_OPTIONS;
	return options;
}

/* ------------------------------------------------------------------ */

struct ctx {
	const char *file; /* NULL: no position (command line) */
	yaml_document_t *doc;
	char *errbuf;
	size_t errlen;
};

__attribute__((format(printf, 5, 6))) static int
fail(const struct ctx *c, const yaml_node_t *n, const char *key, int code, const char *fmt, ...)
{
	char why[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (c->file && n)
		return usv_seterr(c->errbuf, c->errlen, code, "%s:%zu:%zu: %s: %s", c->file,
		                  (size_t)n->start_mark.line + 1, (size_t)n->start_mark.column + 1,
		                  key, why);
	if (c->file)
		return usv_seterr(c->errbuf, c->errlen, code, "%s: %s: %s", c->file, key, why);
	return usv_seterr(c->errbuf, c->errlen, code, "%s: %s", key, why);
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static int is_quoted(const yaml_node_t *n)
{
	return n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	       n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

static int parse_int(const char *s, long long *out)
{
	char *end;

	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"true", "yes", "on", NULL};
	static const char *const no[] = {"false", "no", "off", NULL};

	for (int i = 0; yes[i]; i++)
		if (!strcasecmp(s, yes[i]))
			return *out = 1, 0;
	for (int i = 0; no[i]; i++)
		if (!strcasecmp(s, no[i]))
			return *out = 0, 0;
	return -EINVAL;
}

static int lookup_name(const struct usv_config_option *o, const char *s, int *out)
{
	for (int i = 0; o->names[i]; i++)
		if (!strcmp(o->names[i], s))
			return *out = o->values[i], 0;
	return -EINVAL;
}

static void names_list(const struct usv_config_option *o, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = 0;
	for (int i = 0; o->names[i] && used < len; i++)
		used +=
		    (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", o->names[i]);
}

static int valid_ident(const char *s, char *why, size_t len)
{
	if (!*s || *s == '.')
		return usv_seterr(why, len, -EINVAL, "must be non-empty and not start with '.'");
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
			return usv_seterr(why, len, -EINVAL,
			                  "may only contain letters, digits, '_', '-' and '.'");
	return 0;
}

static int valid_ipv4(const char *s, char *why, size_t len)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return usv_seterr(why, len, -EINVAL,
		                  "'%s' is not a numeric IPv4 address (e.g. 127.0.0.1, 0.0.0.0)",
		                  s);
	return 0;
}

/* "" or a regular file this process can open for reading. */
static int valid_file(const char *s, char *why, size_t len)
{
	struct stat st;
	int fd;

	if (!*s)
		return 0;
	if (stat(s, &st) == -1)
		return usv_seterr(why, len, -EINVAL, "%s: %s", s, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return usv_seterr(why, len, -EINVAL, "%s: not a regular file", s);
	fd = open(s, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return usv_seterr(why, len, -EINVAL, "%s: cannot be read: %s", s, strerror(errno));
	close(fd);
	return 0;
}

static int apply(const struct ctx *c, const struct usv_config_option *o, void *base,
                 const yaml_node_t *n, const char *key);

static int apply_scalar(const struct ctx *c, const struct usv_config_option *o, void *base,
                        const yaml_node_t *n, const char *key)
{
	char *field = (char *)base + o->offset;
	const char *s;
	char why[160];

	if (n->type != YAML_SCALAR_NODE)
		return fail(c, n, key, -EINVAL, "expected a scalar, found %s", node_kind(n));
	s = scalar(n);
	if (strlen(s) != n->data.scalar.length)
		return fail(c, n, key, -EINVAL, "value contains a NUL character");

	switch (o->type) {
	case USV_CFG_INT: {
		long long v;
		if (is_quoted(n) || parse_int(s, &v) < 0)
			return fail(c, n, key, -EINVAL, "expected an integer, found '%s'", s);
		if (v < (long long)o->min || v > (long long)o->max)
			return fail(c, n, key, -ERANGE, "%lld is out of range [%lld, %lld]", v,
			            (long long)o->min, (long long)o->max);
		*(int *)field = (int)v;
		return 0;
	}
	case USV_CFG_DOUBLE: {
		double v;
		if (is_quoted(n) || parse_double(s, &v) < 0)
			return fail(c, n, key, -EINVAL, "expected a number, found '%s'", s);
		if (v < o->min || v > o->max)
			return fail(c, n, key, -ERANGE, "%g is out of range [%g, %g]", v, o->min,
			            o->max);
		*(double *)field = v;
		return 0;
	}
	case USV_CFG_BOOL:
		if (is_quoted(n) || parse_bool(s, (int *)field) < 0)
			return fail(c, n, key, -EINVAL, "expected true or false, found '%s'", s);
		return 0;
	case USV_CFG_ENUM:
		if (lookup_name(o, s, (int *)field) < 0) {
			names_list(o, why, sizeof why);
			return fail(c, n, key, -EINVAL, "'%s' is not one of: %s", s, why);
		}
		return 0;
	case USV_CFG_AETITLE:
	case USV_CFG_IDENT:
	case USV_CFG_IPV4:
	case USV_CFG_FILE:
	case USV_CFG_STRING:
		if (strlen(s) >= o->size)
			return fail(c, n, key, -USV_ERR_LIMIT, "longer than %zu characters",
			            o->size - 1);
		if (o->type == USV_CFG_FILE && valid_file(s, why, sizeof why) < 0)
			return fail(c, n, key, -EINVAL, "%s", why);
		if (o->type == USV_CFG_AETITLE && usv_dcm_ae_check(s, why, sizeof why) < 0)
			return fail(c, n, key, -EINVAL, "%s", why);
		if (o->type == USV_CFG_IDENT && valid_ident(s, why, sizeof why) < 0)
			return fail(c, n, key, -EINVAL, "%s", why);
		if (o->type == USV_CFG_IPV4 && valid_ipv4(s, why, sizeof why) < 0)
			return fail(c, n, key, -EINVAL, "%s", why);
		memset(field, 0, o->size);
		memcpy(field, s, strlen(s) + 1);
		return 0;
	default:
		return fail(c, n, key, -EINVAL, "internal: not a scalar option");
	}
}

static void apply_defaults(const struct usv_config_option *table, size_t n, void *base);

static int walk_map(const struct ctx *c, const yaml_node_t *map, const char *prefix,
                    const char *shown, const struct usv_config_option *table, size_t n, void *base,
                    uint64_t *seen);

static const struct usv_config_option *find_option(const struct usv_config_option *table, size_t n,
                                                   const char *name, size_t *idx)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(table[i].name, name)) {
			if (idx)
				*idx = i;
			return &table[i];
		}
	return NULL;
}

static int is_section(const struct usv_config_option *table, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (!strncmp(table[i].name, name, len) && table[i].name[len] == '.')
			return 1;
	return 0;
}

static size_t table_len(const struct usv_config_option *t)
{
	size_t n = 0;

	while (t[n].name)
		n++;
	return n;
}

static int apply_list(const struct ctx *c, const struct usv_config_option *o, void *base,
                      const yaml_node_t *n, const char *key)
{
	char *items = (char *)base + o->offset;
	int *count = (int *)((char *)base + o->count_offset);
	int k = 0;

	if (n->type != YAML_SEQUENCE_NODE)
		return fail(c, n, key, -EINVAL, "expected a list, found %s", node_kind(n));
	memset(items, 0, o->size * (size_t)o->max_items);
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++, k++) {
		yaml_node_t *item = yaml_document_get_node(c->doc, *it);
		char shown[96], why[256];
		char *dst = items + (size_t)k * o->size;
		int r;

		snprintf(shown, sizeof shown, "%s[%d]", key, k);
		if (k >= o->max_items)
			return fail(c, item, shown, -USV_ERR_LIMIT, "more than %d items",
			            o->max_items);
		if (o->type == USV_CFG_STRLIST) {
			if (item->type != YAML_SCALAR_NODE)
				return fail(c, item, shown, -EINVAL, "expected a scalar, found %s",
				            node_kind(item));
			if (strlen(scalar(item)) >= o->size)
				return fail(c, item, shown, -USV_ERR_LIMIT,
				            "longer than %zu characters", o->size - 1);
			if (o->check && o->check(scalar(item), why, sizeof why) < 0)
				return fail(c, item, shown, -EINVAL, "%s", why);
			memcpy(dst, scalar(item), strlen(scalar(item)) + 1);
			continue;
		}
		if (item->type != YAML_MAPPING_NODE)
			return fail(c, item, shown, -EINVAL, "expected a mapping, found %s",
			            node_kind(item));
		size_t nsub = table_len(o->sub);
		uint64_t seen = 0;
		memset(dst, 0, o->size);
		apply_defaults(o->sub, nsub, dst);
		r = walk_map(c, item, "", shown, o->sub, nsub, dst, &seen);
		if (r < 0)
			return r;
		for (size_t i = 0; i < nsub; i++)
			if ((o->sub[i].flags & USV_CFG_REQUIRED) && !(seen & (1ull << i)))
				return fail(c, item, shown, -EINVAL, "missing required key '%s'",
				            o->sub[i].name);
		if (o->check && o->check(dst, why, sizeof why) < 0)
			return fail(c, item, shown, -EINVAL, "%s", why);
		if (o->unique) {
			const struct usv_config_option *u =
			    find_option(o->sub, nsub, o->unique, NULL);
			for (int j = 0; u && j < k; j++)
				if (!strcmp(items + (size_t)j * o->size + u->offset,
				            dst + u->offset))
					return fail(c, item, shown, -EEXIST,
					            "duplicate %s '%s' (also %s[%d])", o->unique,
					            dst + u->offset, key, j);
		}
	}
	*count = k;
	return 0;
}

static int apply_flags(const struct ctx *c, const struct usv_config_option *o, void *base,
                       const yaml_node_t *n, const char *key)
{
	int v = 0;

	if (n->type != YAML_SEQUENCE_NODE)
		return fail(c, n, key, -EINVAL, "expected a list, found %s", node_kind(n));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = yaml_document_get_node(c->doc, *it);
		int bit;
		char why[160];
		if (item->type != YAML_SCALAR_NODE)
			return fail(c, item, key, -EINVAL, "expected a scalar, found %s",
			            node_kind(item));
		if (lookup_name(o, scalar(item), &bit) < 0) {
			names_list(o, why, sizeof why);
			return fail(c, item, key, -EINVAL, "'%s' is not one of: %s", scalar(item),
			            why);
		}
		v |= bit;
	}
	*(int *)((char *)base + o->offset) = v;
	return 0;
}

static int apply(const struct ctx *c, const struct usv_config_option *o, void *base,
                 const yaml_node_t *n, const char *key)
{
	switch (o->type) {
	case USV_CFG_LIST:
	case USV_CFG_STRLIST:
		return apply_list(c, o, base, n, key);
	case USV_CFG_FLAGS:
		return apply_flags(c, o, base, n, key);
	default:
		return apply_scalar(c, o, base, n, key);
	}
}

static int walk_map(const struct ctx *c, const yaml_node_t *map, const char *prefix,
                    const char *shown, const struct usv_config_option *table, size_t n, void *base,
                    uint64_t *seen)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		char name[160], show[160];
		size_t idx;
		int r;

		if (k->type != YAML_SCALAR_NODE)
			return fail(c, k, *shown ? shown : "(root)", -EINVAL,
			            "a key must be a scalar, found %s", node_kind(k));
		snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", scalar(k));
		snprintf(show, sizeof show, "%s%s%s", shown, *shown ? "." : "", scalar(k));
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
			if (!strcmp(scalar(yaml_document_get_node(c->doc, q->key)), scalar(k)))
				return fail(c, k, show, -EEXIST, "duplicate key");

		const struct usv_config_option *o = find_option(table, n, name, &idx);
		if (o) {
			r = apply(c, o, base, v, show);
			if (r < 0)
				return r;
			if (seen && idx < 64)
				*seen |= 1ull << idx;
		} else if (is_section(table, n, name)) {
			if (v->type != YAML_MAPPING_NODE)
				return fail(c, v, show, -EINVAL, "expected a mapping, found %s",
				            node_kind(v));
			r = walk_map(c, v, name, show, table, n, base, seen);
			if (r < 0)
				return r;
		} else {
			return fail(c, k, show, -ENOENT, "unknown key");
		}
	}
	return 0;
}

/* Parses text as one YAML document and applies its root node to option o. */
static int apply_text(const struct usv_config_option *o, void *base, const char *text,
                      const char *file, const char *key, char *errbuf, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	struct ctx c = {.file = file, .doc = &doc, .errbuf = errbuf, .errlen = errlen};
	int r;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
	if (!yaml_parser_load(&parser, &doc)) {
		r = usv_seterr(errbuf, errlen, -EINVAL, "%s: YAML error: %s", key,
		               parser.problem ? parser.problem : "unknown");
		yaml_parser_delete(&parser);
		return r;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root)
		r = usv_seterr(errbuf, errlen, -EINVAL, "%s: empty value", key);
	else
		r = apply(&c, o, base, root, key);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return r;
}

static int check_rules(const struct usv_config *cfg, char *key, size_t keylen, char *why,
                       size_t whylen);
static yaml_node_t *find_node(yaml_document_t *doc, yaml_node_t *n, const char *key);

static void apply_defaults(const struct usv_config_option *table, size_t n, void *base)
{
	for (size_t i = 0; i < n; i++) {
		if (!table[i].def)
			continue;
		/* Defaults are covered by the unit tests; an error here is a
		 * programming error and leaves the zeroed field. */
		(void)apply_text(&table[i], base, table[i].def, NULL, table[i].name, NULL, 0);
	}
}

void usv_config_defaults(struct usv_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	apply_defaults(options, N_OPTIONS, cfg);
}

int usv_config_load_string(const char *text, size_t len, const char *name, struct usv_config *cfg,
                           char *errbuf, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	struct ctx c = {.file = name, .doc = &doc, .errbuf = errbuf, .errlen = errlen};
	int r = 0;

	if (!yaml_parser_initialize(&parser))
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = usv_seterr(errbuf, errlen, -EINVAL, "%s:%zu:%zu: YAML syntax error: %s%s%s",
		               name, (size_t)parser.problem_mark.line + 1,
		               (size_t)parser.problem_mark.column + 1,
		               parser.problem ? parser.problem : "unknown",
		               parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return r;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root) {
		if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)
			; /* a file holding only comments */
		else if (root->type != YAML_MAPPING_NODE)
			r = fail(&c, root, "(root)", -EINVAL, "expected a mapping, found %s",
			         node_kind(root));
		else
			r = walk_map(&c, root, "", "", options, N_OPTIONS, cfg, NULL);
	}
	if (r == 0) {
		/* the cross-field rules name the key's place in the file when it is there */
		char key[64], why[256];
		if (check_rules(cfg, key, sizeof key, why, sizeof why) < 0) {
			yaml_node_t *n = find_node(&doc, root, key);
			if (!n && !strcmp(key, "results.dsn")) /* absent: the key that needs it */
				n = find_node(&doc, root, "results.backend");
			r = fail(&c, n, key, -EINVAL, "%s", why);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (r < 0)
		return r;
	r = usv_config_validate(cfg, errbuf, errlen);
	if (r < 0 && errbuf) {
		char tmp[USV_ERRBUF];
		snprintf(tmp, sizeof tmp, "%s: %s", name, errbuf);
		snprintf(errbuf, errlen, "%s", tmp);
	}
	return r;
}

int usv_config_load_file(const char *path, struct usv_config *cfg, char *errbuf, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;
	int r;

	if (fd == -1)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1) {
		r = usv_seterr(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)CFG_FILE_MAX) {
		close(fd);
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
		                  "%s: not a regular file or larger than %u bytes", path,
		                  CFG_FILE_MAX);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = usv_seterr(errbuf, errlen, k == 0 ? -EIO : -errno, "%s: read: %s", path,
			               k == 0 ? "short read" : strerror(errno));
			free(buf);
			close(fd);
			return r;
		}
		got += (size_t)k;
	}
	close(fd);
	buf[got] = 0;
	r = usv_config_load_string(buf, got, path, cfg, errbuf, errlen);
	free(buf);
	return r;
}

int usv_config_set(struct usv_config *cfg, const char *key, const char *value, char *errbuf,
                   size_t errlen)
{
	const struct usv_config_option *o = find_option(options, N_OPTIONS, key, NULL);

	if (!o)
		return usv_seterr(errbuf, errlen, -ENOENT, "%s: unknown key", key);
	if (o->type == USV_CFG_STRING || o->type == USV_CFG_AETITLE || o->type == USV_CFG_IDENT ||
	    o->type == USV_CFG_IPV4 || o->type == USV_CFG_FILE) {
		/* Take the text as is: a path or AE title is never YAML. */
		yaml_node_t n;
		struct ctx c = {.errbuf = errbuf, .errlen = errlen};
		memset(&n, 0, sizeof n);
		n.type = YAML_SCALAR_NODE;
		n.data.scalar.value = (yaml_char_t *)value;
		n.data.scalar.length = strlen(value);
		n.data.scalar.style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
		return apply_scalar(&c, o, cfg, &n, key);
	}
	return apply_text(o, cfg, value, NULL, key, errbuf, errlen);
}

int usv_config_add_destination(struct usv_config *cfg, const char *spec, char *errbuf,
                               size_t errlen)
{
	const char *at = strchr(spec, '@'), *colon = strrchr(spec, ':');
	struct usv_config_dest d;
	const struct usv_config_option *o = find_option(options, N_OPTIONS, "destinations", NULL);
	char why[160];
	long long port;

	if (!at || !colon || colon < at || at == spec || colon == at + 1)
		return usv_seterr(errbuf, errlen, -EINVAL, "--send-to %s: expected AE@HOST:PORT",
		                  spec);
	if (cfg->n_destinations >= USV_CFG_MAX_DESTS)
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "--send-to %s: more than %d",
		                  spec, USV_CFG_MAX_DESTS);
	memset(&d, 0, sizeof d);
	apply_defaults(dest_opts, table_len(dest_opts), &d);
	if ((size_t)(at - spec) >= sizeof d.ae_title)
		return usv_seterr(errbuf, errlen, -EINVAL, "--send-to %s: AE title too long", spec);
	memcpy(d.ae_title, spec, (size_t)(at - spec));
	if (usv_dcm_ae_check(d.ae_title, why, sizeof why) < 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "--send-to %s: %s", spec, why);
	if ((size_t)(colon - at - 1) >= sizeof d.host)
		return usv_seterr(errbuf, errlen, -EINVAL, "--send-to %s: host too long", spec);
	memcpy(d.host, at + 1, (size_t)(colon - at - 1));
	if (parse_int(colon + 1, &port) < 0 || port < 1 || port > 65535)
		return usv_seterr(errbuf, errlen, -EINVAL, "--send-to %s: bad port", spec);
	d.port = (int)port;
	/* name: the AE title made file-name safe, unique among destinations */
	snprintf(d.name, sizeof d.name, "%s", d.ae_title);
	for (char *p = d.name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			*p = '_';
	for (int i = 0, suffix = 2; i < cfg->n_destinations; i++)
		if (!strcmp(cfg->destinations[i].name, d.name)) {
			snprintf(d.name, sizeof d.name, "%.40s_%d", d.ae_title, suffix++);
			for (char *p = d.name; *p; p++)
				if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
					*p = '_';
			i = -1;
		}
	if (o->check(&d, why, sizeof why) < 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "--send-to %s: %s", spec, why);
	cfg->destinations[cfg->n_destinations++] = d;
	return 0;
}

static int validate_table(const struct usv_config_option *t, size_t n, const void *base,
                          const char *shown, char *errbuf, size_t errlen)
{
	char why[256];

	for (size_t i = 0; i < n; i++) {
		const struct usv_config_option *o = &t[i];
		const char *field = (const char *)base + o->offset;
		char key[160];

		snprintf(key, sizeof key, "%s%s%s", shown, *shown ? "." : "", o->name);
		switch (o->type) {
		case USV_CFG_INT: {
			int v = *(const int *)field;
			if (v < o->min || v > o->max)
				return usv_seterr(errbuf, errlen, -ERANGE,
				                  "%s: %d is out of range [%g, %g]", key, v, o->min,
				                  o->max);
			break;
		}
		case USV_CFG_DOUBLE: {
			double v = *(const double *)field;
			if (!(v >= o->min && v <= o->max))
				return usv_seterr(errbuf, errlen, -ERANGE,
				                  "%s: %g is out of range [%g, %g]", key, v, o->min,
				                  o->max);
			break;
		}
		case USV_CFG_AETITLE:
			if (usv_dcm_ae_check(field, why, sizeof why) < 0)
				return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", key, why);
			break;
		case USV_CFG_IDENT:
			if (valid_ident(field, why, sizeof why) < 0)
				return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", key, why);
			break;
		case USV_CFG_IPV4:
			if (valid_ipv4(field, why, sizeof why) < 0)
				return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", key, why);
			break;
		case USV_CFG_FILE:
			if (valid_file(field, why, sizeof why) < 0)
				return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", key, why);
			break;
		case USV_CFG_LIST: {
			int cnt = *(const int *)((const char *)base + o->count_offset);
			const struct usv_config_option *u =
			    o->unique ? find_option(o->sub, table_len(o->sub), o->unique, NULL)
			              : NULL;
			if (cnt < 0 || cnt > o->max_items)
				return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
				                  "%s: bad item count %d", key, cnt);
			for (int k = 0; k < cnt; k++) {
				const char *item = field + (size_t)k * o->size;
				char ikey[176];
				int r;
				snprintf(ikey, sizeof ikey, "%s[%d]", key, k);
				r = validate_table(o->sub, table_len(o->sub), item, ikey, errbuf,
				                   errlen);
				if (r < 0)
					return r;
				if (o->check && o->check(item, why, sizeof why) < 0)
					return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", ikey,
					                  why);
				for (int j = 0; u && j < k; j++)
					if (!strcmp(field + (size_t)j * o->size + u->offset,
					            item + u->offset))
						return usv_seterr(errbuf, errlen, -EEXIST,
						                  "%s: duplicate %s '%s'", ikey,
						                  o->unique, item + u->offset);
			}
			break;
		}
		default:
			break;
		}
	}
	return 0;
}

/* Cross-field rules (the TLS port, the results backend): 0 or -EINVAL with
 * the offending key in key and the reason in why. */
static int check_rules(const struct usv_config *cfg, char *key, size_t keylen, char *why,
                       size_t whylen)
{
	const char *k = NULL;
	int tp = cfg->listen.tls.port;

	why[0] = 0;
	if (cfg->listen.port == 0 && tp == 0) {
		k = "listen.port";
		snprintf(why, whylen,
		         "0 is out of range [1, 65535] without listen.tls.port (0 = no plain port, "
		         "TLS only)");
	} else if (tp && tp == cfg->listen.port) {
		k = "listen.tls.port";
		snprintf(why, whylen, "%d is listen.port too", tp);
	} else if (tp && !cfg->listen.tls.certificate[0]) {
		k = "listen.tls.certificate";
		snprintf(why, whylen, "required with listen.tls.port");
	} else if (tp && !cfg->listen.tls.private_key[0]) {
		k = "listen.tls.private_key";
		snprintf(why, whylen, "required with listen.tls.port");
	} else if (tp && cfg->listen.tls.require_client_certificate &&
	           !cfg->listen.tls.ca_file[0]) {
		k = "listen.tls.ca_file";
		snprintf(why, whylen,
		         "required with require_client_certificate: true (clients are verified "
		         "against it)");
	} else if (tp && cfg->http.enabled && cfg->http.port == tp &&
	           !strcmp(cfg->http.bind, cfg->listen.bind)) {
		k = "http.port";
		snprintf(why, whylen, "same address and port as listen.tls.port (%d)", tp);
	} else if (cfg->model.test_views != 0 && cfg->model.test_views != 1 &&
	           cfg->model.test_views != 2 && cfg->model.test_views != 10) {
		k = "model.test_views";
		snprintf(why, whylen, "%d is not 0 (the model's), 1, 2 or 10",
		         cfg->model.test_views);
	} else if (cfg->results.backend == USV_CFG_RESULTS_POSTGRESQL && !cfg->results.dsn[0]) {
		k = "results.dsn";
		snprintf(why, whylen,
		         "required with results.backend: postgresql (a libpq connection string, "
		         "e.g. \"host=db1 dbname=usview user=usview\")");
	}
	if (!k)
		return 0;
	snprintf(key, keylen, "%s", k);
	return -EINVAL;
}

/* The value node of dotted key in the mappings under n (keys may be
 * nested mappings or dotted themselves), or NULL. */
static yaml_node_t *find_node(yaml_document_t *doc, yaml_node_t *n, const char *key)
{
	if (!n || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		size_t len;
		if (!k || k->type != YAML_SCALAR_NODE)
			continue;
		len = strlen(scalar(k));
		if (!strcmp(scalar(k), key))
			return v;
		if (!strncmp(scalar(k), key, len) && key[len] == '.') {
			yaml_node_t *r = find_node(doc, v, key + len + 1);
			if (r)
				return r;
		}
	}
	return NULL;
}

int usv_config_validate(const struct usv_config *cfg, char *errbuf, size_t errlen)
{
	int r = validate_table(options, N_OPTIONS, cfg, "", errbuf, errlen);
	char key[64], why[256];

	if (r < 0)
		return r;
	if (check_rules(cfg, key, sizeof key, why, sizeof why) < 0)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: %s", key, why);
	if (cfg->http.enabled && cfg->http.port == cfg->listen.port &&
	    !strcmp(cfg->http.bind, cfg->listen.bind))
		return usv_seterr(errbuf, errlen, -EINVAL,
		                  "http.port: same address and port as listen.port (%d)",
		                  cfg->http.port);
	return 0;
}

static size_t option_bytes(const struct usv_config_option *o)
{
	switch (o->type) {
	case USV_CFG_DOUBLE:
		return sizeof(double);
	case USV_CFG_STRING:
	case USV_CFG_AETITLE:
	case USV_CFG_IDENT:
	case USV_CFG_IPV4:
	case USV_CFG_FILE:
		return o->size;
	case USV_CFG_LIST:
	case USV_CFG_STRLIST:
		return o->size * (size_t)o->max_items;
	default:
		return sizeof(int);
	}
}

int usv_config_reload(struct usv_config *live, const char *path, char *changed, size_t changedlen,
                      char *errbuf, size_t errlen)
{
	struct usv_config *next = malloc(sizeof *next);
	size_t used = 0;
	int r;

	if (!next)
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	usv_config_defaults(next);
	r = usv_config_load_file(path, next, errbuf, errlen);
	if (r < 0) {
		free(next);
		return r;
	}
	if (changed && changedlen)
		changed[0] = 0;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct usv_config_option *o = &options[i];
		char *dst = (char *)live + o->offset;
		const char *src = (const char *)next + o->offset;
		size_t len = option_bytes(o);
		int differs = memcmp(dst, src, len) != 0;

		if (o->type == USV_CFG_LIST || o->type == USV_CFG_STRLIST)
			differs |= *(int *)((char *)live + o->count_offset) !=
			           *(const int *)((const char *)next + o->count_offset);
		if (!differs)
			continue;
		if (o->flags & USV_CFG_RELOADABLE) {
			memcpy(dst, src, len);
			if (o->type == USV_CFG_LIST || o->type == USV_CFG_STRLIST)
				*(int *)((char *)live + o->count_offset) =
				    *(const int *)((const char *)next + o->count_offset);
		} else if (changed && used < changedlen) {
			used += (size_t)snprintf(changed + used, changedlen - used, "%s%s",
			                         used ? ", " : "", o->name);
		}
	}
	free(next);
	return 0;
}

const char *usv_config_enum_name(const char *key, int value)
{
	const struct usv_config_option *o = find_option(options, N_OPTIONS, key, NULL);

	if (!o || !o->names)
		return NULL;
	for (int i = 0; o->names[i]; i++)
		if (o->values[i] == value)
			return o->names[i];
	return NULL;
}

/* Appends one warning line about a private key file that group or others
 * may read or write. */
static int key_mode_warning(const char *key, const char *path, char *buf, size_t len, size_t *used)
{
	struct stat st;

	if (!path[0] || stat(path, &st) == -1 || !(st.st_mode & 077))
		return 0;
	if (*used < len)
		*used +=
		    (size_t)snprintf(buf + *used, len - *used,
		                     "%s%s: %s is accessible to group or others (mode %04o); "
		                     "use chmod 600",
		                     *used ? "\n" : "", key, path, (unsigned)(st.st_mode & 07777));
	return 1;
}

int usv_config_warnings(const struct usv_config *cfg, char *buf, size_t len)
{
	size_t used = 0;
	int n = 0;

	if (buf && len)
		buf[0] = 0;
	else
		len = 0;
	if (cfg->listen.tls.port)
		n += key_mode_warning("listen.tls.private_key", cfg->listen.tls.private_key, buf,
		                      len, &used);
	for (int i = 0; i < cfg->n_destinations && i < USV_CFG_MAX_DESTS; i++) {
		char key[96];
		snprintf(key, sizeof key, "destinations[%d].tls.private_key", i);
		n += key_mode_warning(key, cfg->destinations[i].tls.private_key, buf, len, &used);
	}
	return n;
}

static void dump_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void dump_value(FILE *f, const struct usv_config_option *o, const void *base)
{
	const char *field = (const char *)base + o->offset;

	switch (o->type) {
	case USV_CFG_INT:
		fprintf(f, "%d", *(const int *)field);
		break;
	case USV_CFG_DOUBLE:
		fprintf(f, "%.17g", *(const double *)field);
		break;
	case USV_CFG_BOOL:
		fputs(*(const int *)field ? "true" : "false", f);
		break;
	case USV_CFG_ENUM:
		for (int i = 0; o->names[i]; i++)
			if (o->values[i] == *(const int *)field)
				fputs(o->names[i], f);
		break;
	case USV_CFG_FLAGS: {
		int first = 1;
		fputc('[', f);
		for (int i = 0; o->names[i]; i++)
			if (*(const int *)field & o->values[i]) {
				fprintf(f, "%s%s", first ? "" : ", ", o->names[i]);
				first = 0;
			}
		fputc(']', f);
		break;
	}
	case USV_CFG_STRLIST: {
		int cnt = *(const int *)((const char *)base + o->count_offset);
		fputc('[', f);
		for (int k = 0; k < cnt; k++) {
			if (k)
				fputs(", ", f);
			dump_string(f, field + (size_t)k * o->size);
		}
		fputc(']', f);
		break;
	}
	default:
		dump_string(f, field);
		break;
	}
}

int usv_config_dump(const struct usv_config *cfg, FILE *f)
{
	char section[128] = ""; /* mapping path printed last, e.g. "spool.retention_h" */

	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct usv_config_option *o = &options[i];
		const char *dot = strrchr(o->name, '.');
		if (dot) {
			/* open the mappings of the path that differ from the
			 * previous option's, one level of indentation each */
			size_t len = (size_t)(dot - o->name), common = 0, depth = 0;
			while (common < len && section[common] == o->name[common])
				common++;
			if (!(common == len && section[len] == 0)) {
				while (common > 0 &&
				       !(o->name[common] == '.' &&
				         (section[common] == '.' || !section[common])))
					common--; /* back to a whole component */
				for (size_t k = 0; k < common; k++)
					depth += o->name[k] == '.';
				if (common)
					depth++;
				size_t start = common ? common + 1 : 0;
				while (start < len) {
					const char *end = memchr(o->name + start, '.', len - start);
					size_t stop = end ? (size_t)(end - o->name) : len;
					fprintf(f, "%*s%.*s:\n", (int)(2 * depth), "",
					        (int)(stop - start), o->name + start);
					depth++;
					start = stop + 1;
				}
				snprintf(section, sizeof section, "%.*s", (int)len, o->name);
			}
			depth = 1;
			for (size_t k = 0; k < len; k++)
				depth += o->name[k] == '.';
			fprintf(f, "%*s%s: ", (int)(2 * depth), "", dot + 1);
			dump_value(f, o, cfg);
			fputc('\n', f);
			continue;
		}
		section[0] = 0;
		if (o->type != USV_CFG_LIST) {
			fprintf(f, "%s: ", o->name);
			dump_value(f, o, cfg);
			fputc('\n', f);
			continue;
		}
		int cnt = *(const int *)((const char *)cfg + o->count_offset);
		fprintf(f, "%s:%s\n", o->name, cnt ? "" : " []");
		for (int k = 0; k < cnt; k++) {
			const char *item = (const char *)cfg + o->offset + (size_t)k * o->size;
			fputs("  - {", f);
			for (size_t j = 0; o->sub[j].name; j++) {
				fprintf(f, "%s%s: ", j ? ", " : "", o->sub[j].name);
				dump_value(f, &o->sub[j], item);
			}
			fputs("}\n", f);
		}
	}
	return ferror(f) ? -EIO : 0;
}
