/*
 * NAME
 *	spool.h - durable on-disk queues of usviewd (Postfix-style directories)
 *
 * SYNOPSIS
 *	#include "spool.h"
 *
 * DESCRIPTION
 *	The spool root holds one directory per state; a state change is one
 *	rename(2) followed by an fsync of the target directory (see the design
 *	comment at the top of spool.c):
 *
 *	  tmp/        files being written (receiver, results writer)
 *	  incoming/   committed instances waiting for a worker   <id>.dcm
 *	  active/     instances a worker has claimed              <id>.dcm
 *	  done/       classified                                  <id>.dcm
 *	  failed/     could not be processed        <id>.dcm + <id>.reason
 *	  excluded/   not processed by policy       <id>.dcm + <id>.reason
 *	  outbox/<dest>/  results to send     <name>.dcm [+ <name>.state]
 *	  sent/<dest>/    sent results                       <name>.dcm
 *	  dead/<dest>/    given-up results     <name>.dcm + <name>.reason
 *
 *	Durability has one owner, the spool: whoever writes a file (the
 *	receiver's SCP, the result writers of dicom/) only writes and closes
 *	it under tmp/; usv_spool_commit(), usv_spool_outbox_put() and
 *	usv_spool_outbox_add() fsync it, rename it into its state directory
 *	and fsync that directory (outbox_add leaves the directory fsync to
 *	one usv_spool_outbox_sync() per batch). No writer fsyncs, so no file
 *	is fsynced twice.
 *
 *	Ids are generated (never from the sender's data): 16 hex digits of
 *	microseconds since the epoch, '-', 8 hex digits of a per-process
 *	counter mixed with the pid, e.g. "00060f1c2a3b4c5d-0001a2b3". They sort
 *	by creation time; a valid id matches [0-9a-f]{16}-[0-9a-f]{8}.
 *	Destination names match [A-Za-z0-9_.-]{1,64} and do not start with '.'.
 *
 * CONTRACTS (all return 0 or a negative errno-style code)
 *	usv_spool_open(root, &sp, errbuf, errlen)
 *		Creates root and the state directories (mode 0700) if needed
 *		and builds the in-memory listing (queue of incoming/, counts
 *		per state and per destination) from the directories. The
 *		handle is thread-safe. One process owns a spool: the listing
 *		is not shared with other processes (see spool.c).
 *		usv_spool_free(sp) releases it (NULL-safe).
 *	usv_spool_recover(sp, &requeued, &removed)
 *		Call once at start, before any worker or receiver runs: moves
 *		active/ back to incoming/, deletes everything in tmp/, deletes
 *		orphan .reason/.state files, rebuilds the listing. Counters
 *		may be NULL.
 *	usv_spool_tmp_create(sp, &fd, path, pathlen)
 *		New empty file tmp/<id>.part, O_CREAT|O_EXCL|O_CLOEXEC, 0600;
 *		*fd open for writing (caller closes), path filled. fd may be
 *		NULL (file created and closed; for writers that open by name).
 *	usv_spool_commit(sp, tmp_path, id, idlen)
 *		tmp_path must be a file under tmp/. fsyncs it, renames it to
 *		incoming/<id>.dcm, fsyncs incoming/. On failure tmp_path is
 *		left for the caller to unlink (usv_spool_discard).
 *	usv_spool_discard(sp, tmp_path)
 *		Unlinks a tmp file (ignores ENOENT).
 *	usv_spool_claim(sp, id, idlen)
 *		Moves the oldest (smallest id) incoming/<id>.dcm to active/;
 *		two claimers never get the same id. Takes the id from memory
 *		(O(1)); an id whose file vanished is dropped and the next one
 *		tried. -ENOENT when incoming/ is empty.
 *	usv_spool_path(sp, state, id, path, pathlen)
 *		Path of <id>.dcm in the given state directory (no I/O).
 *	usv_spool_finish(sp, id, state, reason)
 *		Moves active/<id>.dcm to done/, failed/ or excluded/. For FAILED
 *		and EXCLUDED, reason (one line, may be NULL) is first written
 *		durably to <state>/<id>.reason. -ENOENT if not active.
 *	usv_spool_move_done(sp, id)
 *		Moves active/<id>.dcm to done/ WITHOUT the directory fsync:
 *		for finishing a batch, followed by one
 *		usv_spool_sync_state(sp, USV_SPOOL_DONE). Until then a crash
 *		may put the instance back into active/ (it is redone).
 *	usv_spool_sync_state(sp, state)
 *		fsync of the state directory.
 *	usv_spool_requeue(sp, id)
 *		active/<id>.dcm back to incoming/ (e.g. at shutdown).
 *	usv_spool_purge(sp, state, before, &removed)
 *		Deletes <id>.dcm (and its .reason) in done/, failed/ or
 *		excluded/ whose status change time (st_ctime, set by the
 *		rename into the state) is before `before`. -EINVAL for other
 *		states. removed may be NULL.
 *	usv_spool_sweep(sp, retention, now, max, &swept)
 *		Retention: deletes from done/, excluded/, failed/ (+ .reason)
 *		and every sent/<dest>/, dead/<dest>/ (+ .reason) the files that
 *		entered that state (st_ctime) more than the state's retention
 *		(hours, decimals allowed; 0 = kept for ever) before now. At
 *		most max deletions (0 = no limit); swept->more is 1 when the
 *		limit stopped it (call again). Lists each swept directory once
 *		and corrects the in-memory counts from the listing. swept may
 *		be NULL. Meant for one background thread.
 *	usv_spool_count(sp, state, &n)
 *		Number of .dcm files in a state directory, from memory (O(1);
 *		tmp/ is listed).
 *	usv_spool_free_bytes(sp, &bytes)
 *		Bytes available to us on the spool's file system (statvfs).
 *	usv_spool_low_space(sp, watermark)
 *		1 when free bytes < watermark, else 0; statvfs errors give 1
 *		(fail closed). watermark 0 disables the check. The environment
 *		variable USV_SPOOL_FAKE_FREE (a byte count, or the absolute
 *		path of a file holding one, re-read at each call), when set,
 *		replaces the measured free space (tests).
 *
 *	Outbox (results; one sender per destination is assumed):
 *	usv_spool_outbox_put(sp, dest, tmp_path, name, namelen)
 *		tmp_path: a file under tmp/ (usv_spool_tmp_create), written
 *		and closed but not fsynced by its writer. fsync tmp_path,
 *		rename to outbox/<dest>/<id>.dcm, fsync dir. *name gets
 *		"<id>". Attempts 0, due now. On failure tmp_path is left for
 *		the caller to discard.
 *	usv_spool_outbox_add(sp, dest, tmp_path, name, namelen)
 *		As outbox_put, but without the fsync of outbox/<dest>/: the
 *		item is durable only after a later usv_spool_outbox_sync(sp,
 *		dest) returned 0 (one directory fsync for several items).
 *	usv_spool_outbox_sync(sp, dest)
 *		fsync of outbox/<dest>/.
 *	usv_spool_outbox_list(sp, dest, &items, &n)
 *		All items of outbox/<dest>/, oldest first, with their state;
 *		caller frees items with free(). n = 0 and items NULL if empty.
 *		Lists the directory and reads every .state: for the sender,
 *		not for metrics (use usv_spool_outbox_count).
 *	usv_spool_outbox_count(sp, dest, &outbox, &sent, &dead)
 *		Items in outbox/<dest>/, sent/<dest>/, dead/<dest>/, from
 *		memory (O(1)); any pointer may be NULL. 0 for an unknown
 *		destination, -EINVAL for an invalid name.
 *	usv_spool_outbox_next(sp, dest, now, &item)
 *		Oldest item with next_try <= now. -ENOENT if outbox empty,
 *		-EAGAIN if items exist but none is due (item->next_try then
 *		holds the earliest due time).
 *	usv_spool_outbox_path(sp, dest, name, path, pathlen)
 *		Path of outbox/<dest>/<name>.dcm.
 *	usv_spool_outbox_defer(sp, dest, name, next_try, error)
 *		attempts += 1, next_try and last error stored durably in
 *		<name>.state (write tmp, fsync, rename, fsync dir).
 *	usv_spool_outbox_sent(sp, dest, name)
 *		Moves the item to sent/<dest>/ and removes its .state.
 *	usv_spool_outbox_dead(sp, dest, name, reason)
 *		Writes dead/<dest>/<name>.reason, moves the item to dead/<dest>/.
 */
#ifndef USV_SPOOL_H
#define USV_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_SPOOL_ID_LEN 26 /* 16 + 1 + 8 + NUL */
#define USV_SPOOL_DEST_MAX 64
#define USV_SPOOL_REASON_MAX 1024

enum usv_spool_state {
	USV_SPOOL_TMP = 0,
	USV_SPOOL_INCOMING = 1,
	USV_SPOOL_ACTIVE = 2,
	USV_SPOOL_DONE = 3,
	USV_SPOOL_FAILED = 4,
	USV_SPOOL_EXCLUDED = 5,
};

typedef struct usv_spool usv_spool;

/* Retention per state in hours (0 = keep for ever). */
struct usv_spool_retention {
	double done_h, sent_h, excluded_h, failed_h, dead_h;
};

/* Files deleted by one usv_spool_sweep(). */
struct usv_spool_swept {
	unsigned done, sent, excluded, failed, dead;
	int more; /* the deletion limit was reached */
};

typedef struct usv_outbox_item {
	char name[USV_SPOOL_ID_LEN];
	unsigned attempts;
	time_t created;  /* from the id */
	time_t next_try; /* 0 = due at once */
	char last_error[256];
} usv_outbox_item;

int usv_spool_open(const char *root, usv_spool **out, char *errbuf, size_t errlen);
void usv_spool_free(usv_spool *sp);
const char *usv_spool_root(const usv_spool *sp);
int usv_spool_recover(usv_spool *sp, unsigned *requeued, unsigned *removed);

int usv_spool_tmp_create(usv_spool *sp, int *fd, char *path, size_t pathlen);
int usv_spool_commit(usv_spool *sp, const char *tmp_path, char *id, size_t idlen);
int usv_spool_discard(usv_spool *sp, const char *tmp_path);

int usv_spool_claim(usv_spool *sp, char *id, size_t idlen);
int usv_spool_path(const usv_spool *sp, enum usv_spool_state state, const char *id, char *path,
                   size_t pathlen);
int usv_spool_finish(usv_spool *sp, const char *id, enum usv_spool_state state, const char *reason);
int usv_spool_requeue(usv_spool *sp, const char *id);
int usv_spool_move_done(usv_spool *sp, const char *id);
int usv_spool_sync_state(usv_spool *sp, enum usv_spool_state state);
int usv_spool_count(usv_spool *sp, enum usv_spool_state state, size_t *n);
int usv_spool_purge(usv_spool *sp, enum usv_spool_state state, time_t before, unsigned *removed);
int usv_spool_sweep(usv_spool *sp, const struct usv_spool_retention *ret, time_t now, unsigned max,
                    struct usv_spool_swept *swept);

int usv_spool_free_bytes(usv_spool *sp, uint64_t *bytes);
int usv_spool_low_space(usv_spool *sp, uint64_t watermark);

int usv_spool_id_ok(const char *id);
int usv_spool_dest_ok(const char *dest);

int usv_spool_outbox_put(usv_spool *sp, const char *dest, const char *tmp_path, char *name,
                         size_t namelen);
int usv_spool_outbox_add(usv_spool *sp, const char *dest, const char *tmp_path, char *name,
                         size_t namelen);
int usv_spool_outbox_sync(usv_spool *sp, const char *dest);
int usv_spool_outbox_list(usv_spool *sp, const char *dest, usv_outbox_item **items, size_t *n);
int usv_spool_outbox_next(usv_spool *sp, const char *dest, time_t now, usv_outbox_item *item);
int usv_spool_outbox_path(const usv_spool *sp, const char *dest, const char *name, char *path,
                          size_t pathlen);
int usv_spool_outbox_defer(usv_spool *sp, const char *dest, const char *name, time_t next_try,
                           const char *error);
int usv_spool_outbox_count(usv_spool *sp, const char *dest, size_t *outbox, size_t *sent,
                           size_t *dead);
int usv_spool_outbox_sent(usv_spool *sp, const char *dest, const char *name);
int usv_spool_outbox_dead(usv_spool *sp, const char *dest, const char *name, const char *reason);

#ifdef __cplusplus
}
#endif
#endif
