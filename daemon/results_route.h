/*
 * NAME
 *	results_route.h - result routing: the destinations, built once from
 *	the configuration, and the one way result files enter the outboxes
 *
 * SYNOPSIS
 *	#include "results_route.h"
 *
 * DESCRIPTION
 *	This module owns destinations. usv_routes_from_config() turns the
 *	configured destinations, our AE title (the calling AE towards every
 *	peer) and the association timeouts into a checked usv_routes value,
 *	once per configuration (start and each reload); the worker pool and
 *	the sender both take their destinations from it.
 *
 *	Routing rule (usv_route_wants): a destination takes a result object
 *	when its kinds include the object's kind (SR or tagged copy) and
 *	either it lists no SOP classes or the object's SOP Class UID is one
 *	of them (an SR has the Comprehensive SR class, a tagged copy keeps
 *	the class of its source image).
 *
 *	usv_route_put() is the only code that puts result files into
 *	outbox/<dest>/: for each destination in order, and for each object
 *	that destination wants, it creates a spool tmp/ file, lets the
 *	caller's write function fill it and moves it into the outbox. The
 *	workers write with USV_ROUTE_SYNC_LATER and make a whole batch
 *	durable with one usv_route_sync() (one fsync per outbox directory
 *	used); the sender's usv_sender_enqueue() syncs each file at once.
 *
 * CONTRACTS
 *	usv_dest_defaults(d)
 *		Fills the 0 fields of d with the defaults (usv_dest below).
 *		NULL-safe.
 *	usv_dest_check(d, errbuf, errlen)
 *		Validates d: name [A-Za-z0-9_.-] 1..64, AE titles per
 *		usv_dcm_ae_check(), host, port != 0, known kinds, sane retry
 *		and timeout settings. 0 or -EINVAL with a message.
 *	usv_route_wants(d, kind, sop_class)
 *		1 when d takes an object of kind (USV_DEST_SR or
 *		USV_DEST_TAGGED) and SOP class sop_class (NULL = unknown:
 *		then only the kind counts), else 0.
 *	usv_routes_from_config(cfg, out, errbuf, errlen)
 *		Builds every destination of cfg (calling AE = listen.ae_title,
 *		timeouts = listen.acse_timeout / dimse_timeout), applies the
 *		defaults, checks each and that names are unique. *out is
 *		written only on success. 0 or -EINVAL with a message.
 *	usv_route_put(sp, routes, objs, nobj, flags, write, ctx, &report,
 *	              errbuf, errlen)
 *		For each destination i of routes (in order) and each object
 *		k of objs (in order) with usv_route_wants(): tmp file,
 *		write(ctx, dest, i, k, tmp_path, err, errlen), then
 *		usv_spool_outbox_add (flags USV_ROUTE_SYNC_LATER: durable only
 *		after usv_route_sync) or usv_spool_outbox_put (durable now).
 *		Stops at the first failure: that tmp file is removed, files
 *		already put stay. *report (may be NULL) is always filled: the
 *		files put (they are the first nput write calls), the bit set
 *		of destinations that received one (bit i, i < 32), and on
 *		failure the destination and object that failed. 0, or the
 *		failure's code with a message ("outbox NAME: ...", "spool
 *		tmp: ..." or the write function's message).
 *	usv_route_sync(sp, routes, used, &bad, errbuf, errlen)
 *		One fsync of outbox/<dest>/ for each destination whose bit is
 *		set in used. Bit i of *bad (may be NULL) is ORed in for each
 *		that failed. 0, or the last failure's code with its message.
 *	usv_worker_settings_from_config(cfg, out, errbuf, errlen)
 *		The worker pool's per-batch settings (worker.h) from cfg:
 *		crop rules, frame policy, colour threshold, top_k,
 *		batch_wait_ms, the routes above, model.min_confidence and
 *		qa.labels / qa.ocr / qa.tessdata. Enum values are mapped
 *		name by name, never cast. *out written only on success.
 *		0, -EINVAL or -ENOMEM with a message.
 *
 * THREADS
 *	A usv_routes is a plain value (copy with '='); the functions keep no
 *	state and may run in any thread (the spool handle is thread-safe).
 */
#ifndef USV_RESULTS_ROUTE_H
#define USV_RESULTS_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct usv_config;          /* usv/config.h */
struct usv_spool;           /* spool.h */
struct usv_worker_settings; /* worker.h */

/* Result kinds a destination takes (bit set). */
#define USV_DEST_SR 0x1u
#define USV_DEST_TAGGED 0x2u
#define USV_DEST_STUDY_SR 0x4u /* study-level SR of the QA study tracker (study.h) */

#define USV_DEST_NAME_MAX 64 /* [A-Za-z0-9_.-], also the outbox folder name */
#define USV_DEST_MAX_SOP 16
#define USV_ROUTE_MAX_DESTS 16
#define USV_DEST_PATH_MAX 1024

/* SOP Class UID of the SR objects the workers write (Comprehensive SR). */
#define USV_ROUTE_SR_SOP_CLASS "1.2.840.10008.5.1.4.1.1.88.33"

typedef struct usv_dest {
	char name[USV_DEST_NAME_MAX];
	char called_ae[17];
	char host[256];
	uint16_t port;
	char calling_ae[17];                    /* our AE title towards this peer */
	unsigned kinds;                         /* USV_DEST_SR | USV_DEST_TAGGED; 0 = both */
	uint32_t nsop;                          /* 0 = any SOP class */
	char sop_classes[USV_DEST_MAX_SOP][65]; /* SOP classes of sent objects */
	uint32_t max_attempts;                  /* 0: 10 */
	double max_age_s;                       /* 0: 72 h */
	double backoff_base_s;                  /* 0: 30 s */
	double backoff_max_s;                   /* 0: 3600 s */
	int acse_timeout_s;                     /* 0: 10 */
	int dimse_timeout_s;                    /* 0: 60 */
	/* DICOM TLS (usv/dcm_scu.h); tls_ca_file "" = plain TCP */
	char tls_ca_file[USV_DEST_PATH_MAX];     /* CAs the peer's certificate chains to */
	char tls_certificate[USV_DEST_PATH_MAX]; /* client certificate, "" = none */
	char tls_private_key[USV_DEST_PATH_MAX];
	int tls_profile; /* usv_tls_profile */
} usv_dest;

struct usv_routes {
	size_t n;
	usv_dest dests[USV_ROUTE_MAX_DESTS];
};

/* One result object to route: its kind and SOP Class UID. */
struct usv_route_object {
	unsigned kind;         /* USV_DEST_SR or USV_DEST_TAGGED */
	const char *sop_class; /* NULL: unknown */
};

/* Fills tmp_path (an empty spool tmp/ file) with object k for destination
 * dests[i]. 0 or a negative code with a message in err. */
typedef int (*usv_route_write_fn)(void *ctx, const usv_dest *dest, size_t i, size_t k,
                                  const char *tmp_path, char *err, size_t errlen);

#define USV_ROUTE_SYNC_LATER 0x1u

/* What usv_route_put did. */
struct usv_route_report {
	size_t nput;        /* files put into outboxes */
	uint32_t used;      /* bit i: destination i received a file */
	size_t failed_dest; /* on failure: index of the destination ... */
	size_t failed_obj;  /* ... and of the object */
};

void usv_dest_defaults(usv_dest *d);
int usv_dest_check(const usv_dest *d, char *errbuf, size_t errlen);
int usv_route_wants(const usv_dest *d, unsigned kind, const char *sop_class);
int usv_routes_from_config(const struct usv_config *cfg, struct usv_routes *out, char *errbuf,
                           size_t errlen);
int usv_route_put(struct usv_spool *sp, const struct usv_routes *routes,
                  const struct usv_route_object *objs, size_t nobj, unsigned flags,
                  usv_route_write_fn write, void *ctx, struct usv_route_report *report,
                  char *errbuf, size_t errlen);
int usv_route_sync(struct usv_spool *sp, const struct usv_routes *routes, uint32_t used,
                   uint32_t *bad, char *errbuf, size_t errlen);
int usv_worker_settings_from_config(const struct usv_config *cfg, struct usv_worker_settings *out,
                                    char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
