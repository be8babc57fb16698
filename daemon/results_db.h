/*
 * NAME
 *	results_db.h - the results index in PostgreSQL, shared by several
 *	usviewd nodes (results.backend: postgresql)
 *
 * DESCRIPTION
 *	Each node keeps writing its instance lines to its own
 *	<spool>/results.jsonl (results_index.h): that file is the durable
 *	queue. A copier thread follows it (inode and offset in
 *	<spool>/results.db-cursor, rotations followed through
 *	results.jsonl.1 ...) and copies each complete line into the
 *	database, a batch per transaction; the cursor moves after the
 *	commit. A line copied twice (a crash between commit and cursor) is
 *	recognised by the unique (node, md5(line)) of usv_log and skipped,
 *	so every line is in the database exactly once. With the database
 *	unreachable the node goes on receiving and classifying; the lines
 *	wait in results.jsonl and the copier catches up when it returns
 *	(retries 1, 2, 4 ... 30 s apart). A line rotated away before it was
 *	copied (spool.index_keep files behind) is lost to the database;
 *	that is logged and counted.
 *
 *	Study records are computed in the database, so that a study whose
 *	instances arrived at different nodes has one record per revision:
 *	copying an instance line that changes what the study tracker
 *	counts (study.h) bumps the study's seq and last_change in
 *	usv_study; any node's pass takes a study that is dirty (seq >
 *	written_seq) and quiet for qa.study_quiet_s with SELECT ... FOR
 *	UPDATE SKIP LOCKED, builds the record (and study SRs) from all its
 *	instances with usv_study_build_line(), and in the same transaction
 *	stores the record (usv_study_record, primary key study and
 *	revision), its line (usv_log) and the new revision. A node takes only
 *	studies with a done instance of its own (the study SR's patient and
 *	study modules come from its done/), or whose done instances are all
 *	on nodes that look down (no pass for 30 s: usv_node.last_seen), or
 *	that have none; then the record is written without a study SR
 *	(logged). In this mode the spool's study tracker keeps no
 *	state of its own.
 *
 *	Schema (version USV_RESULTS_DB_SCHEMA, in usv_schema; created or
 *	migrated on connect under an advisory lock; a newer version than
 *	this program knows is an error and nothing is written):
 *	  usv_log(id, tx xid8, node, kind 'instance'|'study', study_uid,
 *	          line): every line, as results.jsonl would hold it;
 *	  usv_instance(sop_instance_uid PK, study_uid, node, spool_id,
 *	          outcome, label, top_label, technologist_label, agrees,
 *	          uncertain, protocol, time, sig, line): the last report of
 *	          each instance;
 *	  usv_study(study_uid PK, seq, written_seq, revision, last_change,
 *	          written_time);
 *	  usv_study_record(study_uid, revision, time, node, line);
 *	  usv_node(node, last_seen): each node's last pass (version 2).
 *
 *	Reader (the QA page): usv_log in commit order. Rows are read in
 *	(tx, id) order and only below the oldest transaction still running
 *	(pg_snapshot_xmin), so a row whose transaction commits late is
 *	never skipped.
 *
 * CONTRACTS
 *	usv_results_db_open(env, &db, errbuf, errlen)
 *		Copies env, reads the cursor, starts the thread unless
 *		env->no_thread. Does not need the database to be up. Caller
 *		owns *db; usv_results_db_free() (NULL-safe) stops the thread.
 *		0, -EINVAL, -ENOMEM, -errno.
 *	usv_results_db_run(db, &copied, &written)
 *		One pass: connect (and migrate) if needed, copy what is new,
 *		write due study records. Counts may be NULL. 0 or the error
 *		that ended the pass (the connection is dropped and retried).
 *		The thread calls it; tests with no_thread call it.
 *	usv_results_db_wake(db): a pass now (lines were appended).
 *		NULL-safe.
 *	usv_results_db_stats(db, &st): counters for /metrics. NULL-safe.
 *
 *	usv_results_db_reader_new(dsn, &rd): no I/O; caller owns *rd,
 *		usv_results_db_reader_free() (NULL-safe). 0, -ENOMEM.
 *	usv_results_db_reader_next(rd, max, take, ctx, errbuf, errlen)
 *		Hands up to max new lines of usv_log to take(ctx, line, len),
 *		oldest first; returns how many (>= 0), or -EIO with the
 *		database's message (the cursor stays; the next call
 *		reconnects). Not thread-safe.
 */
#ifndef USV_RESULTS_DB_H
#define USV_RESULTS_DB_H

#include <stddef.h>
#include <stdint.h>

#include "study.h"

#define USV_RESULTS_DB_SCHEMA 2
#define USV_RESULTS_DB_BATCH 500 /* lines per transaction */

struct usv_results_db_env {
	const char *spool_dir; /* copied */
	const char *dsn;       /* libpq connection string; copied */
	const char *node;      /* copied; NULL or "" = the host name */
	/* builds study lines and SRs (usv_study_build_line); NULL = no
	 * study records from this node */
	struct usv_study_tracker *study;
	/* qa.study_quiet_s now (reloadable); NULL = 300 */
	int (*quiet_s)(void *ctx);
	/* one line to log at a syslog level; may be NULL */
	void (*log)(void *ctx, int level, const char *msg);
	void *ctx;
	int no_thread;
};

struct usv_results_db_stats {
	int up;                 /* connected, schema current */
	uint64_t lines;         /* lines copied (new rows of usv_log) */
	uint64_t duplicates;    /* lines found already copied */
	uint64_t studies;       /* study records written by this node */
	uint64_t errors;        /* passes that ended in an error */
	uint64_t lost;          /* files rotated away before they were copied */
	uint64_t backlog_bytes; /* bytes of results.jsonl* not yet copied */
};

struct usv_results_db;
struct usv_results_db_reader;

int usv_results_db_open(const struct usv_results_db_env *env, struct usv_results_db **out,
                        char *errbuf, size_t errlen);
int usv_results_db_run(struct usv_results_db *db, unsigned *copied, unsigned *written);
void usv_results_db_wake(struct usv_results_db *db);
void usv_results_db_stats(struct usv_results_db *db, struct usv_results_db_stats *st);
void usv_results_db_free(struct usv_results_db *db);

int usv_results_db_reader_new(const char *dsn, struct usv_results_db_reader **out);
int usv_results_db_reader_next(struct usv_results_db_reader *rd, size_t max,
                               void (*take)(void *ctx, const char *line, size_t len), void *ctx,
                               char *errbuf, size_t errlen);
void usv_results_db_reader_free(struct usv_results_db_reader *rd);

#endif
