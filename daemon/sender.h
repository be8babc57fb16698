/*
 * NAME
 *	sender.h - deliver result objects from the spool outboxes by C-STORE
 *
 * SYNOPSIS
 *	#include "sender.h"
 *
 * DESCRIPTION
 *	One sender serves a list of destinations (usv_dest, owned by
 *	results_route.h, built from the configuration by
 *	usv_routes_from_config()). Each destination has an outbox in the
 *	spool (outbox/<name>/, see spool.h); result files are put there by
 *	usv_route_put() (the workers, and usv_sender_enqueue() below), which
 *	applies the routing rule usv_route_wants(). The sender takes
 *	the due entries of a destination, oldest first, at most max_per_poll
 *	(and USV_SCU_MAX_FILES), sends them over ONE association with
 *	usv_scu_store_many() (dcm_scu.h; each entry gets its own C-STORE
 *	response), and then settles each entry that was tried on its own:
 *
 *	  success / warning   entry marked sent (spool: sent/)
 *	  retry               attempt count + 1; if attempts >= max_attempts
 *	                      or the entry is older than max_age_s: dead
 *	                      letter with the reason; else the next try is
 *	                      now + backoff (below), stored in the spool
 *	  permanent           dead letter at once, with the reason
 *
 *	Backoff after the n-th failed attempt (n >= 1):
 *	  d = min(backoff_max_s, backoff_base_s * 2^(n-1)); delay uniform in
 *	  [d/2, d] ("equal jitter"). Attempt counts, next-try times and last
 *	  errors live in the spool (durable), so they survive restarts.
 *
 *	After a retryable failure (refused, rejected, aborted, timeout,
 *	0xA7xx) the whole destination waits until that entry's next-try
 *	time: the other due entries are not tried meanwhile (one failing
 *	attempt per backoff period per destination, not one per entry), and
 *	their attempt counts are not raised. In a multi-entry association
 *	this means: an association that cannot be set up counts as an
 *	attempt of its first entry only; one that breaks, or a 0xA7xx /
 *	0xFExx answer, counts for the entry being sent, and the later
 *	entries are not sent (left untried, untouched). A permanent failure
 *	of one entry (no presentation context, 0xA9xx, 0xCxxx, ...) dead-
 *	letters that entry only; the others go on over the same association.
 *	This block is kept in memory only; after a restart the first due
 *	entry probes the peer.
 *
 *	A destination with tls_ca_file set is reached over DICOM TLS (its CA
 *	file, optional client certificate and profile passed to
 *	usv_scu_store_many, which reads the files at each association, so
 *	renewed files apply without a reload). A TLS file that cannot be
 *	loaded, and a refused handshake, are retried like a refused
 *	connection.
 *
 *	Entries are settled (moved to sent/ or dead/, or deferred) after the
 *	association ends: a crash in between re-sends the entries of that
 *	association (the same SOP Instance UIDs, so the peer keeps one copy).
 *
 *	Times are wall-clock seconds since the epoch (double), because the
 *	next-try times are stored on disk.
 *
 *	No logging inside: events go to the optional log callback.
 *
 * THREADS
 *	Either call usv_sender_poll() from one thread of your own, or run the
 *	sender's thread with usv_sender_start()/usv_sender_stop(). Counters
 *	may be read from any thread. Requires usv_scu_global_init() first.
 */
#ifndef USV_SENDER_H
#define USV_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "results_route.h"

#ifdef __cplusplus
extern "C" {
#endif

struct usv_spool; /* spool.h */

/* Log levels of the callback (syslog numbers). */
#define USV_SENDER_LOG_ERR 3
#define USV_SENDER_LOG_WARNING 4
#define USV_SENDER_LOG_INFO 6
#define USV_SENDER_LOG_DEBUG 7

typedef void (*usv_sender_log_fn)(void *ctx, int level, const char *dest, const char *msg);

typedef struct usv_sender_opts {
	usv_sender_log_fn log; /* NULL: silent */
	void *log_ctx;
	double poll_interval_s; /* thread mode: longest sleep between polls; 0: 1 s */
	uint32_t max_per_poll;  /* entries sent per destination per poll (one
	                           association); 0: 64, at most USV_SCU_MAX_FILES */
	uint64_t jitter_seed;   /* 0: seeded from time and pid */
} usv_sender_opts;

/* Counters of one destination (monotonic since create, except queued). */
typedef struct usv_sender_counters {
	uint64_t attempts;   /* C-STORE attempts made */
	uint64_t sent;       /* delivered (success + warning) */
	uint64_t warnings;   /* delivered with a warning status */
	uint64_t retries;    /* attempts that failed retryably */
	uint64_t dead;       /* dead-lettered */
	uint64_t skipped;    /* due entries left for the next poll (max_per_poll) */
	double last_success; /* epoch s, 0 = never */
	double last_failure; /* epoch s, 0 = never */
	char last_error[256];
} usv_sender_counters;

typedef struct usv_sender usv_sender;

/*
 * usv_backoff_delay - the delay after the n-th failed attempt (see above);
 *	u is a uniform number in [0,1). Pure, for tests and callers.
 */
double usv_backoff_delay(const usv_dest *d, uint32_t n, double u);

/*
 * usv_sender_create - a sender for n destinations (copied; defaults
 *	applied; each checked) over spool (borrowed: must outlive the
 *	sender). Creates missing outbox folders. *out owned by the caller,
 *	free with usv_sender_free(). 0, -EINVAL, -ENOMEM or a spool error.
 */
int usv_sender_create(struct usv_spool *spool, const usv_dest *dests, size_t n,
                      const usv_sender_opts *opts, usv_sender **out, char *errbuf, size_t errlen);

/*
 * usv_sender_poll - one pass over all destinations at time now: send the
 *	due entries (at most max_per_poll each). *next_due (may be NULL)
 *	receives the earliest next-try time of the waiting entries (0 if none
 *	is waiting). Returns the number of entries handled (sent, retried or
 *	dead) or a negative code when the spool failed.
 */
int usv_sender_poll(usv_sender *s, double now, double *next_due);

/*
 * usv_sender_start - run usv_sender_poll in a thread of the sender's own,
 *	sleeping until the next due time, poll_interval_s at most, or a
 *	usv_sender_wake(). usv_sender_stop - ask it to stop and join it (the
 *	send in progress completes first). 0 or -errno.
 */
int usv_sender_start(usv_sender *s);
void usv_sender_stop(usv_sender *s);

/*
 * usv_sender_enqueue - put a copy of the result file at path into the
 *	outbox of every destination that wants it (usv_route_wants with kind
 *	and the object's SOP class), through usv_route_put (durable at once),
 *	then wake the sender. path itself is left alone (the caller removes
 *	it). *nqueued (may be NULL) gets the number of outboxes. 0 or a
 *	negative code (copies already made stay queued).
 */
int usv_sender_enqueue(usv_sender *s, unsigned kind, const char *sop_class, const char *path,
                       size_t *nqueued, char *errbuf, size_t errlen);

/*
 * usv_sender_wake - a new result was put into an outbox: poll now. Call it
 *	after every usv_spool_outbox_put() of your own: an outbox whose items
 *	are all waiting is not re-read until the earliest next-try time, and
 *	an empty one for up to 30 s, unless a wake-up arrives.
 */
void usv_sender_wake(usv_sender *s);

/* usv_sender_ndest / usv_sender_counters_get - counters of destination i. */
size_t usv_sender_ndest(const usv_sender *s);
int usv_sender_counters_get(usv_sender *s, size_t i, usv_dest *dest_out, usv_sender_counters *out);

/* usv_sender_free - stop (if started) and free; NULL is fine. */
void usv_sender_free(usv_sender *s);

#ifdef __cplusplus
}
#endif
#endif
