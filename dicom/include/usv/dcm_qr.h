/*
 * NAME
 *	dcm_qr.h - query/retrieve SCU: find studies, fetch them by C-GET or C-MOVE
 *
 * SYNOPSIS
 *	#include "usv/dcm_qr.h"
 *
 *	usv_qr_peer p = {"pacs.example", 104, "PACS", "USVIEW", 30};
 *	usv_qr_study *st = NULL;
 *	size_t n = 0, ok = 0, bad = 0;
 *	int rc = usv_qr_find_studies(&p, "20240101-20240131", "US", 1000,
 *	                             &st, &n, err, sizeof err);
 *	for (size_t i = 0; rc == 0 && i < n; i++)
 *		usv_qr_get_study(&p, st[i].study_uid, "/data/in", NULL, NULL,
 *		                 &ok, &bad, err, sizeof err);
 *	free(st);
 *
 * DESCRIPTION
 *	Study Root Query/Retrieve at STUDY level (PS3.4 C.6.2) over one
 *	association per call (a new DCMTK SCU object each time, released or
 *	aborted before the call returns). AE titles follow usv/dcm_ae.h.
 *
 *	usv_qr_find_studies() sends a C-FIND with the keys
 *	QueryRetrieveLevel STUDY, StudyInstanceUID (universal),
 *	StudyDate = date_range, ModalitiesInStudy = modality and
 *	NumberOfStudyRelatedInstances (universal), and collects the pending
 *	responses in the peer's order. A response whose Study Instance UID
 *	is not a valid UID (see below) is skipped.
 *
 *	usv_qr_get_study() sends a C-GET for one study and receives the
 *	instances as C-STORE sub-operations on the same association. It
 *	proposes Study Root GET plus, in the SCP role, the ultrasound
 *	(single and multi-frame, also the retired ones) and secondary
 *	capture (single, multi-frame grey byte/word and true colour) storage
 *	classes, each with one presentation context per transfer syntax
 *	(JPEG-LS lossless/near-lossless, JPEG lossless SV1/P14, RLE, JPEG
 *	baseline/extended, JPEG 2000 lossless/lossy, explicit little/big
 *	endian, deflated, implicit little endian), so a peer can send every
 *	instance in the syntax it holds it in. 105 contexts: all fit one
 *	association.
 *
 *	usv_qr_move_study() is the same for peers without C-GET: a storage
 *	SCP of our own (AE move_dest_ae, all interfaces, listen_port) runs
 *	on an internal thread for the duration of the call, the C-MOVE asks
 *	the peer to send the study to move_dest_ae, and the call returns
 *	when the peer's final C-MOVE response has arrived and the receiving
 *	association has ended. The peer must know move_dest_ae as this
 *	host and port (its own configuration). The SCP accepts any calling
 *	AE title, only the called AE title move_dest_ae, and the same
 *	storage classes and transfer syntaxes (the sender's syntax when it
 *	offers it).
 *
 *	Received instances (both ways): streamed to a temporary file in dir
 *	(".<uid>.XXXXXX.part", the network transfer syntax in the meta
 *	header: the instance keeps the syntax it was sent in), checked (the
 *	data set's SOP Instance UID equals the request's and its Study
 *	Instance UID is the requested study), fsync'ed and renamed to
 *	dir/<SOPInstanceUID>.dcm (an existing file of that name is
 *	replaced: the same instance again); then cb, then the C-STORE
 *	response. An instance whose SOP Instance UID is not a valid UID
 *	(1..64 characters of digits and '.', no empty component) or that
 *	fails the check is not kept and answered with a failure status
 *	(0xC000 / 0xA900); one that cannot be written is answered 0xA700
 *	(out of resources).
 *	At most USV_QR_MAX_INSTANCES instances per call: the association is
 *	aborted beyond it (-USV_ERR_LIMIT).
 *
 * ERRORS
 *	All three return 0 or a negative code, and err (may be NULL) gets
 *	one line naming the peer ("AE@host:port"), what failed and, for
 *	retrieves, how many instances arrived:
 *	  -EINVAL          bad arguments (AE titles, host, port, UID, date
 *	                   range or modality syntax, dir not a folder)
 *	  -ECONNREFUSED    no TCP connection (refused, unreachable, connect
 *	                   timeout)
 *	  -EACCES          association rejected by the peer (e.g. called AE
 *	                   title wrong, calling AE title unknown to it)
 *	  -USV_ERR_UNSUPPORTED  the peer accepted none of the Q/R contexts
 *	                   (it does not offer C-FIND / C-GET / C-MOVE)
 *	  -ETIMEDOUT       no answer within timeout_s: to the association
 *	                   request (a peer that accepts TCP and stays
 *	                   silent) or during the exchange
 *	  -ECONNRESET      the peer aborted or the connection broke mid-way
 *	                   ("peer went away during C-GET after N instances
 *	                   arrived")
 *	  -USV_ERR_DICOM   the peer answered with a failure status (status
 *	                   and its meaning in err, e.g. 0xA801 move
 *	                   destination unknown), or another DIMSE failure
 *	  -ENOENT          retrieve of a study the peer does not have:
 *	                   either it reported success with no
 *	                   sub-operations at all, or it failed the
 *	                   retrieve with nothing sent (Orthanc: 0xC000)
 *	                   and a C-FIND for the study UID (one more
 *	                   association) found no match
 *	  -USV_ERR_LIMIT   more than max_results studies / more than
 *	                   USV_QR_MAX_INSTANCES instances
 *	  -ECANCELED       cb returned non-zero (C-GET: the association is
 *	                   aborted; C-MOVE: the instances still coming
 *	                   are refused with 0xA700 until the peer ends
 *	                   the move)
 *	  -EADDRINUSE etc. usv_qr_move_study: listen_port cannot be opened
 *	Files already written stay in dir whatever the outcome.
 *
 * CONTRACTS
 *	peer: host (1..57 characters), port 1..65535, called_ae and
 *	calling_ae valid AE titles, timeout_s the ACSE and DIMSE timeout
 *	in seconds (1..3600; 0: 30). The TCP connect timeout is the
 *	process-wide one of usv_scu_global_init().
 *	usv_qr_find_studies(p, date_range, modality, max_results, &out, &n,
 *	                    err, errlen)
 *		date_range: NULL or "" (any date), "YYYYMMDD",
 *		"YYYYMMDD-", "-YYYYMMDD" or "YYYYMMDD-YYYYMMDD"; modality:
 *		NULL or "" (any) or a code string of 1..16 characters
 *		A-Z 0-9 space and '_'. max_results 1..USV_QR_MAX_STUDIES.
 *		0 with *out (caller frees with free(); NULL when *n is 0)
 *		and *n. study_date is "" when the peer sent none or not 8
 *		digits; modalities holds all values '\\'-joined (cut to 64
 *		bytes); n_instances is -1 when the peer sent none. On
 *		failure *out and *n are untouched (nothing is returned
 *		beyond max_results: -USV_ERR_LIMIT).
 *	usv_qr_get_study(p, study_uid, dir, cb, ud, &n_ok, &n_failed, err,
 *	                 errlen)
 *		study_uid a valid UID; dir an existing writable folder.
 *		*n_ok: instances written to dir by this call (also on
 *		failure); *n_failed: failed sub-operations as the peer's
 *		last C-GET response counted them (those we refused
 *		included), or, when the peer sent no count, the instances
 *		we refused. n_ok and n_failed may be NULL. 0 when the final
 *		status is success or warning (0xB000 etc.: some
 *		sub-operations failed, see *n_failed) and at least one
 *		sub-operation took place.
 *		cb (may be NULL) is called with the final path of each
 *		written instance, in arrival order, on the calling thread;
 *		non-zero from cb stops the retrieve (-ECANCELED).
 *	usv_qr_move_study(p, study_uid, move_dest_ae, listen_port, dir, cb,
 *	                  ud, &n_ok, &n_failed, err, errlen)
 *		As usv_qr_get_study; listen_port 1..65535, move_dest_ae a
 *		valid AE title. cb runs on the receiving thread (one call
 *		at a time, never after the function returns).
 *
 * THREADS
 *	Calls with distinct arguments may run in parallel from several
 *	threads once usv_dcm_global_init() (and usv_scu_global_init(), for
 *	its connect timeout) have run; nothing is shared between calls.
 *	usv_qr_move_study listens through DCMTK's own network set-up, which
 *	consults dcmExternalSocketHandle: do not run it in a process whose
 *	storage SCP (usv/dcm_scp.h) is accepting at the same time.
 */
#ifndef USV_DCM_QR_H
#define USV_DCM_QR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_QR_MAX_STUDIES 1000000  /* cap on max_results */
#define USV_QR_MAX_INSTANCES 100000 /* instances received per retrieve */

typedef struct usv_qr_peer {
	const char *host;
	int port;
	const char *called_ae;
	const char *calling_ae;
	int timeout_s;
} usv_qr_peer;

typedef struct usv_qr_study {
	char study_uid[65];
	char study_date[9];
	char modalities[65];
	int n_instances;
} usv_qr_study;

typedef int (*usv_qr_file_cb)(const char *path, void *ud);

int usv_qr_find_studies(const usv_qr_peer *p, const char *date_range, const char *modality,
                        size_t max_results, usv_qr_study **out, size_t *n, char *err,
                        size_t errlen);
int usv_qr_get_study(const usv_qr_peer *p, const char *study_uid, const char *dir,
                     usv_qr_file_cb cb, void *ud, size_t *n_ok, size_t *n_failed, char *err,
                     size_t errlen);
int usv_qr_move_study(const usv_qr_peer *p, const char *study_uid, const char *move_dest_ae,
                      int listen_port, const char *dir, usv_qr_file_cb cb, void *ud, size_t *n_ok,
                      size_t *n_failed, char *err, size_t errlen);

/* usv_qr_uid_valid - 1 when s is a valid UID string (see DESCRIPTION), else 0. Pure. */
int usv_qr_uid_valid(const char *s);

#ifdef __cplusplus
}
#endif
#endif
