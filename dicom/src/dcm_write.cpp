/*
 * NAME
 *	dcm_write.cpp - Ultrasound Image Storage instances from grey pixels
 *
 * DESCRIPTION
 *	See usv/dcm_write.h. Built with DcmFileFormat and saved with
 *	EXS_LittleEndianExplicit by usv::save_file() (dcm_save.h: written in
 *	place, every error checked, no fsync); the meta header is created by
 *	DCMTK.
 */
#include "usv/dcm_write.h"
#include "dcm_save.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcuid.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace
{

const char *k_us_image_storage = "1.2.840.10008.5.1.4.1.1.6.1";

bool put(DcmItem *it, const DcmTagKey &tag, const char *v)
{
	return it->putAndInsertString(tag, v ? v : "").good();
}

} // namespace

extern "C" int usv_dcm_write_us(const char *path, const usv_dcm_us_spec *s, char *errbuf,
                                size_t errlen)
{
	try {
		if (!path || !s || !s->pixels || s->rows < 1 || s->cols < 1 || s->rows > 16384 ||
		    s->cols > 16384 || !s->sop_instance_uid || !s->study_uid || !s->series_uid)
			return usv_seterr(errbuf, errlen, -EINVAL, "%s: bad image specification",
			                  path ? path : "(null)");
		DcmFileFormat ff;
		DcmDataset *ds = ff.getDataset();
		bool ok = true;
		ok &= put(ds, DCM_SpecificCharacterSet, "ISO_IR 100");
		ok &= put(ds, DCM_ImageType, "DERIVED\\PRIMARY");
		ok &= put(ds, DCM_SOPClassUID, k_us_image_storage);
		ok &= put(ds, DCM_SOPInstanceUID, s->sop_instance_uid);
		ok &= put(ds, DCM_StudyDate, s->study_date);
		ok &= put(ds, DCM_SeriesDate, s->study_date);
		ok &= put(ds, DCM_ContentDate, s->study_date);
		ok &= put(ds, DCM_StudyTime, s->study_time);
		ok &= put(ds, DCM_SeriesTime, s->study_time);
		ok &= put(ds, DCM_ContentTime, s->study_time);
		ok &= put(ds, DCM_AccessionNumber, s->accession_number);
		ok &= put(ds, DCM_Modality, "US");
		ok &= put(ds, DCM_Manufacturer, s->manufacturer);
		ok &= put(ds, DCM_InstitutionName, s->institution);
		ok &= put(ds, DCM_ReferringPhysicianName, "");
		ok &= put(ds, DCM_StudyDescription, s->study_description);
		ok &= put(ds, DCM_SeriesDescription, s->series_description);
		ok &= put(ds, DCM_ManufacturerModelName, s->model_name);
		ok &= put(ds, DCM_PatientName, s->patient_name);
		ok &= put(ds, DCM_PatientID, s->patient_id);
		ok &= put(ds, DCM_PatientBirthDate, s->patient_birth_date);
		ok &= put(ds, DCM_PatientSex, s->patient_sex);
		if (s->body_part)
			ok &= put(ds, DCM_BodyPartExamined, s->body_part);
		if (s->software_versions)
			ok &= put(ds, DCM_SoftwareVersions, s->software_versions);
		if (s->protocol_name)
			ok &= put(ds, DCM_ProtocolName, s->protocol_name);
		if (s->view_code_value && s->view_code_scheme && s->view_code_meaning) {
			DcmItem *vc = nullptr;
			if (ds->findOrCreateSequenceItem(DCM_ViewCodeSequence, vc, -2).good() &&
			    vc) {
				ok &= put(vc, DCM_CodeValue, s->view_code_value);
				ok &= put(vc, DCM_CodingSchemeDesignator, s->view_code_scheme);
				ok &= put(vc, DCM_CodeMeaning, s->view_code_meaning);
			} else {
				ok = false;
			}
		}
		ok &= put(ds, DCM_StudyInstanceUID, s->study_uid);
		ok &= put(ds, DCM_SeriesInstanceUID, s->series_uid);
		ok &= put(ds, DCM_StudyID, s->study_id);
		ok &= ds->putAndInsertString(DCM_SeriesNumber,
		                             std::to_string(s->series_number).c_str())
		          .good();
		ok &= ds->putAndInsertString(DCM_InstanceNumber,
		                             std::to_string(s->instance_number).c_str())
		          .good();
		if (s->frame_of_reference_uid) {
			ok &= put(ds, DCM_FrameOfReferenceUID, s->frame_of_reference_uid);
			ok &= put(ds, DCM_PositionReferenceIndicator, "");
		}
		ok &= put(ds, DCM_PatientOrientation, "");
		if (s->image_comments)
			ok &= put(ds, DCM_ImageComments, s->image_comments);
		ok &= ds->putAndInsertUint16(DCM_SamplesPerPixel, 1).good();
		ok &= put(ds, DCM_PhotometricInterpretation, "MONOCHROME2");
		ok &= ds->putAndInsertUint16(DCM_Rows, (Uint16)s->rows).good();
		ok &= ds->putAndInsertUint16(DCM_Columns, (Uint16)s->cols).good();
		ok &= ds->putAndInsertUint16(DCM_BitsAllocated, 8).good();
		ok &= ds->putAndInsertUint16(DCM_BitsStored, 8).good();
		ok &= ds->putAndInsertUint16(DCM_HighBit, 7).good();
		ok &= ds->putAndInsertUint16(DCM_PixelRepresentation, 0).good();
		ok &= put(ds, DCM_BurnedInAnnotation, s->burned_in_annotation ? "YES" : "NO");
		ok &= put(ds, DCM_LossyImageCompression, "00");
		/* one 2-D tissue region (PS3.3 C.8.5.5) */
		DcmItem *reg = nullptr;
		if (ds->findOrCreateSequenceItem(DCM_SequenceOfUltrasoundRegions, reg, -2).good() &&
		    reg) {
			ok &= reg->putAndInsertUint16(DCM_RegionSpatialFormat, 1).good();
			ok &= reg->putAndInsertUint16(DCM_RegionDataType, 1).good();
			ok &= reg->putAndInsertUint32(DCM_RegionFlags, 0).good();
			ok &= reg->putAndInsertUint32(DCM_RegionLocationMinX0, (Uint32)s->region_x0)
			          .good();
			ok &= reg->putAndInsertUint32(DCM_RegionLocationMinY0, (Uint32)s->region_y0)
			          .good();
			ok &= reg->putAndInsertUint32(DCM_RegionLocationMaxX1, (Uint32)s->region_x1)
			          .good();
			ok &= reg->putAndInsertUint32(DCM_RegionLocationMaxY1, (Uint32)s->region_y1)
			          .good();
			ok &= reg->putAndInsertUint16(DCM_PhysicalUnitsXDirection, 3).good();
			ok &= reg->putAndInsertUint16(DCM_PhysicalUnitsYDirection, 3).good();
			ok &= reg->putAndInsertFloat64(DCM_PhysicalDeltaX, s->delta_x_cm).good();
			ok &= reg->putAndInsertFloat64(DCM_PhysicalDeltaY, s->delta_y_cm).good();
		} else {
			ok = false;
		}
		ok &= ds->putAndInsertUint8Array(DCM_PixelData, s->pixels,
		                                 (unsigned long)s->rows * (unsigned long)s->cols)
		          .good();
		if (!ok)
			return usv_seterr(errbuf, errlen, -USV_ERR_DICOM,
			                  "%s: cannot build the data set", path);
		std::string why;
		int rc = usv::save_file(ff, path, EXS_LittleEndianExplicit, EET_UndefinedLength,
		                        EGL_recalcGL, EWM_createNewMeta, why);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "%s: %s", path, why.c_str());
		return 0;
	} catch (...) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path ? path : "");
	}
}
