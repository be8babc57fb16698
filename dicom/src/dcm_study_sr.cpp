/*
 * NAME
 *	dcm_study_sr.cpp - the study-level completeness SR (usv/dcm_study_sr.h)
 *
 * DESCRIPTION
 *	Built with DCMTK's plain DSRDocument tree API, like dcm_sr.cpp, and
 *	under the same lock (usv::sr_mutex(): dcmsr numbers tree nodes with a
 *	static, unsynchronised counter). The patient and study modules come
 *	from one source instance of the study (readStudyData); everything
 *	else is ours: derived Series and SOP Instance UIDs (replaced in the
 *	dataset after write(), as DSRDocument only makes random ones), the
 *	Current Requested Procedure Evidence of every referenced image and
 *	the declaration of the private coding scheme 99USVIEW.
 */
#include "usv/dcm_study_sr.h"

#include "dcm_result_priv.h"
#include "dcm_save.h"
#include "dcm_sr_tree.h"
#include "usv/err.h"

#include <dcmtk/dcmsr/codes/dcm.h>
#include <dcmtk/dcmsr/codes/sct.h>
#include <dcmtk/dcmsr/dsrcodvl.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/dcmsr/dsrimgvl.h>
#include <dcmtk/dcmsr/dsrnumvl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unistd.h>

using usv::ResultError;

namespace
{

void ok(const OFCondition &c, const char *what)
{
	usv::sr_ok(c, "study SR", what);
}

DSRCodedEntryValue priv(const char *value, const char *meaning)
{
	return DSRCodedEntryValue(value, USV_VIEW_SCHEME, meaning);
}

DSRCodedEntryValue view_code(const char *label)
{
	return usv::sr_view_code(label, "study SR");
}

bool plausible_uid(const char *u)
{
	size_t n = u ? strlen(u) : 0;
	return n && n <= 64 && strspn(u, "0123456789.") == n;
}

std::string get_str(DcmItem &ds, const DcmTagKey &key, bool all = false)
{
	OFString v;

	if (all ? ds.findAndGetOFStringArray(key, v).good() : ds.findAndGetOFString(key, v).good())
		return std::string(v.c_str());
	return std::string();
}

void check_input(const usv_study_sr &s)
{
	if (!s.source_path || !*s.source_path)
		throw ResultError(-EINVAL, "study SR: no source instance");
	if (!plausible_uid(s.study_uid))
		throw ResultError(-EINVAL, "study SR: invalid study UID");
	if (s.revision < 1)
		throw ResultError(-EINVAL, "study SR: revision 0");
	if ((s.nviews && !s.views) || (s.nmissing && !s.missing))
		throw ResultError(-EINVAL, "study SR: NULL list");
	for (size_t i = 0; i < s.nviews; i++) {
		const usv_study_sr_view &v = s.views[i];
		if (!v.label || !*v.label || (v.nrefs && !v.refs))
			throw ResultError(-EINVAL, "study SR: invalid view");
		for (size_t k = 0; k < v.nrefs; k++)
			if (!plausible_uid(v.refs[k].sop_class_uid) ||
			    !plausible_uid(v.refs[k].sop_instance_uid) ||
			    !plausible_uid(v.refs[k].series_uid))
				throw ResultError(-EINVAL, std::string("study SR: view ") +
				                               v.label +
				                               ": invalid image reference");
	}
	for (size_t i = 0; i < s.nmissing; i++)
		if (!s.missing[i] || !*s.missing[i])
			throw ResultError(-EINVAL, "study SR: empty missing view");
}

void build(const usv_study_sr &s, DcmDataset &srcds, const std::string &charset,
           const std::string &sop_uid, const std::string &series_uid, DcmFileFormat &out)
{
	DSRDocument doc(DSRTypes::DT_ComprehensiveSR);
	ok(doc.readStudyData(srcds), "copying patient/study data");
	if (!charset.empty())
		ok(doc.setSpecificCharacterSet(charset.c_str()), "Specific Character Set");
	std::string version =
	    s.software_version && *s.software_version ? s.software_version : "unknown";
	std::string device = s.device_name && *s.device_name ? s.device_name : "usview";
	ok(doc.setManufacturer("usview"), "Manufacturer");
	ok(doc.setManufacturerModelName("usview"), "Manufacturer Model Name");
	ok(doc.setSoftwareVersions(version.c_str(), OFFalse), "Software Versions");
	ok(doc.setSeriesDescription("usview study completeness"), "Series Description");
	ok(doc.setSeriesNumber("9903"), "Series Number");
	ok(doc.setInstanceNumber(std::to_string(s.revision).c_str()), "Instance Number");

	usv::sr_declare_scheme(doc, "study SR");
	for (size_t i = 0; i < s.nviews; i++)
		for (size_t k = 0; k < s.views[i].nrefs; k++) {
			const usv_study_sr_ref &r = s.views[i].refs[k];
			ok(doc.getCurrentRequestedProcedureEvidence().addItem(
			       s.study_uid, r.series_uid, r.sop_class_uid, r.sop_instance_uid,
			       OFFalse),
			   "evidence");
		}

	DSRDocumentTree &t = doc.getTree();
	usv::SrTree b(t, "study SR");
	size_t root = b.root(priv("STUDYQA", "Ultrasound study completeness"));
	b.code(root, DSRTypes::RT_hasConceptMod, CODE_DCM_LanguageOfContentItemAndDescendants,
	       DSRCodedEntryValue("en", "RFC5646", "English"));
	b.code(root, DSRTypes::RT_hasObsContext, CODE_DCM_ObserverType, CODE_DCM_Device);
	{
		char dev_uid[USV_UID_MAX];
		const char *parts[2] = {"device", s.model_sha256 && *s.model_sha256 ? s.model_sha256
		                                                                    : "none"};
		usv_uid_derive(dev_uid, parts, 2);
		DSRCodedEntryValue c(CODE_DCM_DeviceObserverUID);
		b.add(root, DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, c);
		ok(b.item().setStringValue(dev_uid), "Device Observer UID");
	}
	b.text(root, DSRTypes::RT_hasObsContext, CODE_DCM_DeviceObserverName, device);
	b.text(root, DSRTypes::RT_hasObsContext, CODE_DCM_DeviceObserverManufacturer, "usview");
	b.code(root, DSRTypes::RT_hasConceptMod, CODE_DCM_ProcedureReported,
	       DSRCodedEntryValue("45036003", "SCT", "Ultrasonography of abdomen"));

	b.text(root, DSRTypes::RT_contains, priv("PROTOCOL", "Protocol"),
	       s.protocol && *s.protocol ? s.protocol : "default");
	b.num(root, priv("REVISION", "Record revision"), std::to_string(s.revision),
	      DSRCodedEntryValue("1", "UCUM", "no units"));

	DSRCodedEntryValue found_c = priv("VIEWSFOUND", "Views found");
	size_t found = b.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container, found_c);
	for (size_t i = 0; i < s.nviews; i++) {
		const usv_study_sr_view &v = s.views[i];
		size_t vid =
		    b.code(found, DSRTypes::RT_contains, CODE_DCM_ImageView, view_code(v.label));
		usv_view_info vi;
		usv_view_describe(v.label, &vi);
		if (vi.organ_code)
			b.code(vid, DSRTypes::RT_hasConceptMod, CODE_SCT_FindingSite,
			       DSRCodedEntryValue(vi.organ_code, "SCT", vi.organ_meaning));
		if (vi.orient_code)
			b.code(vid, DSRTypes::RT_hasConceptMod, CODE_DCM_ImageViewModifier,
			       DSRCodedEntryValue(vi.orient_code, "SCT", vi.orient_meaning));
		for (size_t k = 0; k < v.nrefs; k++) {
			b.add(vid, DSRTypes::RT_inferredFrom, DSRTypes::VT_Image,
			      DSRCodedEntryValue());
			DSRImageReferenceValue ref(v.refs[k].sop_class_uid,
			                           v.refs[k].sop_instance_uid, OFFalse);
			ok(b.item().setImageReference(ref, OFFalse), "image reference");
		}
	}
	DSRCodedEntryValue miss_c = priv("VIEWSMISSING", "Views missing");
	size_t miss = b.add(root, DSRTypes::RT_contains, DSRTypes::VT_Container, miss_c);
	for (size_t i = 0; i < s.nmissing; i++)
		b.code(miss, DSRTypes::RT_contains, CODE_DCM_ImageView, view_code(s.missing[i]));

	DSRCodedEntryValue images("{images}", "UCUM", "images");
	b.num(root, priv("NINSTANCES", "Instances"), std::to_string(s.instances), images);
	b.num(root, priv("NDISAGREE", "Disagreements with the technologist's label"),
	      std::to_string(s.disagreements), images);
	b.num(root, priv("NUNCERTAIN", "Uncertain classifications"), std::to_string(s.uncertain),
	      images);

	ok(doc.completeDocument(), "completing");
	DcmDataset *ds = out.getDataset();
	ok(doc.write(*ds), "writing");
	usv::sr_fix_old_date_time(*ds);
	ok(ds->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str()), "Series UID");
	ok(ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str()), "SOP Instance UID");
}

} // namespace

extern "C" int usv_study_sr_uids(const char *study_uid, unsigned revision, const char *model_sha256,
                                 char sop[USV_UID_MAX], char series[USV_UID_MAX])
{
	char rev[16];

	if (!study_uid || !*study_uid || !revision || !model_sha256 || !sop || !series)
		return -EINVAL;
	const char *model = *model_sha256 ? model_sha256 : "none";
	snprintf(rev, sizeof rev, "%u", revision);
	const char *p1[4] = {"study_sr", study_uid, rev, model};
	const char *p2[3] = {"study_sr_series", study_uid, model};
	int r = usv_uid_derive(sop, p1, 4);
	return r ? r : usv_uid_derive(series, p2, 3);
}

extern "C" int usv_study_sr_write(const usv_study_sr *sr, const char *out_path, usv_result_ids *ids,
                                  char *errbuf, size_t errlen)
{
	const char *src = sr && sr->source_path ? sr->source_path : "study SR";
	try {
		if (!sr || !out_path || !*out_path)
			return usv_seterr(errbuf, errlen, -EINVAL, "study SR: invalid arguments");
		check_input(*sr);
		char sop[USV_UID_MAX], series[USV_UID_MAX];
		int rc = usv_study_sr_uids(sr->study_uid, sr->revision,
		                           sr->model_sha256 ? sr->model_sha256 : "", sop, series);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "study SR: cannot derive the UIDs");

		DcmFileFormat srcff;
		OFCondition c = srcff.loadFileUntilTag(src, EXS_Unknown, EGL_noChange, 4096,
		                                       ERM_autoDetect, DCM_PixelData);
		if (c.bad())
			return usv_seterr(errbuf, errlen,
			                  c == EC_InvalidFilename || access(src, R_OK)
			                      ? -ENOENT
			                      : -USV_ERR_FORMAT,
			                  "%s: cannot read as DICOM: %s", src, c.text());
		DcmDataset &srcds = *srcff.getDataset();
		std::string study = get_str(srcds, DCM_StudyInstanceUID);
		if (study != sr->study_uid)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "%s: Study Instance UID %s is not the study's %s", src,
			                  study.c_str(), sr->study_uid);
		std::string charset = get_str(srcds, DCM_SpecificCharacterSet, true);
		for (size_t pos = 0; (pos = charset.find("ISO-IR ", pos)) != std::string::npos;
		     pos += 7)
			charset[pos + 3] = '_';

		DcmFileFormat out;
		{
			std::lock_guard<std::mutex> lock(usv::sr_mutex());
			build(*sr, srcds, charset, sop, series, out);
		}
		std::string why;
		rc = usv::save_file(out, out_path, EXS_LittleEndianExplicit, EET_ExplicitLength,
		                    EGL_recalcGL, EWM_updateMeta, why);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "%s: cannot write: %s", out_path,
			                  why.c_str());
		usv::fill_ids(ids, UID_ComprehensiveSRStorage, sop, series, study);
		return 0;
	} catch (const ResultError &e) {
		return usv_seterr(errbuf, errlen, e.code, "%s: %s", src, e.what());
	} catch (const std::bad_alloc &) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "study SR: out of memory");
	} catch (const std::exception &e) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "%s: study SR: %s", src,
		                  e.what());
	} catch (...) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "study SR: unexpected failure");
	}
}
