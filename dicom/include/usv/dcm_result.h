/*
 * NAME
 *	dcm_result.h - AI results as DICOM: view table, result UIDs, SR and tagged copy
 *
 * SYNOPSIS
 *	#include "usv/dcm_result.h"
 *
 * DESCRIPTION
 *	A usv_result describes one classified frame of one source instance: the
 *	source file, the frame, the model's class list with the probabilities,
 *	the predicted class, the top-k, the model identity and timings. It is a
 *	plain value (fixed arrays, no pointers): copy it, queue it, free nothing.
 *
 *	From a result two DICOM objects can be written, both in the source's
 *	Study (patient/study attributes copied) and in a new Series:
 *
 *	- a Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33) with a TID 1500
 *	  measurement report tree (see usv_sr_write below for the exact tree);
 *	- a tagged copy of the source instance: same pixel data (encapsulated
 *	  fragments byte-identical, original transfer syntax), new SOP Instance
 *	  and Series UIDs, DERIVED\SECONDARY, the label in Series Description
 *	  and Image Comments, a private block (group 0x0091, creator
 *	  "USVIEW 1.0") with the probabilities, Source Image Sequence,
 *	  Derivation Description, Contributing Equipment.
 *
 *	Result UIDs are derived, never random: writing the same result twice
 *	(e.g. reprocessing after a crash) gives the same SOP Instance UID, so a
 *	receiver sees a re-send, not a second result. All results of one kind
 *	made by one model from one source series share one result Series UID.
 *
 * VIEW LABELS
 *	Labels are the model's class names. The 11 views of the paper have
 *	fixed keys (usv_view_lookup): liver_left_long, liver_left_trans,
 *	liver_right_long, liver_right_trans, spleen, pancreas, kidney_left_long,
 *	kidney_left_trans, kidney_right_long, kidney_right_trans, gallbladder.
 *	Lookup ignores case, takes '-' or ' ' for '_', "longitudinal" or
 *	"sagittal" for "long", "transverse" for "trans" and "gall_bladder"
 *	for "gallbladder". Each has a display name, a code in the
 *	private scheme "99USVIEW" and, where one exists, the SNOMED CT organ
 *	and the CID 6 transducer orientation. Any other label still works
 *	(usv_view_describe): its private code value is the label itself,
 *	display name = label, no organ/orientation.
 *
 * THREADS
 *	dcmsr is not thread-safe (a static node counter). usv_sr_write
 *	serialises itself on an internal mutex, so it may be called from any
 *	thread; SRs are built one at a time. usv_tagged_write uses no dcmsr
 *	and runs in parallel. The UID, view and result helpers are pure and
 *	thread-safe.
 *
 * DURABILITY
 *	The writers write; they do not commit. usv_sr_write and
 *	usv_tagged_write create (or truncate) out_path and write the object
 *	there in place, checking every write, the final flush and close(); on
 *	failure the partial file is removed. They never fsync, never write a
 *	temporary name and never rename. When they return 0 the file is
 *	complete for every reader on this machine: enough for a command-line
 *	tool that writes a result and exits. A caller that needs the file to
 *	survive a power cut, or to appear only when complete, gives them a
 *	private path and commits the file itself: usviewd writes into its
 *	spool's tmp/ and usv_spool_outbox_add() does fsync(file), rename and
 *	(per batch) the fsync of the directory.
 */
#ifndef USV_DCM_RESULT_H
#define USV_DCM_RESULT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define USV_RESULT_MAX_CLASSES 64 /* classes a model may have */
#define USV_RESULT_LABEL_MAX 64   /* bytes of a label incl. NUL */
#define USV_RESULT_MAX_TOPK 16    /* classes reported per result */
#define USV_RESULT_PATH_MAX 4096
#define USV_UID_MAX 65 /* 64 characters + NUL */

/* Largest source file usv_tagged_write loads (it holds the whole object in
 * memory); larger ones fail with -USV_ERR_LIMIT. */
#define USV_TAGGED_MAX_BYTES (1024ull * 1024 * 1024)

/* The private coding scheme of the view codes (declared in the SR's
 * Coding Scheme Identification Sequence). */
#define USV_VIEW_SCHEME "99USVIEW"
/* Private block of the tagged copy. */
#define USV_PRIVATE_GROUP 0x0091
#define USV_PRIVATE_CREATOR "USVIEW 1.0"

typedef struct usv_result_score {
	int32_t class_index; /* index into usv_result.classes */
	double prob;         /* 0..1 */
} usv_result_score;

typedef struct usv_result {
	char source_path[USV_RESULT_PATH_MAX]; /* the classified DICOM file */
	uint32_t frame;                        /* 0-based frame index (0 for single-frame) */

	uint32_t nclasses;                                          /* 1..USV_RESULT_MAX_CLASSES */
	char classes[USV_RESULT_MAX_CLASSES][USV_RESULT_LABEL_MAX]; /* model's labels */
	float probs[USV_RESULT_MAX_CLASSES];                        /* per class, sum ~1 */

	int32_t pred_index;                        /* predicted class (argmax) */
	char pred_label[USV_RESULT_LABEL_MAX];     /* = classes[pred_index] */
	uint32_t ntop;                             /* 1..USV_RESULT_MAX_TOPK, <= nclasses */
	usv_result_score top[USV_RESULT_MAX_TOPK]; /* by falling probability */

	char model_name[64];
	char model_version[64];
	char model_sha256[65];      /* 64 lowercase hex digits of the model file */
	char algorithm_name[64];    /* "usview" (set by usv_result_fill) */
	char algorithm_version[64]; /* usview software version, "" = unknown */

	double t_decode_ms; /* timings, informational (in the private JSON) */
	double t_infer_ms;
	double t_total_ms;

	/* QA (all zero = none). The writers add the technologist's label and
	 * the agreement to the SR (and the tagged copy) when tech_label is
	 * set, and show the label "uncertain" instead of pred_label when
	 * uncertain is 1 (pred_index, pred_label and top[] stay the model's). */
	char tech_label[USV_RESULT_LABEL_MAX]; /* technologist's class, "" = none */
	char tech_source[48];                  /* "dicom:ImageComments", "ocr", ... */
	int32_t agrees;       /* with tech_label: 1 = tech_label == pred_label, else 0 */
	int32_t uncertain;    /* 1: top probability < min_confidence */
	float min_confidence; /* the threshold that was applied (0 = off) */
} usv_result;

/* The label shown for an uncertain result. */
#define USV_LABEL_UNCERTAIN "uncertain"

/*
 * usv_result_fill - set classes, probabilities, prediction and top-k of r.
 *	Copies the n labels and probabilities, sets pred_index/pred_label to the
 *	argmax (lowest index on ties), top[] to the topk most probable classes
 *	(topk is clamped to n and USV_RESULT_MAX_TOPK; 0 means 1) and
 *	algorithm_name to "usview" when it is empty. Other fields are left as
 *	they are (set source_path, frame, model_* yourself; zero r first).
 *	Returns 0, or -EINVAL (n of 0 or > USV_RESULT_MAX_CLASSES, a label
 *	empty or too long, a probability not finite or outside [0,1]) with a
 *	message in errbuf.
 */
int usv_result_fill(usv_result *r, const char *const *labels, const float *probs, size_t n,
                    size_t topk, char *errbuf, size_t errlen);

/*
 * usv_result_check - validate a filled result before writing anything
 *	(source_path set, counts in range, pred/top indices valid, pred_label
 *	consistent, model_sha256 64 hex digits). 0 or -EINVAL with a message.
 */
int usv_result_check(const usv_result *r, char *errbuf, size_t errlen);

/* ---- view table ---------------------------------------------------- */

typedef struct usv_view_info {
	const char *key;     /* canonical key, e.g. "liver_left_long"; the label for unknown ones */
	const char *display; /* e.g. "Liver left longitudinal" */
	const char *code_value;     /* value in scheme 99USVIEW (<= 16 chars for the table) */
	const char *organ_code;     /* SNOMED CT (SCT) organ, NULL if none */
	const char *organ_meaning;  /* e.g. "Liver" */
	const char *orient_code;    /* SNOMED CT orientation (CID 6), NULL if none */
	const char *orient_meaning; /* "Longitudinal" / "Transverse" */
	int known;                  /* 1 when from the table */
} usv_view_info;

/* usv_view_count / usv_view_at - the table of the 11 paper views, in order. */
size_t usv_view_count(void);
const usv_view_info *usv_view_at(size_t i);

/* usv_view_lookup - table entry for a label (see VIEW LABELS), NULL if none. */
const usv_view_info *usv_view_lookup(const char *label);

/*
 * usv_view_describe - description of any label: the table entry when known,
 *	else {key = display = code_value = label, no organ/orientation,
 *	known = 0}. The pointers of an unknown label point into `label`:
 *	keep it alive while using *out. Returns 0, or -EINVAL for an empty
 *	or NULL label.
 */
int usv_view_describe(const char *label, usv_view_info *out);

/* ---- deterministic UIDs ------------------------------------------- */

/* Kinds of result objects; the kind enters the UID derivation. */
#define USV_KIND_SR "sr"
#define USV_KIND_TAGGED "tagged"

/*
 * usv_uid_derive - "2.25." + the decimal value of the first 128 bits of
 *	SHA-256 over the given parts joined with '|'. Writes at most 44
 *	characters + NUL into out[USV_UID_MAX]. Deterministic, no leading
 *	zeros (a value of 0 is written "0"). Returns 0 or -EINVAL (NULL part).
 */
int usv_uid_derive(char out[USV_UID_MAX], const char *const *parts, size_t nparts);

/*
 * usv_uid_result_instance - SOP Instance UID of a result:
 *	usv_uid_derive(source SOP Instance UID | frame (decimal, 0-based) |
 *	model SHA-256 | kind). Returns 0 or -EINVAL.
 */
int usv_uid_result_instance(char out[USV_UID_MAX], const char *src_sop_uid, uint32_t frame,
                            const char *model_sha256, const char *kind);

/*
 * usv_uid_result_series - Series Instance UID of a result:
 *	usv_uid_derive("series" | source Series Instance UID | model SHA-256 |
 *	kind). Returns 0 or -EINVAL.
 */
int usv_uid_result_series(char out[USV_UID_MAX], const char *src_series_uid,
                          const char *model_sha256, const char *kind);

/* usv_uid_valid - 1 when s is a syntactically valid UID (digits and dots,
 *	components without leading zeros, 1..64 chars), else 0. */
int usv_uid_valid(const char *s);

/* ---- writing result objects --------------------------------------- */

typedef struct usv_result_opts {
	const char *manufacturer;     /* NULL: "usview" */
	const char *software_version; /* NULL: r->algorithm_version, else "unknown" */
	const char *device_uid;       /* device observer / contributing equipment UID;
	                                 NULL: derived from the model SHA-256 */
	const char *device_name;      /* NULL: "usview" */
	const char *institution;      /* NULL: none */
	int32_t series_number;        /* 0: 9901 for SR, 9902 for tagged copy */
	uint32_t topk;                /* classes to report; 0: r->ntop (<= r->ntop) */
} usv_result_opts;

/* Identity of a written result object. */
typedef struct usv_result_ids {
	char sop_class_uid[USV_UID_MAX];
	char sop_instance_uid[USV_UID_MAX];
	char series_uid[USV_UID_MAX];
	char study_uid[USV_UID_MAX];
} usv_result_ids;

/*
 * usv_sr_write - write the Comprehensive SR for r to out_path.
 *	Reads r->source_path (header only). Tree (TID 1500):
 *
 *	CONTAINER 126000 "Imaging Measurement Report" (template 1500, DCMR)
 *	 HAS CONCEPT MOD  CODE 121049 Language = (en, RFC5646, "English")
 *	 HAS OBS CONTEXT  CODE 121005 Observer Type = (121007, DCM, "Device")
 *	 HAS OBS CONTEXT  UIDREF 121012 Device Observer UID, TEXT 121013 Name,
 *	                  TEXT 121014 Manufacturer
 *	 HAS CONCEPT MOD  CODE 121058 Procedure reported = (45036003, SCT)
 *	 CONTAINS CONTAINER 111028 Image Library
 *	   CONTAINS CONTAINER 126200 Image Library Group
 *	     CONTAINS IMAGE (source SOP class/instance [, frame])
 *	 CONTAINS CONTAINER 126010 Imaging Measurements
 *	   CONTAINS CONTAINER 125007 Measurement Group
 *	     HAS OBS CONTEXT TEXT 112039 Tracking Identifier,
 *	                     UIDREF 112040 Tracking Unique Identifier
 *	     HAS CONCEPT MOD TEXT 111001 Algorithm Name, TEXT 111003 Algorithm
 *	                     Version, TEXT 111002 Algorithm Parameters
 *	                     ("model=<name>;sha256=<hex>")          (TID 4019)
 *	     CONTAINS CODE 111031 Image View = (code, 99USVIEW, display)
 *	       HAS CONCEPT MOD CODE 363698007 Finding Site = SCT organ (if any)
 *	       HAS CONCEPT MOD CODE 111032 Image View Modifier = SCT
 *	                       orientation (if any)
 *	       INFERRED FROM IMAGE 121112 Source of Measurement (source [, frame])
 *	     CONTAINS NUM 122157 Probability, unit (1, UCUM, "no units"), one
 *	              per reported class (top-k, most probable first),
 *	       HAS CONCEPT MOD CODE 111031 Image View = that class's code
 *	     with tech_label:
 *	     CONTAINS CODE (TECHLABEL, 99USVIEW, "Technologist view label")
 *	              = the label's view code
 *	       HAS PROPERTIES TEXT (TECHLABELSRC, 99USVIEW, "Technologist
 *	              label source") = tech_source (when set)
 *	     CONTAINS CODE (AGREE, 99USVIEW, "Agrees with technologist")
 *	              = (373066001, SCT, "Yes") / (373067005, SCT, "No")
 *	With uncertain, Image View = (UNCERTAIN, 99USVIEW, "Uncertain view")
 *	without Finding Site and orientation, and Algorithm Parameters end
 *	with ";min_confidence=<threshold>" (min_confidence > 0); the
 *	probabilities stay. usv_result_check refuses agrees / uncertain
 *	other than 0 and 1, agrees without tech_label, and min_confidence
 *	outside [0, 1].
 *
 *	The exact relationships are documented in dcm_sr.cpp; the test suite
 *	runs dciodvfy on the output. Patient/study attributes and Specific
 *	Character Set are copied from the source; Current Requested Procedure
 *	Evidence lists the source. UIDs: usv_uid_result_* with kind "sr".
 *	The file is written at out_path in place, not fsynced (see
 *	DURABILITY). ids (may be NULL) receives the UIDs. Returns 0 or
 *	-EINVAL (bad result), -ENOENT/-EIO/-ENOSPC and other negative errno
 *	values (files), -USV_ERR_FORMAT (source not readable as DICOM
 *	or without the UIDs), -USV_ERR_DICOM (DCMTK refused), message in errbuf.
 */
int usv_sr_write(const usv_result *r, const usv_result_opts *opts, const char *out_path,
                 usv_result_ids *ids, char *errbuf, size_t errlen);

/*
 * usv_tagged_write - write the tagged copy of r->source_path to out_path.
 *	The source is loaded completely, attributes are changed, and the file
 *	is saved in the source's transfer syntax (Implicit VR sources become
 *	Explicit VR Little Endian so the private block keeps its VRs; pixel
 *	data is then unchanged too). UIDs: usv_uid_result_* with kind
 *	"tagged". Private block in group 0x0091 under creator "USVIEW 1.0"
 *	(block byte xx is the first free or already ours, usually 0x10):
 *	  (0091,xx01) LO  predicted label key
 *	  (0091,xx02) DS  predicted probability
 *	  (0091,xx03) LO  model name, (0091,xx04) LO model version
 *	  (0091,xx05) LO  model SHA-256 (64 hex digits)
 *	  (0091,xx06) US  frame number (1-based)
 *	  (0091,xx07) LT  JSON: {"label":..,"index":..,"prob":..,"frame":..,
 *	                  "topk":[{"label":..,"prob":..},..],"classes":[..],
 *	                  "model":{"name","version","sha256"},"algorithm":..,
 *	                  "timings_ms":{"decode","infer","total"}}
 *	Written like the SR (see DURABILITY). Same return codes as
 *	usv_sr_write, plus -USV_ERR_LIMIT for a source over
 *	USV_TAGGED_MAX_BYTES.
 */
int usv_tagged_write(const usv_result *r, const usv_result_opts *opts, const char *out_path,
                     usv_result_ids *ids, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
