/*
 * NAME
 *	label_read.h - the technologist's label of one DICOM instance
 *
 * SYNOPSIS
 *	#include "usv/label_read.h"
 *
 *	usv_label_reader_opts o;
 *	usv_label_reader_opts_init(&o);
 *	o.table = table;
 *	usv_label_reader *r;
 *	if (usv_label_reader_new(&o, &r, err, sizeof err) == 0) {
 *		usv_label_result res;
 *		if (usv_label_read(r, path, &res, err, sizeof err) == 0 && res.label[0] &&
 *		    !res.excluded)
 *			... res.label, res.source ...
 *		usv_label_result_clear(&res);
 *		usv_label_reader_free(r);
 *	}
 *
 * DESCRIPTION
 *	usv_label_read() prepares the instance exactly as the daemon and
 *	`usview train` do (usv_dcm_prepare: the same decode, frame policy
 *	and crop), keeping the first selected frame before the crop, and
 *	looks for the view label in these sources, in order; the first one
 *	whose text maps to exactly one class of the table (usv_label_map)
 *	gives the label and its source name:
 *
 *	  dicom:ViewCodeSequence      Code Meaning of View Code Sequence
 *	  dicom:ImageComments
 *	  dicom:ProtocolName
 *	  ocr                         burned-in text of the annotation areas
 *	  dicom:SeriesDescription     (weak: often a whole-exam name)
 *	  dicom:AcquisitionProtocolDescription (weak)
 *
 *	OCR reads only the annotation areas of usv_annot_areas() (the
 *	frame outside the ultrasound box, the top banner with the patient's
 *	name never included; the table's annotation rules first). Each line
 *	is mapped on its own; when no line of an area maps, the area's lines
 *	joined by spaces are mapped. When lines map to different classes the
 *	OCR source gives no label (ambiguous) and the later sources are
 *	tried.
 *
 *	Exclusions (the label is still reported, for counts):
 *	  USV_LABEL_EXCL_COLOUR       colour overlay (Doppler), as prepare says
 *	  USV_LABEL_EXCL_MEASUREMENT  calipers inside the ultrasound box
 *	                              (usv_annot_find_calipers: a '+'/'x' mark
 *	                              or a dotted line) or measurement text
 *	                              (usv_label_is_measurement_text) on an
 *	                              OCR line
 *	  USV_LABEL_EXCL_POLICY       other exclusions of prepare (modality
 *	                              not US, no pixel data)
 *	An instance excluded for colour is prepared a second time with the
 *	colour check off, so that OCR still finds its label (the reason stays
 *	the colour one); one excluded by policy gets its UIDs and its
 *	DICOM-attribute label from the header alone.
 *
 *	Unmapped strings: the normalised text (usv_label_map's norm) of OCR
 *	lines and of the coded / protocol attributes (View Code Sequence,
 *	Protocol Name) that did not map to one class, for the harvest
 *	report. Image Comments and the descriptions are free text that may
 *	hold identifiers: they are never recorded. Measurement lines are
 *	not recorded either. The library never prints anything.
 *
 * CONTRACTS
 *	usv_label_reader_opts_init(o)
 *		table NULL, ocr 1, tessdata NULL, prep NULL (prepare's
 *		defaults), keep_image 0, labels_only 0.
 *	usv_label_reader_new(opts, &r, err, errlen)
 *		opts->table is required and borrowed (read-only, may be
 *		shared by readers of several threads; it must outlive r).
 *		opts->prep is copied (keep_full is forced to 1). With
 *		opts->ocr a Tesseract engine is created (-ENOENT when its
 *		language data is missing: err says where it looked). 0 and
 *		*r (caller frees with usv_label_reader_free), -EINVAL,
 *		-ENOMEM. One reader per thread.
 *	usv_label_read(r, path, res, err, errlen)
 *		Always initialises *res first. 0: the instance was read
 *		(possibly excluded: res->excluded, res->reason); res->label
 *		is "" when no source mapped. -USV_ERR_UNSUPPORTED (transfer
 *		syntax or photometric we cannot decode), -USV_ERR_FORMAT,
 *		-USV_ERR_LIMIT, -ENOENT, -EIO, -ENOMEM, -EINVAL: err gets
 *		"path: reason"; *res may still hold the UIDs when the header
 *		was readable. With opts->keep_image, res->img is the first
 *		prepared frame (out_size x out_size RGB), owned by *res.
 *	usv_label_read_prepared(r, p, path, res, err, errlen)
 *		The same reading for an instance the caller has already
 *		prepared (usv_dcm_prepare with keep_full 1 or 2, e.g. the
 *		daemon's own prepare, so the file is decoded once): UIDs,
 *		caliper search, OCR of p->frames[0].full, the sources in
 *		order, the measurement exclusion. p is borrowed and not
 *		changed; path only names the instance in messages. The
 *		reader's own prep options are not used (p was prepared with
 *		the caller's), nor keep_image (res->img stays NULL), and an
 *		instance that prepare excluded never gets here (no colour or
 *		policy exclusion). Always initialises *res first. 0, or
 *		-EINVAL (NULL argument, or frames without keep_full), or the
 *		caliper search's / OCR's code (-ENOMEM, -EIO) with "path:
 *		OCR: reason" in err; res->label is then "" but the UIDs are
 *		set. Costs (ms_*) as for usv_label_read, ms_decode 0.
 *	usv_label_result_clear(res)
 *		Frees res->img; NULL-safe. The rest of *res is plain data.
 *	usv_label_reader_free(r)
 *		NULL-safe.
 *	usv_label_excl_name(kind)
 *		"", "colour", "measurement", "policy"; never NULL.
 */
#ifndef USV_LABEL_READ_H
#define USV_LABEL_READ_H

#include <stddef.h>

#include "usv/annot.h"
#include "usv/crop.h"
#include "usv/dcm_image.h"
#include "usv/dcm_prepare.h"
#include "usv/image.h"
#include "usv/label_text.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USV_LABEL_KEY_MAX 64     /* class key, bytes incl. NUL (longer keys are cut) */
#define USV_LABEL_SOURCE_MAX 48  /* source name, bytes incl. NUL */
#define USV_LABEL_REASON_MAX 256 /* exclusion reason, bytes incl. NUL */
#define USV_LABEL_MAX_UNMAPPED 16
#define USV_LABEL_UNMAPPED_LEN 96 /* one unmapped string, bytes incl. NUL */

typedef struct usv_label_reader usv_label_reader;

typedef struct usv_label_reader_opts {
	const usv_label_table *table; /* borrowed, required */
	int ocr;                      /* 1: read the annotation areas with Tesseract */
	const char *tessdata;         /* NULL: Tesseract's default */
	const usv_prepare_opts *prep; /* NULL: usv_prepare_opts_init() defaults */
	int keep_image;               /* 1: res->img = the first prepared frame */
	/* 1: only the label matters (the daemon): no caliper search, and
	 * OCR runs only when no attribute tried before it (View Code
	 * Sequence, Image Comments, Protocol Name) maps to a class. The
	 * label and its source are the same as with 0, for less work; the
	 * measurement exclusion and the unmapped strings may be missing. */
	int labels_only;
} usv_label_reader_opts;

enum usv_label_excl {
	USV_LABEL_EXCL_NONE = 0,
	USV_LABEL_EXCL_COLOUR = 1,
	USV_LABEL_EXCL_MEASUREMENT = 2,
	USV_LABEL_EXCL_POLICY = 3,
};

typedef struct usv_label_unmapped {
	char text[USV_LABEL_UNMAPPED_LEN]; /* normalised: upper-case words */
	char source[USV_LABEL_SOURCE_MAX]; /* "ocr", "dicom:ProtocolName", ... */
	enum usv_label_match match;        /* UNMAPPED or AMBIGUOUS */
} usv_label_unmapped;

typedef struct usv_label_result {
	char label[USV_LABEL_KEY_MAX];     /* class key, "" when no source mapped */
	char source[USV_LABEL_SOURCE_MAX]; /* the source that gave the label, or "" */
	enum usv_label_match match;        /* MAPPED with a label; else the best other */
	int excluded;                      /* 1: not for training (see kind, reason) */
	enum usv_label_excl excl_kind;
	char reason[USV_LABEL_REASON_MAX]; /* "measurement: 2 caliper marks", ... */
	char sop_instance_uid[USV_DCM_UID_LEN];
	char study_uid[USV_DCM_UID_LEN];
	char manufacturer[USV_DCM_STR_LEN];
	char model[USV_DCM_STR_LEN];
	int frames;                  /* in the file (0 when unknown) */
	int ocr_frame;               /* frame read by OCR and calipers, -1 when none */
	usv_box crop;                /* the ultrasound box (zero when no frame) */
	usv_caliper_report calipers; /* marks found in the box */
	int measurement_lines;       /* OCR lines that read as measurements */
	int ocr_lines;               /* OCR lines read in all areas */
	double ms_decode, ms_ocr, ms_calipers, ms_map; /* time per stage */
	size_t nunmapped;
	usv_label_unmapped unmapped[USV_LABEL_MAX_UNMAPPED];
	usv_image *img; /* with keep_image: out_size x out_size RGB, owned here */
} usv_label_result;

void usv_label_reader_opts_init(usv_label_reader_opts *o);
int usv_label_reader_new(const usv_label_reader_opts *opts, usv_label_reader **out, char *err,
                         size_t errlen);
int usv_label_read(usv_label_reader *r, const char *path, usv_label_result *res, char *err,
                   size_t errlen);
int usv_label_read_prepared(usv_label_reader *r, const usv_prepared *p, const char *path,
                            usv_label_result *res, char *err, size_t errlen);
void usv_label_result_clear(usv_label_result *res);
void usv_label_reader_free(usv_label_reader *r);
const char *usv_label_excl_name(enum usv_label_excl kind);

#ifdef __cplusplus
}
#endif
#endif
