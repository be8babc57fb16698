/*
 * NAME
 *	dcm_scu.h - send DICOM files by C-STORE and classify the real outcome
 *
 * SYNOPSIS
 *	#include "usv/dcm_scu.h"
 *
 * DESCRIPTION
 *	usv_scu_store() opens one association to a peer, proposes the file's
 *	SOP class with its own transfer syntax (plus Explicit/Implicit VR
 *	Little Endian for uncompressed files), sends it, releases, and reports
 *	the per-instance outcome the peer really gave (not DCMTK's summary,
 *	which says "success" on failure statuses):
 *
 *	  USV_SCU_SUCCESS    status 0x0000
 *	  USV_SCU_WARNING    0x0001, 0xB000, 0xB006, 0xB007, other 0xBxxx: stored
 *	  USV_SCU_RETRY      connection refused / unreachable / timeout,
 *	                     association rejected or aborted, DIMSE failure or
 *	                     timeout, response missing, status 0xA7xx
 *	                     (out of resources), 0xFExx (cancel)
 *	  USV_SCU_PERMANENT  no accepted presentation context for the file,
 *	                     status 0xA9xx, 0xCxxx, 0x0122, 0x0124 and any
 *	                     other failure status, file unreadable / not DICOM
 *
 *	usv_scu_store_many() sends several files over one association (one
 *	per 128 presentation contexts), each file with its own outcome.
 *
 *	DICOM TLS: with peer->tls_ca_file set, the association runs over TLS
 *	(DCMTK's DcmTLSTransportLayer, profile peer->tls_profile): the
 *	peer's certificate must chain to a CA of tls_ca_file (its host name
 *	is not checked, as in DCMTK and Orthanc), and tls_certificate /
 *	tls_private_key, when given, are presented as our client
 *	certificate. The files are read at every call, so renewed files
 *	apply to the next association. A file that cannot be loaded fails
 *	the call like an association that cannot be set up (RETRY for the
 *	first file, the others untried; reason "TLS: <file>: <reason>"), so
 *	a fixed file lets the retries through; a refused or failed
 *	handshake is RETRY too ("cannot connect ...: <reason>").
 *
 *	A new DCMTK SCU object is used per call (never reused). Calls may run
 *	in parallel from several threads once usv_scu_global_init() has run.
 *
 * THREADS
 *	usv_scu_global_init() must run in main() before SCU threads exist: it
 *	sets DCMTK's process-wide connect timeout and runs the network layer's
 *	one-time initialisation. It does not touch the environment: each
 *	store association's socket gets TCP_NODELAY (Nagle's algorithm off)
 *	and TCP_QUICKACK itself, when it is connected.
 */
#ifndef USV_DCM_SCU_H
#define USV_DCM_SCU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum usv_scu_outcome {
	USV_SCU_SUCCESS = 0,
	USV_SCU_WARNING = 1,
	USV_SCU_RETRY = 2,
	USV_SCU_PERMANENT = 3,
} usv_scu_outcome;

/* Status value when the peer sent no C-STORE response at all. */
#define USV_SCU_NO_STATUS 0xFFFFFFFFu

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

typedef struct usv_scu_peer {
	const char *called_ae; /* peer AE title, 1..16 chars */
	const char *host;      /* host name or IP */
	uint16_t port;
	const char *calling_ae; /* our AE title, 1..16 chars */
	int acse_timeout_s;     /* association set-up/release; 0: 10 */
	int dimse_timeout_s;    /* per DIMSE message; 0: 60 */
	uint32_t max_pdu;       /* 0: 65536 (range 4096..131072) */
	/* DICOM TLS; tls_ca_file NULL or "": plain TCP */
	const char *tls_ca_file;     /* PEM CAs the peer's certificate must chain to */
	const char *tls_certificate; /* PEM client certificate, or NULL/"" */
	const char *tls_private_key; /* its key (PEM, unencrypted), with tls_certificate */
	usv_tls_profile tls_profile;
} usv_scu_peer;

typedef struct usv_scu_result {
	usv_scu_outcome outcome;
	uint32_t status;   /* DIMSE status of the C-STORE response, or USV_SCU_NO_STATUS */
	char reason[256];  /* one line: what happened, e.g. "association rejected" or
	                      "status 0xA900 (Error: DataSetDoesNotMatchSOPClass)" */
	double elapsed_ms; /* from the call's start to this file's outcome */
	int tried;         /* usv_scu_store_many: 1 when this file was part of an
	                      attempt (sent, refused, or the file on which the
	                      association failed); 0 when it was left untried */
} usv_scu_result;

/* Most files per usv_scu_store_many() call. */
#define USV_SCU_MAX_FILES 1024

/* usv_scu_store_many flags */
#define USV_SCU_STOP_ON_RETRY 0x1u /* leave the rest untried after a RETRY outcome */

/*
 * usv_scu_global_init - set the TCP connect timeout (seconds, 1..600; 0:
 *	10) for all later associations, set TCP_NODELAY=1 in the environment
 *	(unless set; see THREADS) and initialise the network layer.
 *	Call once, before threads. Returns 0 or -EINVAL.
 */
int usv_scu_global_init(int connect_timeout_s);

/* usv_scu_outcome_name - "success", "warning", "retry", "permanent". */
const char *usv_scu_outcome_name(usv_scu_outcome o);

/*
 * usv_scu_classify_status - outcome class of a C-STORE response status
 *	(see the table above). Pure; used by usv_scu_store and tests.
 */
usv_scu_outcome usv_scu_classify_status(uint32_t status);

/*
 * usv_scu_store - send the DICOM file at path to peer; fill *res.
 *	Returns 0 when the peer stored it (SUCCESS or WARNING), -EAGAIN for
 *	RETRY, -USV_ERR_DICOM for PERMANENT, -EINVAL for bad arguments (res
 *	then has outcome PERMANENT). res->reason is always set; errbuf (may
 *	be NULL) gets "<path>: <reason>" on failure.
 */
int usv_scu_store(const usv_scu_peer *peer, const char *path, usv_scu_result *res, char *errbuf,
                  size_t errlen);

/*
 * usv_scu_store_many - send the n files paths[0..n-1] (1..USV_SCU_MAX_FILES)
 *	to peer, in order, over one association (a new one only where more
 *	than 128 presentation contexts are needed), and fill res[0..n-1]
 *	with each file's own outcome (classes as for usv_scu_store):
 *	- a file that cannot be read as DICOM, or whose presentation context
 *	  the peer did not accept, is PERMANENT; the others still go;
 *	- each file sent gets the outcome of its own C-STORE response;
 *	- when an association cannot be set up, or breaks (abort, DIMSE
 *	  failure or timeout, no response), the file being sent, or the
 *	  first file of that association, gets RETRY with the reason, and
 *	  every later file is left untried (tried = 0, outcome RETRY,
 *	  reason "not tried: ...");
 *	- with USV_SCU_STOP_ON_RETRY, a RETRY status (0xA7xx, 0xFExx) also
 *	  leaves the later files untried (the association is released).
 *	res[i].tried tells which files were part of an attempt.
 *	Returns 0 when the association(s) could be used (the per-file
 *	outcomes may still be failures), -EAGAIN when an association failed
 *	(see res), -EINVAL for bad arguments (every res PERMANENT, untried).
 *	errbuf (may be NULL) gets one line on failure.
 */
int usv_scu_store_many(const usv_scu_peer *peer, const char *const *paths, size_t n, unsigned flags,
                       usv_scu_result *res, char *errbuf, size_t errlen);

/*
 * usv_scu_echo - C-ECHO the peer (probe before draining a backlog). Same
 *	return convention as usv_scu_store.
 */
int usv_scu_echo(const usv_scu_peer *peer, usv_scu_result *res, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
