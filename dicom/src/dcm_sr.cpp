/*
 * NAME
 *	dcm_sr.cpp - Comprehensive SR (TID 1500 tree) of a view classification
 *
 * DESCRIPTION
 *	Builds the SR described in usv/dcm_result.h with DCMTK's plain
 *	DSRDocument tree API (the typed TID 1500 classes only take CID 7469
 *	measurements, not top-k probabilities). Each NUM Probability names its
 *	class with a HAS CONCEPT MOD CODE "Image View" child: a NUM may have
 *	CODE concept modifiers in a Comprehensive SR, and dciodvfy accepts it.
 *
 *	Things DCMTK does not do and this file does: Current Requested
 *	Procedure Evidence, Specific Character Set copied from the source (the
 *	misspelling "ISO-IR nnn" is normalised to "ISO_IR nnn"), declaration
 *	of the private coding scheme 99USVIEW, our derived Series and SOP
 *	Instance UIDs (DSRDocument only makes random ones: they are replaced
 *	in the dataset after write()).
 *
 *	dcmsr keeps a static, unsynchronised node counter: every SR is built
 *	under g_sr_mutex.
 *
 *	Also holds the helpers shared with dcm_tagged.cpp (dcm_result_priv.h).
 */
#include "dcm_result_priv.h"
#include "dcm_sr_tree.h"
#include "dcm_save.h"
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
#include <unistd.h>

namespace usv
{

static std::string get_str(DcmItem &ds, const DcmTagKey &key, bool all = false)
{
	OFString v;

	if (all ? ds.findAndGetOFStringArray(key, v).good() : ds.findAndGetOFString(key, v).good())
		return std::string(v.c_str());
	return std::string();
}

static std::string normalise_charset(std::string cs)
{
	/* Some writers spell the defined terms "ISO-IR 100"; DICOM says "ISO_IR 100". */
	size_t pos = 0;

	while ((pos = cs.find("ISO-IR ", pos)) != std::string::npos) {
		cs[pos + 3] = '_';
		pos += 7;
	}
	return cs;
}

void fill_ids(usv_result_ids *ids, const char *sop_class, const char *sop, const char *series,
              const std::string &study)
{
	if (!ids)
		return;
	snprintf(ids->sop_class_uid, sizeof ids->sop_class_uid, "%s", sop_class);
	snprintf(ids->sop_instance_uid, sizeof ids->sop_instance_uid, "%s", sop);
	snprintf(ids->series_uid, sizeof ids->series_uid, "%s", series);
	snprintf(ids->study_uid, sizeof ids->study_uid, "%s", study.c_str());
}

int result_uids(const usv_result &r, const SourceInfo &src, const char *kind, char sop[USV_UID_MAX],
                char series[USV_UID_MAX], char *errbuf, size_t errlen)
{
	uint32_t nf = src.nframes > 0 ? (uint32_t)src.nframes : 1;
	if (r.frame >= nf)
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: frame %u out of range (%u frames)",
		                  r.source_path, (unsigned)r.frame, (unsigned)nf);
	usv_uid_result_instance(sop, src.sop_instance.c_str(), r.frame, r.model_sha256, kind);
	usv_uid_result_series(series, src.series.c_str(), r.model_sha256, kind);
	return 0;
}

SourceInfo source_info(DcmDataset &ds, const char *path)
{
	SourceInfo s;

	s.sop_class = get_str(ds, DCM_SOPClassUID);
	s.sop_instance = get_str(ds, DCM_SOPInstanceUID);
	s.series = get_str(ds, DCM_SeriesInstanceUID);
	s.study = get_str(ds, DCM_StudyInstanceUID);
	/* Lenient on purpose: references must repeat the source's values as
	 * they are, even with a leading zero in a component. */
	auto plausible = [](const std::string &u) {
		return !u.empty() && u.size() <= 64 &&
		       u.find_first_not_of("0123456789.") == std::string::npos;
	};
	const char *what = nullptr;
	if (!plausible(s.sop_class))
		what = "SOP Class UID";
	else if (!plausible(s.sop_instance))
		what = "SOP Instance UID";
	else if (!plausible(s.series))
		what = "Series Instance UID";
	else if (!plausible(s.study))
		what = "Study Instance UID";
	if (what)
		throw ResultError(-USV_ERR_FORMAT, std::string("source has no valid ") + what);
	s.charset = normalise_charset(get_str(ds, DCM_SpecificCharacterSet, true));
	Sint32 nf = 0;
	if (ds.tagExistsWithValue(DCM_NumberOfFrames)) {
		if (ds.findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
			throw ResultError(-USV_ERR_FORMAT,
			                  "source has an invalid Number of Frames");
		s.nframes = nf;
	}
	/* Referenced Frame Number only for SOP classes that are multi-frame
	 * (a single-frame class with Number of Frames must not get one). */
	static const char *const single_frame[] = {
	    UID_UltrasoundImageStorage,
	    UID_RETIRED_UltrasoundImageStorage,
	    UID_SecondaryCaptureImageStorage,
	    UID_ComputedRadiographyImageStorage,
	    UID_CTImageStorage,
	    UID_MRImageStorage,
	    UID_DigitalXRayImageStorageForPresentation,
	    UID_DigitalXRayImageStorageForProcessing,
	    UID_VLPhotographicImageStorage,
	};
	s.multiframe = s.nframes > 0;
	for (const char *u : single_frame)
		if (s.sop_class == u)
			s.multiframe = false;
	return s;
}

Opts resolve_opts(const usv_result &r, const usv_result_opts *o, long default_series)
{
	Opts p;
	usv_result_opts z;

	memset(&z, 0, sizeof z);
	if (!o)
		o = &z;
	p.manufacturer = o->manufacturer && *o->manufacturer ? o->manufacturer : "usview";
	if (o->software_version && *o->software_version)
		p.software_version = o->software_version;
	else if (r.algorithm_version[0])
		p.software_version = r.algorithm_version;
	else
		p.software_version = "unknown";
	if (o->device_uid && *o->device_uid) {
		if (!usv_uid_valid(o->device_uid))
			throw ResultError(-EINVAL,
			                  std::string("result options: invalid device UID ") +
			                      o->device_uid);
		p.device_uid = o->device_uid;
	} else {
		char uid[USV_UID_MAX];
		const char *parts[2] = {"device", r.model_sha256};
		usv_uid_derive(uid, parts, 2);
		p.device_uid = uid;
	}
	p.device_name = o->device_name && *o->device_name ? o->device_name : "usview";
	p.institution = o->institution ? o->institution : "";
	p.series_number = o->series_number > 0 ? o->series_number : default_series;
	p.topk = o->topk ? o->topk : r.ntop;
	if (p.topk > r.ntop)
		p.topk = r.ntop;
	return p;
}

std::string prob_str(double p)
{
	char b[32];

	snprintf(b, sizeof b, "%.6f", p);
	return b;
}

} // namespace usv

using namespace usv;

namespace
{

std::mutex g_sr_mutex;

} // namespace

/* The lock of every dcmsr tree built in this library (dcm_study_sr.cpp). */
std::mutex &usv::sr_mutex()
{
	return g_sr_mutex;
}

namespace
{

void ok(const OFCondition &c, const char *what)
{
	sr_ok(c, "SR", what);
}

DSRCodedEntryValue view_code(const char *label)
{
	return sr_view_code(label, "SR");
}

/* QA codes of the private scheme (docs/results.md). */
const DSRCodedEntryValue &code_uncertain()
{
	static const DSRCodedEntryValue c("UNCERTAIN", USV_VIEW_SCHEME, "Uncertain view");
	return c;
}

const DSRCodedEntryValue &code_tech_label()
{
	static const DSRCodedEntryValue c("TECHLABEL", USV_VIEW_SCHEME, "Technologist view label");
	return c;
}

const DSRCodedEntryValue &code_tech_source()
{
	static const DSRCodedEntryValue c("TECHLABELSRC", USV_VIEW_SCHEME,
	                                  "Technologist label source");
	return c;
}

const DSRCodedEntryValue &code_agree()
{
	static const DSRCodedEntryValue c("AGREE", USV_VIEW_SCHEME, "Agrees with technologist");
	return c;
}

/* CID 230 Yes-No. */
DSRCodedEntryValue code_yes_no(bool yes)
{
	return yes ? DSRCodedEntryValue("373066001", "SCT", "Yes")
	           : DSRCodedEntryValue("373067005", "SCT", "No");
}

DSRImageReferenceValue image_ref(const SourceInfo &src, uint32_t frame)
{
	DSRImageReferenceValue ref(src.sop_class.c_str(), src.sop_instance.c_str(), OFFalse);
	if (src.multiframe)
		ref.getFrameList().addItem((Sint32)frame + 1);
	return ref;
}

void build_sr(const usv_result &r, const Opts &o, DcmDataset &srcds, const SourceInfo &src,
              const std::string &sop_uid, const std::string &series_uid, DcmFileFormat &out)
{
	DSRDocument doc(DSRTypes::DT_ComprehensiveSR);
	ok(doc.readStudyData(srcds), "copying patient/study data");
	if (!src.charset.empty())
		ok(doc.setSpecificCharacterSet(src.charset.c_str()), "Specific Character Set");
	ok(doc.setManufacturer(o.manufacturer.c_str()), "Manufacturer");
	ok(doc.setManufacturerModelName("usview"), "Manufacturer Model Name");
	ok(doc.setSoftwareVersions(o.software_version.c_str(), OFFalse), "Software Versions");
	ok(doc.setSeriesDescription("usview AI view classification"), "Series Description");
	ok(doc.setSeriesNumber(std::to_string(o.series_number).c_str()), "Series Number");
	ok(doc.setInstanceNumber(std::to_string(r.frame + 1).c_str()), "Instance Number");

	usv::sr_declare_scheme(doc, "SR");
	ok(doc.getCurrentRequestedProcedureEvidence().addItem(src.study.c_str(), src.series.c_str(),
	                                                      src.sop_class.c_str(),
	                                                      src.sop_instance.c_str(), OFFalse),
	   "evidence");

	DSRDocumentTree &t = doc.getTree();
	SrTree b(t, "SR");
	size_t root = b.root(CODE_DCM_ImagingMeasurementReport);
	ok(t.getCurrentContentItem().setTemplateIdentification("1500", "DCMR"), "template id");

	b.code(root, DSRTypes::RT_hasConceptMod, CODE_DCM_LanguageOfContentItemAndDescendants,
	       DSRCodedEntryValue("en", "RFC5646", "English"));
	b.code(root, DSRTypes::RT_hasObsContext, CODE_DCM_ObserverType, CODE_DCM_Device);
	b.uidref(root, DSRTypes::RT_hasObsContext, CODE_DCM_DeviceObserverUID, o.device_uid);
	b.text(root, DSRTypes::RT_hasObsContext, CODE_DCM_DeviceObserverName, o.device_name);
	b.text(root, DSRTypes::RT_hasObsContext, CODE_DCM_DeviceObserverManufacturer,
	       o.manufacturer);
	b.code(root, DSRTypes::RT_hasConceptMod, CODE_DCM_ProcedureReported,
	       DSRCodedEntryValue("45036003", "SCT", "Ultrasonography of abdomen"));

	size_t lib = b.container(root, CODE_DCM_ImageLibrary);
	size_t grp = b.container(lib, CODE_DCM_ImageLibraryGroup);
	b.add(grp, DSRTypes::RT_contains, DSRTypes::VT_Image, DSRCodedEntryValue());
	ok(b.item().setImageReference(image_ref(src, r.frame), OFFalse), "library image reference");

	size_t meas = b.container(root, CODE_DCM_ImagingMeasurements);
	size_t mg = b.container(meas, CODE_DCM_MeasurementGroup);
	char track_uid[USV_UID_MAX];
	if (usv_uid_result_instance(track_uid, src.sop_instance.c_str(), r.frame, r.model_sha256,
	                            "tracking") != 0)
		throw ResultError(-EINVAL, "SR: cannot derive the tracking UID");
	b.text(mg, DSRTypes::RT_hasObsContext, CODE_DCM_TrackingIdentifier,
	       "usview view, frame " + std::to_string(r.frame + 1));
	b.uidref(mg, DSRTypes::RT_hasObsContext, CODE_DCM_TrackingUniqueIdentifier, track_uid);

	/* TID 4019 Algorithm Identification. */
	std::string version = r.model_version[0] ? r.model_version : "unknown";
	std::string params = std::string("model=") + r.model_name + ";sha256=" + r.model_sha256 +
	                     ";software=" + o.software_version;
	if (r.min_confidence > 0)
		params += ";min_confidence=" + prob_str(r.min_confidence);
	b.text(mg, DSRTypes::RT_hasConceptMod, CODE_DCM_AlgorithmName, r.algorithm_name);
	b.text(mg, DSRTypes::RT_hasConceptMod, CODE_DCM_AlgorithmVersion, version);
	b.text(mg, DSRTypes::RT_hasConceptMod, CODE_DCM_AlgorithmParameters, params);

	/* The predicted view as a qualitative evaluation; below
	 * min_confidence the finding is "uncertain" (the probabilities
	 * below still name the model's classes). */
	size_t view = b.code(mg, DSRTypes::RT_contains, CODE_DCM_ImageView,
	                     r.uncertain ? code_uncertain() : view_code(r.pred_label));
	usv_view_info vi;
	usv_view_describe(r.pred_label, &vi);
	if (r.uncertain)
		vi.organ_code = vi.orient_code = nullptr;
	if (vi.organ_code)
		b.code(view, DSRTypes::RT_hasConceptMod, CODE_SCT_FindingSite,
		       DSRCodedEntryValue(vi.organ_code, "SCT", vi.organ_meaning));
	if (vi.orient_code)
		b.code(view, DSRTypes::RT_hasConceptMod, CODE_DCM_ImageViewModifier,
		       DSRCodedEntryValue(vi.orient_code, "SCT", vi.orient_meaning));
	b.add(view, DSRTypes::RT_inferredFrom, DSRTypes::VT_Image, CODE_DCM_SourceOfMeasurement);
	ok(b.item().setImageReference(image_ref(src, r.frame), OFFalse), "image reference");

	/* Top-k probabilities, most probable first. */
	for (unsigned k = 0; k < o.topk; k++) {
		const usv_result_score &s = r.top[k];
		size_t num =
		    b.add(mg, DSRTypes::RT_contains, DSRTypes::VT_Num, CODE_DCM_Probability);
		ok(b.item().setNumericValue(DSRNumericMeasurementValue(
		       prob_str(s.prob).c_str(), DSRCodedEntryValue("1", "UCUM", "no units"))),
		   "probability");
		b.code(num, DSRTypes::RT_hasConceptMod, CODE_DCM_ImageView,
		       view_code(r.classes[s.class_index]));
	}

	/* The technologist's label, where it was read, and whether the
	 * model's most probable class agrees with it. */
	if (r.tech_label[0]) {
		size_t tl =
		    b.code(mg, DSRTypes::RT_contains, code_tech_label(), view_code(r.tech_label));
		if (r.tech_source[0])
			b.text(tl, DSRTypes::RT_hasProperties, code_tech_source(), r.tech_source);
		b.code(mg, DSRTypes::RT_contains, code_agree(), code_yes_no(r.agrees != 0));
	}

	ok(doc.completeDocument(), "completing");
	DcmDataset *ds = out.getDataset();
	ok(doc.write(*ds), "writing");
	sr_fix_old_date_time(*ds);
	/* Our derived UIDs instead of DSRDocument's random ones. */
	ok(ds->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str()), "Series UID");
	ok(ds->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str()), "SOP Instance UID");
	if (!o.institution.empty())
		ok(ds->putAndInsertString(DCM_InstitutionName, o.institution.c_str()),
		   "Institution Name");
}

} // namespace

extern "C" int usv_sr_write(const usv_result *r, const usv_result_opts *opts, const char *out_path,
                            usv_result_ids *ids, char *errbuf, size_t errlen)
{
	try {
		int rc = usv_result_check(r, errbuf, errlen);
		if (rc)
			return rc;
		if (!out_path || !*out_path)
			return usv_seterr(errbuf, errlen, -EINVAL, "SR: no output path");
		Opts o = resolve_opts(*r, opts, 9901);

		DcmFileFormat srcff;
		OFCondition c = srcff.loadFileUntilTag(r->source_path, EXS_Unknown, EGL_noChange,
		                                       4096, ERM_autoDetect, DCM_PixelData);
		if (c.bad())
			return usv_seterr(errbuf, errlen,
			                  c == EC_InvalidFilename || access(r->source_path, R_OK)
			                      ? -ENOENT
			                      : -USV_ERR_FORMAT,
			                  "%s: cannot read as DICOM: %s", r->source_path, c.text());
		DcmDataset &srcds = *srcff.getDataset();
		SourceInfo src = source_info(srcds, r->source_path);
		char sop[USV_UID_MAX], series[USV_UID_MAX];
		rc = result_uids(*r, src, USV_KIND_SR, sop, series, errbuf, errlen);
		if (rc)
			return rc;

		DcmFileFormat out;
		{
			std::lock_guard<std::mutex> lock(g_sr_mutex);
			build_sr(*r, o, srcds, src, sop, series, out);
		}
		std::string why;
		rc = save_file(out, out_path, EXS_LittleEndianExplicit, EET_ExplicitLength,
		               EGL_recalcGL, EWM_updateMeta, why);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "%s: cannot write: %s", out_path,
			                  why.c_str());
		fill_ids(ids, UID_ComprehensiveSRStorage, sop, series, src.study);
		return 0;
	} catch (const ResultError &e) {
		return usv_seterr(errbuf, errlen, e.code, "%s: %s", r->source_path, e.what());
	} catch (const std::bad_alloc &) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "SR: out of memory");
	} catch (const std::exception &e) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "%s: SR: %s", r->source_path,
		                  e.what());
	} catch (...) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "SR: unexpected failure");
	}
}
