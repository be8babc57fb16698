/*
 * NAME
 *	study.h - the QA study tracker: per-study completeness records and
 *	the study SR
 *
 * SYNOPSIS
 *	#include "study.h"
 *
 * DESCRIPTION
 *	The workers report every finished instance (qa.h) to
 *	usv_study_note(), which keeps the study's state durably in
 *	<spool>/studies/<32 hex digits of SHA-256(study UID)>.json (see the
 *	DESIGN comment of study.c). A tracker thread writes one study record
 *	(results_index.h, "kind": "study") into results.jsonl once a study
 *	has had no new instance for qa.study_quiet_s seconds, and, for each
 *	destination that takes study SRs, puts one study-level SR
 *	(usv/dcm_study_sr.h) into its outbox (usv_route_put). An instance
 *	that changes a study after a record makes it dirty again: after
 *	another quiet period the next revision (2, 3, ...) is written. Each
 *	revision's line is written exactly once, also across SIGKILL and
 *	restarts.
 *
 *	The record counts over the instances of the study, each SOP
 *	Instance UID once (the last report wins):
 *	  views_present  {label: count} over "done" instances; an uncertain
 *	                 one (below model.min_confidence) counts under
 *	                 "uncertain", never under its most probable class;
 *	  missing        the protocol's required views (in its order) with
 *	                 no instance in views_present (labels compared by
 *	                 usv_view_lookup, so "Liver left long" equals
 *	                 "liver_left_long");
 *	  disagreements  done instances whose technologist label differs
 *	                 from the model's most probable class ("agrees":
 *	                 false, uncertain ones included);
 *	  uncertain      done instances that were uncertain;
 *	  instances      all instances (done, failed, excluded).
 *	The protocol is the first configured one with a match string that is
 *	a case-insensitive substring of the Study Description, Requested
 *	Procedure Description or Protocol Name of one of the study's
 *	instances; none: "default", the 11 views of usv_view_at().
 *
 * CONTRACTS
 *	usv_study_settings_from_config(cfg, routes, out)
 *		Fills *out from cfg (qa.study_quiet_s,
 *		spool.retention_h.done, protocols) and routes (may be NULL:
 *		no destinations). Cannot fail.
 *	usv_study_tracker_open(env, &t, errbuf, errlen)
 *		Creates <spool>/studies/ if needed, deletes leftover temporary
 *		files, loads every study state (a file that cannot be read is
 *		renamed <name>.bad and reported through env->log) and, unless
 *		env->no_thread, starts the tracker thread. Revisions left
 *		pending by a crash are finished by the first pass: their line
 *		is looked up in results.jsonl and results.jsonl.1 and
 *		appended only when absent. env is copied; spool and index
 *		must outlive the tracker. 0, -EINVAL, -ENOMEM, -errno.
 *		The environment variable USV_STUDY_COMMIT_DELAY_MS (tests,
 *		0..10000) makes each commit pause that long after storing
 *		the pending revision and after appending its line, so that
 *		a crash test can kill the daemon inside those windows.
 *	usv_study_note(t, qi)
 *		Records one instance durably (returns after the state file
 *		and its directory are fsynced). A report identical to the
 *		recorded one (spool id aside) makes no revision; an
 *		instance without Study or SOP Instance UID (a file that
 *		could not be read) belongs to no study and is ignored.
 *		Thread-safe. 0, -EINVAL (NULL argument, study UID over 64
 *		characters), -ENOMEM, -errno (state file).
 *	usv_study_tracker_run(t, now, &written)
 *		One pass at wall-clock time now (seconds since the epoch):
 *		finishes pending revisions, writes the records (and SRs) of
 *		studies quiet since now - quiet_s, forgets written studies
 *		older than the done retention. *written (may be NULL) gets
 *		the records appended. The thread calls it; tests with
 *		no_thread call it themselves. 0 or the last error (the pass
 *		goes on with the other studies; failed ones are retried).
 *	usv_study_tracker_wake(t)
 *		Run a pass now (e.g. after a reload). NULL-safe.
 *	usv_study_tracker_count(t, &studies, &pending)
 *		Studies known and studies with a revision waiting (dirty or
 *		pending). Either pointer may be NULL.
 *	usv_study_protocol_index(set, sd, rpd, pn)
 *		The index in set->protocols of the first protocol with a match
 *		string that one of the texts contains (case-insensitive), or
 *		-1. NULL texts are skipped.
 *	usv_study_instance_from_line(line)
 *		The state entry (the "instances" items of a state) of an
 *		instance line of results.jsonl; its protocol is the line's
 *		"protocol" name. Caller owns it (cJSON_Delete). NULL: no memory.
 *	usv_study_build_line(t, state, rev, now, &line)
 *		For a store that keeps study states itself (results_db.h):
 *		the study line of revision rev (>= 1) of state ({"study_uid",
 *		"instances": [...]}), after putting its study SRs into the
 *		outboxes (their UIDs derive from the study, the revision and
 *		the model, so a retry puts the same objects). The settings
 *		are refreshed first. The caller owns *line (free). 0,
 *		-EINVAL, -ENOMEM, or an outbox or disk error (retry later).
 *	usv_study_tracker_free(t)
 *		Stops and joins the thread (a pass in progress finishes),
 *		frees. NULL-safe.
 */
#ifndef USV_STUDY_H
#define USV_STUDY_H

#include <stddef.h>

#include "qa.h"
#include "results_index.h"
#include "results_route.h"
#include "spool.h"
#include "usv/config.h"

struct usv_study_settings {
	int quiet_s;        /* >= 0 */
	double retention_h; /* forget written studies after this; 0 = keep */
	int n_protocols;
	struct usv_config_protocol protocols[USV_CFG_MAX_PROTOCOLS];
	struct usv_routes routes; /* destinations; study SRs go where wanted */
};

/* Where a simulated crash stops a commit (tests only). */
enum usv_study_crash {
	USV_STUDY_CRASH_NONE = 0,
	USV_STUDY_CRASH_AFTER_PENDING, /* pending state durable, no line */
	USV_STUDY_CRASH_AFTER_LINE,    /* line durable, not marked written */
};

struct usv_study_env {
	usv_spool *spool;
	struct usv_results_index *index;
	const char *model_sha256;     /* enters the study SR's UIDs; copied; NULL = "" */
	const char *software_version; /* copied; NULL = "" */
	/* copies the current settings (reloadable); required */
	void (*get_settings)(void *ctx, struct usv_study_settings *out);
	/* study SRs were put into outboxes (wake the sender); may be NULL */
	void (*on_output)(void *ctx);
	/* one line to log at a syslog level; may be NULL */
	void (*log)(void *ctx, int level, const char *msg);
	void *ctx;
	int no_thread;                   /* 1: no thread; call usv_study_tracker_run */
	enum usv_study_crash crash_test; /* tests only: the commit stops there */
};

struct usv_study_tracker;

void usv_study_settings_from_config(const struct usv_config *cfg, const struct usv_routes *routes,
                                    struct usv_study_settings *out);
int usv_study_tracker_open(const struct usv_study_env *env, struct usv_study_tracker **out,
                           char *errbuf, size_t errlen);
int usv_study_note(struct usv_study_tracker *t, const struct usv_qa_instance *qi);
int usv_study_tracker_run(struct usv_study_tracker *t, double now, unsigned *written);
void usv_study_tracker_wake(struct usv_study_tracker *t);
void usv_study_tracker_count(struct usv_study_tracker *t, size_t *studies, size_t *pending);
int usv_study_protocol_index(const struct usv_study_settings *set, const char *sd, const char *rpd,
                             const char *pn);
struct cJSON;
struct cJSON *usv_study_instance_from_line(const struct cJSON *line);
int usv_study_build_line(struct usv_study_tracker *t, const struct cJSON *state, unsigned rev,
                         double now, char **line);
void usv_study_tracker_free(struct usv_study_tracker *t);

#endif
