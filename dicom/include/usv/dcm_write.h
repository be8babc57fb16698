/*
 * NAME
 *	dcm_write.h - writing 8-bit grey ultrasound images as DICOM files
 *
 * SYNOPSIS
 *	#include "usv/dcm_write.h"
 *
 * DESCRIPTION
 *	usv_dcm_write_us() writes one Ultrasound Image Storage instance
 *	(SOP Class 1.2.840.10008.5.1.4.1.1.6.1), uncompressed Explicit VR
 *	Little Endian, MONOCHROME2, 8 bits, one frame, with the patient /
 *	study / series / equipment attributes given and one Sequence of
 *	Ultrasound Regions item (a 2-D tissue region with its pixel spacing).
 *	It is used by `usview phantom` to make labelled synthetic studies.
 *	The file is written in place at path, with every write and close()
 *	checked; on failure the partial file is removed. No fsync: when the
 *	call returns 0 the file is complete for every reader on this machine,
 *	which is what a command-line tool needs; a caller that must survive
 *	a power cut fsyncs it itself.
 *
 * CONTRACTS
 *	usv_dcm_write_us(path, spec, errbuf, errlen)
 *		spec->pixels holds rows * cols bytes (rows top down). Every
 *		string field may be NULL (attribute left empty or absent, as
 *		its type allows). rows, cols 1..16384. Returns 0, -EINVAL,
 *		-EIO or -USV_ERR_DICOM with a one-line message naming path.
 *		Thread-safe for distinct paths.
 */
#ifndef USV_DCM_WRITE_H
#define USV_DCM_WRITE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct usv_dcm_us_spec {
	int rows, cols;
	const uint8_t *pixels;
	const char *sop_instance_uid, *study_uid, *series_uid, *frame_of_reference_uid;
	const char *patient_name, *patient_id, *patient_sex, *patient_birth_date;
	const char *study_date, *study_time, *study_id, *accession_number;
	const char *study_description, *series_description, *image_comments;
	const char *manufacturer, *model_name, *institution, *software_versions;
	const char *body_part;
	/* The technologist's view, where scanners store it: Protocol Name
	 * (0018,1030), and View Code Sequence (0054,0220) with one item
	 * (Code Value, Coding Scheme Designator, Code Meaning); each written
	 * only when non-NULL (the sequence when all three are). */
	const char *protocol_name;
	const char *view_code_value, *view_code_scheme, *view_code_meaning;
	int series_number, instance_number;
	int burned_in_annotation; /* 1 = "YES" */
	/* 2-D region (inclusive corners) and its spacing in cm per pixel */
	int region_x0, region_y0, region_x1, region_y1;
	double delta_x_cm, delta_y_cm;
} usv_dcm_us_spec;

int usv_dcm_write_us(const char *path, const usv_dcm_us_spec *spec, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
