/*
 * NAME
 *	dcm_scp.h - the storage SCP (DICOM receiver) of usviewd
 *
 * SYNOPSIS
 *	#include "usv/dcm_scp.h"
 *
 * DESCRIPTION
 *	usv_scp_start() binds the listen socket and starts one accept thread
 *	plus cfg->max_assoc worker threads (one association per worker at a
 *	time; a fresh DCMTK SCP object per association). When all workers
 *	are busy a new association is rejected transient, "local limit
 *	exceeded", so the sender retries later.
 *
 *	Association policy: the called AE must equal cfg->aet; when
 *	cfg->npeers > 0 the calling AE must be listed, and when that entry
 *	has an address, the peer's IP must equal it. Otherwise the
 *	association is rejected permanent (calling / called AE not
 *	recognised). Verification (C-ECHO) is answered.
 *
 *	Presentation contexts: US Image, US Multi-frame, retired US Image and
 *	US Multi-frame, Secondary Capture, Multi-frame Grayscale Byte /
 *	Word and True Colour SC, plus cfg->extra_sop_classes; each with every
 *	transfer syntax we decode (JPEG-LS, JPEG lossless, RLE, JPEG baseline
 *	and extended, JPEG 2000 and JPEG 2000 lossless, explicit LE/BE,
 *	deflated, implicit LE).
 *
 *	C-STORE: the data set streams into spool tmp/<id>.part (never whole in
 *	memory); the file is checked (meta header readable, SOP Instance UID
 *	and SOP Class UID equal those of the request, Rows/Columns within
 *	caps when present), fsynced, renamed to incoming/, the directory
 *	fsynced, and only then is success (0x0000) answered. Failures:
 *	0xA700 out of resources (free space below cfg->min_free_bytes, spool
 *	I/O error), 0xA900 data set does not match SOP class (UID mismatch),
 *	0xC000 cannot understand (unreadable data set). A rejected file never
 *	reaches incoming/.
 *
 *	Hostile and slow peers: a connection is handed to DCMTK only when
 *	its whole A-ASSOCIATE-RQ PDU has arrived (so negotiation never waits
 *	on the network); until then it is "half-open". Half-open connections
 *	are capped per peer address (cfg->max_pending_per_address) and
 *	overall (512, at most half of RLIMIT_NOFILE); at a cap the oldest
 *	half-open connection (of that address first) is closed to make room,
 *	so a new client always gets in. A half-open connection older than
 *	the ACSE timeout is closed; one whose first byte is not an
 *	A-ASSOCIATE-RQ (0x01) or that announces an RQ over 256 KiB is closed
 *	at once. cfg->max_assoc_per_address > 0 caps the associations of one
 *	address; a further one is rejected transient, "local limit
 *	exceeded". An established association silent for dimse_timeout_s,
 *	also in the middle of a PDU, is aborted (and closed at the latest
 *	acse_timeout_s later if the peer does not close it).
 *
 *	DICOM TLS (cfg->tls.port > 0): a second listen socket where every
 *	connection first completes a TLS handshake (certificate and key from
 *	PEM files, the BCP 195 profile chosen, client certificates verified
 *	against cfg->tls.ca_file and, with require_client_certificate,
 *	demanded) and only then its A-ASSOCIATE-RQ; the same association
 *	policy, workers and caps apply. Handshake and RQ both run inside the
 *	accept thread without blocking it (see dcm_scp.cpp), so stalled TLS
 *	peers are half-open connections like stalled plain ones. A refused
 *	handshake (no client certificate, one from an untrusted CA, plain
 *	DICOM on the TLS port, no common cipher, ...) is reported through
 *	cbs->on_assoc (accepted 0, tls 1, outcome "rejected: TLS handshake
 *	failed: <OpenSSL reason>") and counted in tls_handshake_failed.
 *	cfg->port may be 0 when a TLS port is given: TLS only.
 *
 *	The library does not log. It calls cbs->on_assoc once per association
 *	(after it ends or is rejected) and cbs->on_instance once per C-STORE,
 *	from the worker or accept thread; callbacks must be thread-safe and
 *	quick. No patient data is passed (UIDs, AE titles, addresses, sizes).
 *
 * CONTRACTS
 *	usv_scp_config_init(cfg)
 *		Defaults: bind NULL (all IPv4 addresses), port 11112,
 *		aet "USVIEW", no peer list (any calling AE), max_assoc 4,
 *		acse_timeout_s 10, dimse_timeout_s 60, max_pdu 65536,
 *		min_free_bytes 0 (check disabled), max_pending_per_address
 *		32, max_assoc_per_address 0 (only max_assoc).
 *	usv_scp_start(cfg, cbs, sink, &scp, errbuf, errlen)
 *		cfg, cbs, sink and the strings cfg points to are copied; cbs
 *		may be NULL; sink->ctx must outlive the scp. The DICOM global init
 *		(usv_dcm_global_init) must have run, and the caller should
 *		block SIGTERM/SIGINT before calling (threads inherit the mask).
 *		Returns 0, -EINVAL (bad config: port (0 only with a TLS
 *		port; the TLS port differs from it), AE title, max_assoc 1..64,
 *		timeouts 1..3600, max_pdu 4096..131072,
 *		max_pending_per_address 1..1024, max_assoc_per_address
 *		0..64, where max_assoc or more adds no limit), -EADDRINUSE etc.
 *		(bind/listen), -USV_ERR_DICOM, -USV_ERR_FORMAT (a TLS file
 *		that cannot be loaded: errbuf names it and OpenSSL's reason).
 *	usv_scp_stop(scp)
 *		Stops accepting, lets running associations finish (they end at
 *		the latest by the DIMSE timeout), joins all threads, frees.
 *		NULL-safe.
 *	usv_scp_get_stats(scp, &st)
 *		Counters since start (thread-safe snapshot).
 *	usv_scp_set_access(scp, peers, npeers, min_free_bytes, errbuf, errlen)
 *		Replaces the calling-AE allow-list and the free-space
 *		watermark of a running SCP (configuration reload). Takes
 *		effect for associations negotiated and C-STOREs received
 *		afterwards; the list is copied. 0 or -EINVAL (too many peers).
 *	usv_scp_set_tls(scp, tls, errbuf, errlen)
 *		Loads certificate, key and CA file again (renewed files, or
 *		other paths / profile / client certificate policy) into a new
 *		TLS context and swaps it in: handshakes that start afterwards
 *		use it; connections already past their handshake keep theirs.
 *		tls->port must be the running TLS port. On any error the old
 *		context stays and errbuf says why. 0, -EINVAL (no TLS port
 *		running, other port), -USV_ERR_FORMAT (file not loadable).
 *	usv_scp_tls_info(scp, buf, len)
 *		One line about the certificate served now: subject, issuer,
 *		serial (hex), expiry. 0 or -EINVAL (no TLS port).
 *	usv_scp_drain(scp)
 *		Stops accepting at once: the listen sockets stop listening
 *		(new connections are refused by the kernel) and half-open
 *		connections are closed; associations queued or running go
 *		on. Thread-safe, idempotent. 0 or -EINVAL (scp NULL).
 *	usv_scp_in_progress(scp)
 *		Associations queued for or running on a worker (>= 0).
 *	usv_scp_abort(scp)
 *		Shuts down the sockets of every association queued or
 *		running: each ends at its next read or write (outcome
 *		"aborted" or "error: ..."). Returns how many were cut.
 *
 * PROXY PROTOCOL
 *	A connection from an address in cfg->proxy_from must start with a
 *	PROXY protocol v2 header (HAProxy send-proxy-v2; parsed by
 *	usv_proxy_v2_parse). It is read on the accept thread like the
 *	A-ASSOCIATE-RQ (peeked, consumed only when complete, never
 *	blocking, within the ACSE timeout), then the RQ (or, on the TLS
 *	port, the TLS handshake) follows. The PROXY command's source
 *	address then stands for the peer everywhere: allowed_peers host
 *	checks, max_assoc_per_address, max_pending_per_address (a
 *	connection still waiting for its header is bounded only by the
 *	overall cap, so the balancer's own address is not capped) and every
 *	peer_addr passed to the callbacks. LOCAL (a balancer's health
 *	check) keeps the socket's address. No valid header from a listed
 *	address, or a header from any other address, closes the connection,
 *	reports it through on_assoc ("rejected: PROXY ...") and counts it in
 *	proxy_refused. usv_scp_start returns -EINVAL for an entry that is
 *	not an IPv4 address or block.
 */
#ifndef USV_DCM_SCP_H
#define USV_DCM_SCP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_SCP_MAX_PEERS 256
#define USV_SCP_MAX_EXTRA_SOP 64

typedef struct usv_scp_peer {
	char aet[17];  /* calling AE title, trimmed */
	char addr[64]; /* numeric IPv4/IPv6 address; "" = any */
} usv_scp_peer;

#ifndef USV_TLS_PROFILE_DEFINED
#define USV_TLS_PROFILE_DEFINED
/* DICOM TLS security profiles (PS3.15 B.9-B.11, DCMTK's TSP_Profile_BCP195*).
 * The retired Basic and AES profiles are not offered. */
typedef enum usv_tls_profile {
	USV_TLS_BCP195 = 0,    /* BCP 195: prefers TLS 1.2+, may fall back to 1.0 */
	USV_TLS_BCP195_ND = 1, /* non-downgrading BCP 195: TLS 1.2 or newer only */
	USV_TLS_BCP195_EX = 2, /* extended BCP 195: TLS 1.2 only, adds ECDSA suites */
} usv_tls_profile;
#endif

/* The TLS port of the SCP. Paths are copied. */
typedef struct usv_scp_tls {
	int port;                /* 0: no TLS port; else 1..65535, not cfg->port */
	const char *certificate; /* PEM: our certificate (chain) */
	const char *private_key; /* PEM, unencrypted */
	const char *ca_file;     /* PEM: CAs trusted for client certificates; NULL/"": none */
	int require_client_certificate; /* 1: refuse clients without a valid certificate;
	                                   0: verify one when offered (ca_file set) */
	usv_tls_profile profile;
} usv_scp_tls;

typedef struct usv_scp_config {
	const char *bind_addr; /* numeric IPv4 address; NULL/"" = 0.0.0.0 */
	int port;              /* 1..65535 */
	const char *aet;       /* our AE title, 1..16 chars */
	const usv_scp_peer *peers;
	size_t npeers; /* 0: any calling AE accepted */
	int max_assoc;
	int acse_timeout_s;
	int dimse_timeout_s;
	unsigned max_pdu;
	const char *const *extra_sop_classes;
	size_t nextra;
	uint64_t min_free_bytes;     /* 0xA700 below this (0 = off) */
	int max_pending_per_address; /* half-open connections per peer address */
	int max_assoc_per_address;   /* associations per peer address; 0 = no cap */
	usv_scp_tls tls;             /* tls.port 0: plain DICOM only */
	/* load balancers that send a PROXY protocol v2 header: IPv4
	 * addresses or a.b.c.d/n blocks (usv/proxy_v2.h); 0: none */
	const char *const *proxy_from;
	size_t nproxy_from;
} usv_scp_config;

/* Passed to on_stored after the durable commit into incoming/. */
typedef struct usv_stored_info {
	const char *sop_class_uid;
	const char *sop_instance_uid;
	const char *transfer_syntax;
	const char *calling_aet;
	const char *called_aet;
	const char *peer_addr;
	uint64_t bytes; /* file size in the spool */
} usv_stored_info;

typedef struct usv_scp_assoc_record {
	const char *peer_addr;
	const char *calling_aet;
	const char *called_aet;
	const char *outcome; /* "released", "aborted", "rejected: ...", "error: ..." */
	int accepted;        /* 0: rejected at negotiation */
	unsigned n_stored, n_failed, n_echo;
	uint64_t bytes;
	double seconds;
	int tls;                      /* 1: over the TLS port */
	const char *peer_certificate; /* TLS: the client certificate's subject, or "" */
} usv_scp_assoc_record;

typedef struct usv_scp_instance_record {
	const char *peer_addr;
	const char *calling_aet;
	const char *sop_class_uid;
	const char *sop_instance_uid; /* as sent by the peer (printable, capped) */
	const char *spool_id;         /* "" when not stored */
	uint64_t bytes;
	unsigned status;    /* DIMSE status answered */
	const char *detail; /* "" or why not stored */
	double seconds;
} usv_scp_instance_record;

typedef struct usv_scp_callbacks {
	void *ctx;
	/* after commit into incoming/; return value ignored */
	int (*on_stored)(void *ctx, const char *spool_id, const usv_stored_info *info);
	void (*on_assoc)(void *ctx, const usv_scp_assoc_record *rec);
	void (*on_instance)(void *ctx, const usv_scp_instance_record *rec);
} usv_scp_callbacks;

/* Where received files go. dicom/ does not know the spool; daemon/receiver.c
 * binds these to spool.h (tmp_create = usv_spool_tmp_create, commit =
 * usv_spool_commit, discard = usv_spool_discard, low_space =
 * usv_spool_low_space). All four are required and must be thread-safe. */
typedef struct usv_scp_sink {
	void *ctx;
	/* create an empty private file, fill path; 0 or -errno */
	int (*tmp_create)(void *ctx, char *path, size_t pathlen);
	/* fsync + rename into the incoming queue + fsync dir; fills id */
	int (*commit)(void *ctx, const char *tmp_path, char *id, size_t idlen);
	/* unlink a tmp file */
	void (*discard)(void *ctx, const char *tmp_path);
	/* 1 when free space is below watermark bytes (0 = no check) */
	int (*low_space)(void *ctx, uint64_t watermark);
} usv_scp_sink;

typedef struct usv_scp_stats {
	uint64_t assoc_accepted, assoc_rejected, assoc_busy, assoc_active;
	uint64_t stored, store_failed, echo, bytes;
	/* connections closed before their A-ASSOCIATE-RQ was complete:
	 * evicted at a half-open cap, timed out (ACSE timeout), or not
	 * DICOM (first byte not 0x01, RQ length out of range) */
	uint64_t halfopen_evicted, halfopen_timeout, not_dicom;
	uint64_t assoc_rejected_addr;  /* over max_assoc_per_address (also in assoc_rejected) */
	uint64_t halfopen_active;      /* half-open connections now */
	uint64_t tls_handshake_failed; /* TLS handshakes refused (also in assoc_rejected) */
	/* connections closed for their PROXY header: from a proxy_from
	 * address without a valid v2 header, or with a header from any
	 * other address (also in assoc_rejected) */
	uint64_t proxy_refused;
	uint64_t draining; /* 1 after usv_scp_drain() */
} usv_scp_stats;

typedef struct usv_scp usv_scp;

void usv_scp_config_init(usv_scp_config *cfg);
int usv_scp_start(const usv_scp_config *cfg, const usv_scp_callbacks *cbs, const usv_scp_sink *sink,
                  usv_scp **out, char *errbuf, size_t errlen);
void usv_scp_stop(usv_scp *scp);
void usv_scp_get_stats(usv_scp *scp, usv_scp_stats *st);
int usv_scp_set_access(usv_scp *scp, const usv_scp_peer *peers, size_t npeers,
                       uint64_t min_free_bytes, char *errbuf, size_t errlen);
int usv_scp_set_tls(usv_scp *scp, const usv_scp_tls *tls, char *errbuf, size_t errlen);
int usv_scp_tls_info(usv_scp *scp, char *buf, size_t len);
int usv_scp_drain(usv_scp *scp);
int usv_scp_in_progress(usv_scp *scp);
int usv_scp_abort(usv_scp *scp);

#ifdef __cplusplus
}
#endif
#endif
