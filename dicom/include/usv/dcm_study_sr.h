/*
 * NAME
 *	dcm_study_sr.h - the study-level completeness SR of the QA study tracker
 *
 * SYNOPSIS
 *	#include "usv/dcm_study_sr.h"
 *
 * DESCRIPTION
 *	One Comprehensive SR (1.2.840.10008.5.1.4.1.1.88.33) per study and
 *	revision of its completeness record: in the study of its source
 *	instances (patient and study attributes copied from source_path), in
 *	a new series shared by every revision made with one model, with this
 *	content tree (no template is declared):
 *
 *	  CONTAINER (99USVIEW, STUDYQA, "Ultrasound study completeness")
 *	   +-HAS CONCEPT MOD  CODE Language of Content Item = English
 *	   +-HAS OBS CONTEXT  CODE Observer Type = Device
 *	   +-HAS OBS CONTEXT  UIDREF Device Observer UID, TEXT Name, Manufacturer
 *	   +-HAS CONCEPT MOD  CODE Procedure Reported = Ultrasonography of abdomen
 *	   +-CONTAINS TEXT (99USVIEW, PROTOCOL, "Protocol") = protocol name
 *	   +-CONTAINS NUM  (99USVIEW, REVISION, "Record revision")  {revision}
 *	   +-CONTAINS CONTAINER (99USVIEW, VIEWSFOUND, "Views found")
 *	   |  +-CONTAINS CODE Image View (DCM 111031) = view      (one per view)
 *	   |     +-HAS CONCEPT MOD CODE Finding Site / Image View Modifier
 *	   |     +-INFERRED FROM IMAGE  (one per source instance of the view)
 *	   +-CONTAINS CONTAINER (99USVIEW, VIEWSMISSING, "Views missing")
 *	   |  +-CONTAINS CODE Image View = view                  (one per view)
 *	   +-CONTAINS NUM (99USVIEW, NINSTANCES, "Instances")     {images}
 *	   +-CONTAINS NUM (99USVIEW, NDISAGREE, "Disagreements with the
 *	   |              technologist's label")                   {images}
 *	   +-CONTAINS NUM (99USVIEW, NUNCERTAIN, "Uncertain classifications")
 *
 *	Every referenced image is also listed in the Current Requested
 *	Procedure Evidence Sequence. View codes are those of usv_sr_write
 *	(usv/dcm_result.h: scheme 99USVIEW, SNOMED CT organ and orientation).
 *
 *	UIDs are derived (usv_uid_derive), never random:
 *	  SOP Instance = derive("study_sr" | study UID | revision | model)
 *	  Series       = derive("study_sr_series" | study UID | model)
 *	so writing the same revision again gives the same object.
 *
 * CONTRACTS
 *	usv_study_sr_uids(study_uid, revision, model_sha256, sop, series)
 *		The two UIDs above. 0 or -EINVAL (empty argument, revision 0).
 *	usv_study_sr_write(sr, out_path, ids, errbuf, errlen)
 *		Writes the SR to out_path (created or truncated; no fsync, as
 *		the other result writers: see DURABILITY in dcm_result.h).
 *		ids (may be NULL) gets the SOP class, SOP instance, series
 *		and study UIDs. The study UID of source_path must equal
 *		sr->study_uid. 0, -EINVAL (bad arguments or UIDs),
 *		-ENOENT / -USV_ERR_FORMAT (source unreadable), -USV_ERR_DICOM,
 *		-ENOMEM, -errno (writing), with a message naming the file.
 *
 * THREADS
 *	dcmsr is not thread-safe: the tree is built under the lock of
 *	usv_sr_write, so both may be called from any thread.
 */
#ifndef USV_DCM_STUDY_SR_H
#define USV_DCM_STUDY_SR_H

#include <stddef.h>

#include "usv/dcm_result.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One referenced source instance. */
typedef struct usv_study_sr_ref {
	const char *sop_class_uid;
	const char *sop_instance_uid;
	const char *series_uid;
} usv_study_sr_ref;

/* A view that was found, with the instances classified as it. */
typedef struct usv_study_sr_view {
	const char *label; /* class name (usv_view_describe) */
	size_t nrefs;
	const usv_study_sr_ref *refs;
} usv_study_sr_view;

typedef struct usv_study_sr {
	const char *source_path;  /* an instance of the study (patient/study data) */
	const char *study_uid;    /* must match the source */
	unsigned revision;        /* >= 1 */
	const char *model_sha256; /* enters the UIDs ("" allowed: "none") */
	const char *protocol;     /* protocol name */
	size_t nviews;
	const usv_study_sr_view *views;
	size_t nmissing;
	const char *const *missing; /* class names */
	unsigned instances, disagreements, uncertain;
	const char *software_version; /* "" = unknown */
	const char *device_name;      /* "" = "usview" */
} usv_study_sr;

int usv_study_sr_uids(const char *study_uid, unsigned revision, const char *model_sha256,
                      char sop[USV_UID_MAX], char series[USV_UID_MAX]);
int usv_study_sr_write(const usv_study_sr *sr, const char *out_path, usv_result_ids *ids,
                       char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
