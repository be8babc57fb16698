/*
 * NAME
 *	results_index.h - the results index of the spool (results.jsonl)
 *
 * DESCRIPTION
 *	<spool>/results.jsonl holds one JSON object per line and per processed
 *	instance, for QA dashboards that do not parse SRs. Each line is
 *	appended with a single write(2) on an O_APPEND descriptor and then
 *	fdatasync()ed, so concurrent writers never interleave and a crash
 *	loses at most the line being written (a reader skips a last line
 *	without its '\n'). Processing is at-least-once: after a crash an
 *	instance may be classified again and appear twice with the same
 *	sop_instance_uid and model_sha256; readers deduplicate on them.
 *
 *	Line format (keys always present unless marked optional):
 *	  {"time": "2026-11-25T18:40:00.123Z", "spool_id": "...",
 *	   "outcome": "done" | "failed" | "excluded", "reason": "..." (not done),
 *	   "sop_instance_uid", "sop_class_uid", "series_uid", "study_uid",
 *	   "manufacturer", "manufacturer_model", "frames_total",
 *	   "frame": 0-based frame of the first result, "label", "prob",
 *	   "topk": [{"label", "prob"}...],
 *	   "results": [{"frame", "label", "prob", "topk": [...]}] (every frame;
 *	               "label" is "uncertain" for a frame below
 *	               model.min_confidence),
 *	   "outputs": [{"destination", "kind", "sop_instance_uid"}],
 *	   "model": {"name", "sha256", "arch"},
 *	   "timings_ms": {"decode", "infer", "total", "batch": images in batch,
 *	                  "label": reading the technologist's label (all
 *	                  sources), "ocr": its OCR part; 0 when not read},
 *	   "kind": "instance",
 *	   "station_name", "study_date" (YYYYMMDD) (never the Study Description,
 *	   free text that may name the patient),
 *	   "accession_hash": first 16 hex digits of SHA-256 of the accession
 *	                     number ("" when none): never the number itself,
 *	   "technologist_label": class name or null, "label_source":
 *	   "dicom:<keyword>" | "ocr" | null, "agrees": true | false | null
 *	   (null when there is no technologist label; compares with the
 *	   model's most probable class, also when the label is "uncertain"),
 *	   "protocol": name of the first configured QA protocol whose match
 *	   strings the instance's Study Description, Requested Procedure
 *	   Description or Protocol Name contain, or null (the study record's
 *	   protocol is the first configured one among its instances'),
 *	   "test_views": views averaged per frame (1, 2 or 10; 0 when the
 *	   instance was not classified),
 *	   "uncertain": true when the top probability is below
 *	   model.min_confidence ("label" is then "uncertain", "prob" and
 *	   "topk" stay the model's; false without results)}
 *	The QA keys are present on every instance line (failed and excluded
 *	ones too: "agrees" null, "uncertain" false).
 *	Fields that are unknown (e.g. a file that could not be read) are "".
 *
 *	Study records (written by the study tracker, study.h) share the file:
 *	  {"kind": "study", "time", "study_uid", "revision": 1, 2, ...,
 *	   "protocol", "views_present": {label: count}, "missing": [labels],
 *	   "disagreements": n, "uncertain": n, "instances": n,
 *	   "station_name", "study_date", "accession_hash",
 *	   "outputs": [{"destination", "kind": "study_sr", "sop_instance_uid"}]}
 *
 * CONTRACTS
 *	usv_results_index_open(dir, &idx, errbuf, errlen)
 *		Opens (creates, 0600) dir/results.jsonl for appending. Caller
 *		owns *idx; usv_results_index_close() (NULL-safe).
 *	usv_results_index_append(idx, rec)
 *		Serialises rec and appends one line, then fdatasync().
 *		Thread-safe. 0 or -errno.
 *	usv_results_index_append_nosync(idx, rec)
 *		The same without the fdatasync: the line is durable only after
 *		a later usv_results_index_sync() (or _append) returned 0.
 *	usv_results_index_sync(idx)
 *		fdatasync() of the index. 0 or -errno.
 *	usv_results_index_set_limits(idx, max_bytes, keep)
 *		Rotation by size: once results.jsonl has max_bytes or more
 *		(0 = never), the appender that wrote past the limit renames it
 *		to results.jsonl.1 (shifting .1 -> .2 ... up to .keep, the
 *		oldest dropped) and starts a new file; the full file is
 *		fdatasync()ed first and the directory after. Readers only ever
 *		see whole lines, in results.jsonl and in the old files. keep
 *		<= 0 disables rotation. Thread-safe; may be called at any time.
 *	usv_results_index_rotate(idx)
 *		Rotates now (keep must be > 0). 0 or -errno; on failure the
 *		current file stays in use.
 *	usv_results_index_rotations(idx)
 *		Rotations done since open.
 *	usv_results_index_append_line(idx, line)
 *	usv_results_index_append_line_nosync(idx, line)
 *		Appends one preformatted JSON line (no '\n' inside; the
 *		newline is added), like _append / _append_nosync. -EINVAL for
 *		a line holding '\n'.
 *	usv_results_index_format(rec, &line)
 *		The JSON text (no newline) of rec; caller frees. 0 or -ENOMEM.
 */
#ifndef USV_RESULTS_INDEX_H
#define USV_RESULTS_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "usv/dcm_result.h"

struct usv_results_index;

struct usv_index_output {
	const char *destination;
	const char *kind; /* "sr" | "tagged" */
	const char *sop_instance_uid;
};

struct usv_index_record {
	const char *spool_id;
	const char *outcome; /* "done", "failed", "excluded" */
	const char *reason;  /* NULL for done */
	const char *sop_instance_uid, *sop_class_uid, *series_uid, *study_uid;
	const char *manufacturer, *manufacturer_model;
	int frames_total;
	const usv_result *results; /* one per classified frame (may be 0) */
	size_t nresults;
	const struct usv_index_output *outputs;
	size_t noutputs;
	const char *model_name, *model_sha256, *model_arch;
	double t_decode_ms, t_infer_ms, t_total_ms;
	int batch;
	/* QA fields (NULL = "" / null) */
	const char *station_name, *study_date;
	const char *accession_hash;     /* 16 hex digits or "" */
	const char *technologist_label; /* NULL or "": null in the JSON */
	const char *label_source;       /* NULL or "": null */
	double t_label_ms, t_ocr_ms;    /* reading the technologist's label */
	const char *protocol;           /* matching QA protocol; NULL or "": null */
	int test_views;                 /* views averaged per frame (0: not classified) */
};

int usv_results_index_open(const char *dir, struct usv_results_index **out, char *errbuf,
                           size_t errlen);
void usv_results_index_close(struct usv_results_index *idx);
int usv_results_index_append(struct usv_results_index *idx, const struct usv_index_record *rec);
int usv_results_index_append_nosync(struct usv_results_index *idx,
                                    const struct usv_index_record *rec);
int usv_results_index_sync(struct usv_results_index *idx);
void usv_results_index_set_limits(struct usv_results_index *idx, uint64_t max_bytes, int keep);
int usv_results_index_rotate(struct usv_results_index *idx);
unsigned long usv_results_index_rotations(struct usv_results_index *idx);
int usv_results_index_append_line(struct usv_results_index *idx, const char *line);
int usv_results_index_append_line_nosync(struct usv_results_index *idx, const char *line);
int usv_results_index_format(const struct usv_index_record *rec, char **line);

#endif
