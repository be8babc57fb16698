/*
 * NAME
 *	qa_web.h - the QA pages of usviewd (/qa): an incremental index of
 *	results.jsonl and its HTML views
 *
 * DESCRIPTION
 *	Index. A usv_qa_index follows <dir>/results.jsonl (results_index.h)
 *	by inode and offset. usv_qa_index_update() reads only what was
 *	appended since the last call, up to the last complete line; a line
 *	without its '\n' is read once it is complete. When the inode of
 *	results.jsonl changed (rotation), the old file is found among
 *	results.jsonl.1 ... by its inode and finished from the remembered
 *	offset, the newer rotated files are read whole, then the new file
 *	from its start. The first update reads the rotated files oldest
 *	first, then the current one. Lines that are not JSON objects (or
 *	longer than USV_QA_LINE_MAX) are counted and skipped.
 *
 *	Per instance the index keeps a compact record: sop_instance_uid,
 *	spool_id, study, station, time, the model's label and most probable
 *	class, its probability, the technologist's label and its source,
 *	agrees and uncertain. Never the patient's name or ID (they are not
 *	in the file; study_description is not kept either). An instance seen
 *	again (re-processed after a crash) replaces the earlier record: the
 *	later line wins. Per study it keeps station, study date, accession
 *	hash, the counts derived from its instances and the study record
 *	("kind": "study") with the highest revision (equal revisions: the
 *	later line wins).
 *
 *	Pages (usv_qa_web_route, a usv_http_route_fn for the prefix "/qa"):
 *	  GET /qa            studies, newest first, 50 a page (?page=N),
 *	                     filters from=YYYY-MM-DD, to=YYYY-MM-DD (study
 *	                     date, inclusive) and station=NAME; a row per
 *	                     study with a grid of view cells
 *	                     <td class="cell STATE" data-view="LABEL">
 *	                     LABEL: the view key (usv_view_lookup), so a
 *	                     protocol's "Gall bladder" and the model's
 *	                     "gallbladder" share a cell. STATE, first that
 *	                     applies: disagreement (an image of that most
 *	                     probable class with another technologist's
 *	                     label), uncertain (such an image below
 *	                     model.min_confidence), missing (the study
 *	                     record says so), present, or none (a view of
 *	                     another study on the page)
 *	  GET /qa/agreement  agree / (agree + disagree) per station and per
 *	                     class (the technologist's label) over the last
 *	                     7 and 30 days
 *	  GET /qa/review     disagreements and uncertain images, newest first,
 *	                     50 a page, same filters plus kind=disagreement|
 *	                     uncertain, each with its thumbnail
 *	  GET /qa/thumb/<spool_id>.png
 *	                     the crop of the instance in the spool's done/,
 *	                     128 x 128 PNG; 404 with the reason when it is no
 *	                     longer there (retention)
 *	With a token file every request needs "Authorization: Bearer
 *	<token>" (constant-time comparison); otherwise 401 with
 *	WWW-Authenticate. Every text from the file is HTML-escaped.
 *
 * CONTRACTS
 *	usv_qa_index_new(dir, &x): caller owns *x; usv_qa_index_free(x)
 *		(NULL-safe). 0, -ENOMEM, -ENAMETOOLONG. No I/O.
 *	usv_qa_index_update(x): reads what is new; the number of complete
 *		lines read (>= 0), or a negative errno-style code for an I/O
 *		error (the index keeps what it had; the next call retries).
 *		A missing results.jsonl is not an error (0). Not thread-safe:
 *		the caller serialises calls and reads.
 *	usv_qa_index_use_db(x, dsn): from now on the index reads the lines
 *		of the results database (results_db.h: usv_log, every node's,
 *		in commit order) instead of results.jsonl. 0, -EINVAL,
 *		-ENOMEM. No I/O. usv_qa_index_error(x): the database's last
 *		error ("" after a successful update).
 *	usv_qa_index_stats(x, &st), usv_qa_index_ninstances(x),
 *	usv_qa_index_nstudies(x): counts (distinct instances, studies).
 *	usv_qa_index_instance(x, sop_uid, &ii), usv_qa_index_study(x,
 *		study_uid, &si): 0 or -ENOENT; strings borrowed until the
 *		next update or free.
 *	usv_qa_index_cell(x, study_uid, label): the state of one view cell of
 *		a study (enum usv_qa_cell); USV_QA_CELL_NONE when unknown.
 *
 *	usv_qa_web_new(opts, &w, errbuf, errlen): reads the token file (if
 *		any); with opts->preload a thread reads results.jsonl once
 *		(requests meanwhile wait for it). 0, -EINVAL (empty token),
 *		-errno with a message naming the file. usv_qa_web_free(w):
 *		NULL-safe; joins that thread.
 *	usv_qa_web_reload_token(w, errbuf, errlen): reads the token file
 *		again (SIGHUP); on failure the previous token stays. 0 or a
 *		negative code with a message.
 *	usv_qa_web_route(ctx = w, rq, rep): the route; thread-safe (one
 *		lock around index and rendering).
 */
#ifndef USV_QA_WEB_H
#define USV_QA_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "spool.h"
#include "worker.h"

#define USV_QA_LINE_MAX (1u << 20) /* longer lines are skipped */
#define USV_QA_PAGE_SIZE 50
#define USV_QA_THUMB_SIZE 128

struct usv_qa_index;
struct usv_qa_web;

enum usv_qa_cell {
	USV_QA_CELL_NONE = 0,
	USV_QA_CELL_PRESENT,
	USV_QA_CELL_MISSING,
	USV_QA_CELL_DISAGREEMENT,
	USV_QA_CELL_UNCERTAIN,
};

struct usv_qa_index_stats {
	uint64_t lines;         /* complete lines read */
	uint64_t bad;           /* not JSON, or without the keys needed */
	uint64_t too_long;      /* lines over USV_QA_LINE_MAX */
	uint64_t duplicates;    /* instance lines that replaced an earlier one */
	uint64_t study_records; /* study lines read (any revision) */
	uint64_t rotations;     /* rotations followed */
	uint64_t bytes;         /* bytes read */
};

struct usv_qa_instance_info {
	const char *sop_instance_uid, *spool_id, *study_uid, *station_name;
	const char *outcome;            /* "done", "failed", "excluded" */
	const char *label;              /* the model's label ("uncertain" possible) */
	const char *top_label;          /* the most probable class */
	const char *technologist_label; /* "" = none */
	const char *label_source;       /* "" = none */
	double prob;
	int agrees; /* 1, 0, -1 = no technologist label */
	int uncertain;
	int frame;
	int64_t time_ms; /* since the epoch, from "time" */
};

struct usv_qa_study_info {
	const char *study_uid, *station_name, *protocol; /* protocol "" without a record */
	char study_date[9];                              /* YYYYMMDD or "" */
	char accession_hash[17];
	int revision;                                        /* 0: no study record yet */
	unsigned instances, disagreements, uncertain;        /* from the instances */
	int rec_instances, rec_disagreements, rec_uncertain; /* from the record */
	int nmissing;                                        /* from the record */
};

int usv_qa_index_new(const char *dir, struct usv_qa_index **out);
void usv_qa_index_free(struct usv_qa_index *x);
int usv_qa_index_update(struct usv_qa_index *x);
int usv_qa_index_use_db(struct usv_qa_index *x, const char *dsn);
const char *usv_qa_index_error(const struct usv_qa_index *x);
void usv_qa_index_stats(const struct usv_qa_index *x, struct usv_qa_index_stats *st);
size_t usv_qa_index_ninstances(const struct usv_qa_index *x);
size_t usv_qa_index_nstudies(const struct usv_qa_index *x);
int usv_qa_index_instance(const struct usv_qa_index *x, const char *sop_uid,
                          struct usv_qa_instance_info *ii);
int usv_qa_index_study(const struct usv_qa_index *x, const char *study_uid,
                       struct usv_qa_study_info *si);
enum usv_qa_cell usv_qa_index_cell(const struct usv_qa_index *x, const char *study_uid,
                                   const char *label);

struct usv_qa_web_opts {
	const char *spool_dir;
	usv_spool *spool;       /* thumbnails from done/; NULL: none (404) */
	const char *token_file; /* NULL or "": no token required */
	/* the workers' crop rules for thumbnails; NULL: the shipped defaults */
	void (*get_settings)(void *ctx, struct usv_worker_settings *out);
	void *ctx;
	int preload; /* 1: read the file once in a thread started by _new */
	/* libpq connection string: the index reads the results database
	 * (results_db.h) instead of results.jsonl; NULL or "" = the file */
	const char *dsn;
};

int usv_qa_web_new(const struct usv_qa_web_opts *o, struct usv_qa_web **out, char *errbuf,
                   size_t errlen);
void usv_qa_web_free(struct usv_qa_web *w);
int usv_qa_web_reload_token(struct usv_qa_web *w, char *errbuf, size_t errlen);
int usv_qa_web_route(void *ctx, const struct usv_http_request *rq, struct usv_http_reply *rep);

#endif
