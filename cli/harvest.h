/*
 * NAME
 *	harvest.h - the pieces of `usview harvest`: per-file records, the
 *	result cache and the HTML report
 *
 * DESCRIPTION
 *	cmd_harvest.c finds the files, reads them on worker threads
 *	(usv/label_read.h) and writes the CSV; harvest_cache.c keeps one
 *	record per file path (size and modification time as the key) so that
 *	a rerun reads only new or changed files; harvest_report.c writes the
 *	self-contained HTML report.
 *
 *	The cache file starts with the line
 *	  "usview-harvest-cache<TAB>1<TAB><key>"
 *	where key is the SHA-256 of the program version, the view table
 *	file's bytes ("default" without --views) and the OCR setting: a cache
 *	written with another key is ignored as a whole. Then one line per
 *	file, tab-separated fields with '\\', TAB and newline escaped as
 *	"\\\\", "\\t", "\\n": path (as the CSV writes it: relative to the
 *	CSV's folder when below it, else absolute), size, mtime (ns), label, source, match,
 *	exclusion kind, reason, SOP Instance UID, Study Instance UID,
 *	manufacturer, model, frames, unmapped strings (each
 *	"source|match|text", newline-separated). Files that could not be read
 *	are not cached (they are tried again). Caps: 64 MiB per cache file,
 *	fields beyond their record sizes are cut.
 *
 * OWNERSHIP
 *	hv_rec strings are malloc'ed and belong to the record
 *	(hv_rec_clear()); a hv_cache belongs to its caller (hv_cache_free(),
 *	NULL-safe).
 */
#ifndef USV_CLI_HARVEST_H
#define USV_CLI_HARVEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "usv/label_read.h"

#define HV_CACHE_MAX_BYTES (64u << 20)

/* What happened to one file. */
enum hv_state {
	HV_PENDING = 0,
	HV_READ = 1,      /* read (labelled, unlabelled or excluded) */
	HV_FAILED = 2,    /* unreadable, corrupt or undecodable: error holds why */
	HV_NOT_DICOM = 3, /* no DICM preamble, skipped */
};

/* One file's outcome, compact (the cache's record). */
typedef struct hv_rec {
	char *label, *source, *reason, *sop, *study, *manufacturer, *model;
	char *unmapped; /* "source|match|text" lines, '\n'-separated; "" when none */
	int match;      /* enum usv_label_match */
	int excl_kind;  /* enum usv_label_excl; 0: not excluded */
	int frames;
	double ms_decode, ms_ocr, ms_calipers, ms_map; /* 0 for cached records */
} hv_rec;

typedef struct hv_item {
	char *path;  /* as found (opened) */
	char *shown; /* absolute, or relative to the CSV's folder: the CSV's path */
	int64_t size, mtime_ns;
	enum hv_state state;
	int cached;    /* record came from the cache */
	int duplicate; /* SOP Instance UID already seen at an earlier path */
	int rc;        /* failure code */
	char *error;   /* failure line, "path: reason" */
	hv_rec rec;
} hv_item;

int hv_rec_from_result(hv_rec *r, const usv_label_result *res);
int hv_rec_copy(hv_rec *dst, const hv_rec *src);
void hv_rec_clear(hv_rec *r);

typedef struct hv_cache hv_cache;

/* Loads path; a missing file, a bad header or another key give an empty
 * cache (*stale set to 1 when a file with another key was ignored). 0 or
 * -ENOMEM / -USV_ERR_LIMIT (errbuf says why). */
int hv_cache_load(const char *path, const char *key, hv_cache **out, int *stale, char *errbuf,
                  size_t errlen);
/* The record of path (the item's CSV path) when size and mtime match,
 * else NULL (borrowed). */
const hv_rec *hv_cache_find(const hv_cache *c, const char *path, int64_t size, int64_t mtime_ns);
/* Writes the records of items in state HV_READ (under their CSV paths),
 * and the cache's entries of paths not among items, to path (temporary
 * file + rename). 0 or -errno. */
int hv_cache_save(const hv_cache *c, const char *path, const char *key, const hv_item *items,
                  size_t n, char *errbuf, size_t errlen);
void hv_cache_free(hv_cache *c);

/* The report's inputs. */
typedef struct hv_report_in {
	const hv_item *items; /* sorted by path */
	size_t n;
	const usv_label_table *table;
	const char *csv;   /* the CSV written */
	const char *views; /* the view table file or NULL */
	int ocr;
	double seconds;
	int thumbs_per_class;
} hv_report_in;

/* Writes the HTML report to path; 0 or -errno (errbuf says why). */
int hv_report_write(const char *path, const hv_report_in *in, char *errbuf, size_t errlen);

/* Category names of the summary and the report. */
int hv_source_is_ocr(const char *source);

#endif
