/*
 * NAME
 *	config.h - usviewd configuration: one table drives parsing, defaults,
 *	validation, reload and dumping
 *
 * SYNOPSIS
 *	#include "usv/config.h"
 *
 *	struct usv_config cfg;
 *	usv_config_defaults(&cfg);
 *	if (usv_config_load_file("/etc/usview/usviewd.yaml", &cfg, err, sizeof err) < 0)
 *		... err holds "FILE:LINE:COLUMN: KEY: reason" ...
 *
 * DESCRIPTION
 *	A usv_config is a plain value (fixed arrays, no pointers): it can be
 *	copied with '=' and needs no free. Every setting is one row of the
 *	option table (usv_config_options()): its dotted name ("listen.port"),
 *	type, bounds, offset into the struct, default (as text, parsed by the
 *	same code as the file) and whether SIGHUP may change it. Lists of
 *	mappings (allowed_peers, crop, destinations) have a sub-table for the
 *	fields of one item.
 *
 *	The file is YAML (libyaml). Unknown keys, wrong node types (mapping
 *	where a scalar is expected, ...), unparsable numbers, out-of-range
 *	values, unknown enum names, missing required item fields and duplicate
 *	list keys (two destinations with the same name) are errors reported as
 *	one line "FILE:LINE:COLUMN: KEY: reason" (line and column 1-based, from
 *	libyaml's marks).
 *
 *	Keys present in the file replace the defaults; a list present in the
 *	file replaces the whole default list.
 *
 * FUNCTIONS
 *	usv_config_defaults(cfg)
 *		Sets every field to its table default. Cannot fail (the
 *		defaults are checked by the unit tests).
 *
 *	usv_config_load_file(path, cfg, errbuf, errlen)
 *	usv_config_load_string(text, len, name, cfg, errbuf, errlen)
 *		Parse YAML over *cfg (usually fresh from usv_config_defaults()),
 *		then run usv_config_validate(). On error *cfg may be partly
 *		modified: load into a scratch copy when the old value matters
 *		(usv_config_reload() does). 0, -ENOENT/-EACCES/-EIO (file),
 *		-EINVAL (content), -USV_ERR_LIMIT (file over 1 MiB).
 *
 *	usv_config_set(cfg, key, value, errbuf, errlen)
 *		Sets one scalar option by dotted name from text (command-line
 *		overrides). Errors name "KEY". -ENOENT unknown key, -EINVAL.
 *
 *	usv_config_add_destination(cfg, spec, errbuf, errlen)
 *		Appends a destination from "AE@HOST:PORT" (name = AE title,
 *		send = [sr], other fields default). -EINVAL, -USV_ERR_LIMIT.
 *
 *	usv_config_validate(cfg, errbuf, errlen)
 *		Cross-field checks (backoff_initial_s <= backoff_max_s, unique
 *		destination names, frames.n with every_nth, listen.port 0 only
 *		with listen.tls.port, the TLS port differs from listen.port, a
 *		TLS port has certificate and private key, ...). When loading a
 *		file, such an error names the position of the key in the file
 *		when the file sets it.
 *
 *	usv_config_reload(live, path, changed, changedlen, errbuf, errlen)
 *		Loads path into a scratch config (defaults + file), validates
 *		it, and on success copies the reloadable options into *live and
 *		writes into changed a comma-separated list of the options that
 *		changed but need a restart (empty when none). On any error *live
 *		is untouched.
 *
 *	usv_config_warnings(cfg, buf, len)
 *		Things that are allowed but unwise, one per line into buf
 *		(e.g. a TLS private key readable by group or others).
 *		Returns their number (0: buf is "").
 *
 *	usv_config_dump(cfg, f)
 *		Writes the effective configuration as YAML (parsable again).
 *
 *	usv_config_options(&n)
 *		The option table (borrowed, static).
 *
 *	usv_config_enum_name(key, value)
 *		Name of an enum value of option key, or NULL.
 *
 * THREAD SAFETY
 *	All functions are reentrant; a usv_config shared between threads
 *	needs the caller's lock.
 */
#ifndef USV_CONFIG_H
#define USV_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_CFG_MAX_PEERS 64
#define USV_CFG_MAX_CROPS 64
#define USV_CFG_MAX_DESTS 16
#define USV_CFG_MAX_PROTOCOLS 16
#define USV_CFG_MAX_MATCH 16 /* match strings per protocol */
#define USV_CFG_MAX_VIEWS 64 /* required views per protocol */
#define USV_CFG_MAX_SOP_CLASSES 16
#define USV_CFG_AE_MAX 17 /* 16 characters + NUL */
#define USV_CFG_HOST_MAX 256
#define USV_CFG_PATH_MAX 1024
#define USV_CFG_NAME_MAX 64
#define USV_CFG_UID_MAX 65

/* listen.proxy_protocol_from: entries, and "255.255.255.255/32" + NUL */
#define USV_CFG_MAX_PROXIES 16
#define USV_CFG_CIDR_MAX 20

enum usv_cfg_frames_policy {
	USV_CFG_FRAMES_FIRST = 0,
	USV_CFG_FRAMES_MIDDLE = 1,
	USV_CFG_FRAMES_EVERY_NTH = 2,
	USV_CFG_FRAMES_ALL = 3,
};

/* model.precision: arithmetic of the inner-product layers */
enum usv_cfg_precision {
	USV_CFG_PRECISION_FP32 = 0,
	USV_CFG_PRECISION_BF16 = 1, /* BF16 weights, FP32 sums; CPUs with AVX512_BF16 */
};

/* results.backend */
enum usv_cfg_results_backend {
	USV_CFG_RESULTS_JSONL = 0,
	USV_CFG_RESULTS_POSTGRESQL = 1,
};

/* log.level: syslog priorities */
enum usv_cfg_log_level {
	USV_CFG_LOG_ERR = 3,
	USV_CFG_LOG_WARNING = 4,
	USV_CFG_LOG_NOTICE = 5,
	USV_CFG_LOG_INFO = 6,
	USV_CFG_LOG_DEBUG = 7,
};

/* listen.tls.profile, destinations[].tls.profile: DICOM TLS profiles (the
 * values of usv_tls_profile in usv/dcm_scp.h and usv/dcm_scu.h) */
enum usv_cfg_tls_profile {
	USV_CFG_TLS_BCP195 = 0,
	USV_CFG_TLS_BCP195_ND = 1,
	USV_CFG_TLS_BCP195_EX = 2,
};

/* destinations[].send bits */
#define USV_CFG_SEND_SR 0x1
#define USV_CFG_SEND_TAGGED 0x2
#define USV_CFG_SEND_STUDY_SR 0x4 /* the study-level SR of the QA study tracker */

struct usv_config_peer {
	char ae_title[USV_CFG_AE_MAX];
	char host[USV_CFG_HOST_MAX]; /* "" = any host */
};

/* A fixed crop box: applies when manufacturer is a case-insensitive
 * substring of (0008,0070) Manufacturer, model is "" or a substring of
 * (0008,1090) Manufacturer's Model Name, and Rows x Columns match (first
 * matching rule wins, before the ultrasound regions). x, y = -1: centred. */
struct usv_config_crop {
	char manufacturer[USV_CFG_NAME_MAX];
	char model[USV_CFG_NAME_MAX];
	int rows, cols;
	int width, height;
	int x, y;
};

/* A QA protocol: a study matches when one of match[] is a case-insensitive
 * substring of Study Description, Requested Procedure Description or
 * Protocol Name (first matching protocol wins; a study that matches none
 * gets the built-in protocol "default": the 11 views of the paper). */
struct usv_config_protocol {
	char name[USV_CFG_NAME_MAX];
	int n_match;
	char match[USV_CFG_MAX_MATCH][USV_CFG_NAME_MAX];
	int n_required_views;
	char required_views[USV_CFG_MAX_VIEWS][USV_CFG_NAME_MAX]; /* class names */
};

struct usv_config_dest {
	char name[USV_CFG_NAME_MAX]; /* [A-Za-z0-9_-]: also the outbox folder name */
	char ae_title[USV_CFG_AE_MAX];
	char host[USV_CFG_HOST_MAX];
	int port;
	int send;          /* USV_CFG_SEND_* bits */
	int n_sop_classes; /* SOP classes of result objects taken; 0 = any */
	char sop_classes[USV_CFG_MAX_SOP_CLASSES][USV_CFG_UID_MAX];
	int max_attempts;
	int backoff_initial_s;
	int backoff_max_s;
	int max_age_h;
	struct { /* DICOM TLS towards this destination; ca_file "" = plain TCP */
		char ca_file[USV_CFG_PATH_MAX];     /* CAs that sign the peer's certificate */
		char certificate[USV_CFG_PATH_MAX]; /* our client certificate; "" = none */
		char private_key[USV_CFG_PATH_MAX];
		int profile; /* enum usv_cfg_tls_profile */
	} tls;
};

struct usv_config {
	struct {
		char bind[USV_CFG_HOST_MAX];
		int port;
		char ae_title[USV_CFG_AE_MAX];
		int max_associations;
		int acse_timeout;
		int dimse_timeout;
		int max_pdu;
		int max_pending_per_address;      /* half-open connections per address */
		int max_associations_per_address; /* 0: only max_associations */
		/* balancers sending a PROXY protocol v2 header: IPv4 addresses
		 * or a.b.c.d/n blocks; 0 entries = off */
		int n_proxy_protocol_from;
		char proxy_protocol_from[USV_CFG_MAX_PROXIES][USV_CFG_CIDR_MAX];
		int drain_timeout_s; /* SIGTERM: seconds associations may go on */
		/* DICOM TLS port; port 0 = none */
		struct {
			int port;
			char certificate[USV_CFG_PATH_MAX];
			char private_key[USV_CFG_PATH_MAX];
			char ca_file[USV_CFG_PATH_MAX];
			int require_client_certificate;
			int profile; /* enum usv_cfg_tls_profile */
		} tls;
	} listen;
	int n_allowed_peers; /* 0 = accept any calling AE */
	struct usv_config_peer allowed_peers[USV_CFG_MAX_PEERS];
	struct {
		char dir[USV_CFG_PATH_MAX];
		int min_free_mb;
		struct { /* hours in each state before deletion; 0 = for ever */
			double done, sent, excluded, failed, dead;
		} retention_h;
		int sweep_interval_s; /* seconds between retention sweeps */
		int index_max_mb;     /* rotate results.jsonl at this size; 0 = never */
		int index_keep;       /* rotated files kept (results.jsonl.1 ...) */
	} spool;
	struct {
		char path[USV_CFG_PATH_MAX];
		int threads;
		int batch_size;
		int batch_wait_ms;
		int top_k;
		int workers;
		int precision;         /* enum usv_cfg_precision */
		double min_confidence; /* below: label "uncertain"; 0 = off */
		int test_views;        /* 0 = the model's; 1, 2 or 10 views averaged */
	} model;
	struct {
		int policy; /* enum usv_cfg_frames_policy */
		int n;
	} frames;
	int n_crop;
	struct usv_config_crop crop[USV_CFG_MAX_CROPS];
	struct {
		double colour_fraction;
	} exclusion;
	int n_destinations;
	struct usv_config_dest destinations[USV_CFG_MAX_DESTS];
	struct {
		int labels;                      /* read the technologist's label */
		int ocr;                         /* ... also from the burned-in text */
		char views[USV_CFG_PATH_MAX];    /* view table (YAML); "" = built in */
		char tessdata[USV_CFG_PATH_MAX]; /* Tesseract data folder; "" = default */
		int study_quiet_s; /* seconds without instances before a study record */
	} qa;
	int n_protocols;
	struct usv_config_protocol protocols[USV_CFG_MAX_PROTOCOLS];
	struct {
		int backend;                 /* enum usv_cfg_results_backend */
		char dsn[USV_CFG_PATH_MAX];  /* libpq connection string */
		char node[USV_CFG_NAME_MAX]; /* "" = the host name */
	} results;
	struct {
		char bind[USV_CFG_HOST_MAX];
		int port;
		int enabled;
		int qa;                            /* serve /qa */
		char token_file[USV_CFG_PATH_MAX]; /* bearer token for /qa; "" = none */
	} http;
	struct {
		int level; /* enum usv_cfg_log_level */
		int journald;
	} log;
};

enum usv_cfg_type {
	USV_CFG_INT = 1,
	USV_CFG_DOUBLE,
	USV_CFG_BOOL,
	USV_CFG_STRING,  /* char[size]; value length < size */
	USV_CFG_AETITLE, /* char[17]; usv_dcm_ae_check() (usv/dcm_ae.h) */
	USV_CFG_IDENT,   /* char[size]; [A-Za-z0-9_.-], not starting with '.' (file names) */
	USV_CFG_IPV4,    /* char[size]; numeric IPv4 address (inet_pton) */
	USV_CFG_FILE,    /* char[size]; "" or a readable regular file (checked when set) */
	USV_CFG_ENUM,    /* int; one of names[] (value = values[i]) */
	USV_CFG_FLAGS,   /* int; YAML sequence of names[] -> OR of values[i] */
	USV_CFG_STRLIST, /* char[max][size] + int count; YAML sequence of strings */
	USV_CFG_LIST,    /* item[max] + int count; YAML sequence of mappings (sub table) */
};

#define USV_CFG_RELOADABLE 0x1 /* SIGHUP applies it */
#define USV_CFG_REQUIRED 0x2   /* list item field that must be given */

struct usv_config_option {
	const char *name; /* dotted: "listen.port"; in a sub table just "port" */
	enum usv_cfg_type type;
	size_t offset; /* into struct usv_config, or into the list item */
	size_t size;   /* STRING: buffer size; STRLIST/LIST: item size */
	double min, max;
	const char *def; /* default as YAML text ("" for none); LIST: a flow sequence */
	unsigned flags;
	const char *const *names;            /* ENUM, FLAGS: NULL-terminated */
	const int *values;                   /* ENUM, FLAGS: parallel to names */
	size_t count_offset;                 /* STRLIST, LIST: offset of the int count */
	int max_items;                       /* STRLIST, LIST */
	const struct usv_config_option *sub; /* LIST: item fields, NULL-name terminated */
	const char *unique;                  /* LIST: item field that must be unique, or NULL */
	/* LIST: checks one parsed item (cross-field rules); STRLIST: one
	 * string (const char *); writes why */
	int (*check)(const void *item, char *why, size_t whylen);
	const char *help; /* one line */
};

void usv_config_defaults(struct usv_config *cfg);
int usv_config_load_file(const char *path, struct usv_config *cfg, char *errbuf, size_t errlen);
int usv_config_load_string(const char *text, size_t len, const char *name, struct usv_config *cfg,
                           char *errbuf, size_t errlen);
int usv_config_set(struct usv_config *cfg, const char *key, const char *value, char *errbuf,
                   size_t errlen);
int usv_config_add_destination(struct usv_config *cfg, const char *spec, char *errbuf,
                               size_t errlen);
int usv_config_validate(const struct usv_config *cfg, char *errbuf, size_t errlen);
int usv_config_reload(struct usv_config *live, const char *path, char *changed, size_t changedlen,
                      char *errbuf, size_t errlen);
int usv_config_warnings(const struct usv_config *cfg, char *buf, size_t len);
int usv_config_dump(const struct usv_config *cfg, FILE *f);
const struct usv_config_option *usv_config_options(size_t *n);
const char *usv_config_enum_name(const char *key, int value);

#ifdef __cplusplus
}
#endif
#endif
