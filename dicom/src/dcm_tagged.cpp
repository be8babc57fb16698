/*
 * NAME
 *	dcm_tagged.cpp - tagged copy of a source instance carrying the AI result
 *
 * DESCRIPTION
 *	Loads the whole source (all values in memory, so nothing is re-read
 *	from a file that may move), changes attributes only, and saves in the
 *	source's transfer syntax: DCMTK writes encapsulated pixel items back
 *	unchanged, so JPEG/RLE/JPEG-LS fragments stay byte-identical. Implicit
 *	VR sources are saved as Explicit VR Little Endian (same pixel bytes) so
 *	the private elements keep their VRs.
 *
 *	Changed: SOP Instance UID, Series Instance UID (derived, kind
 *	"tagged"), Image Type (DERIVED\SECONDARY\<source values 3..>), Series
 *	Description, Series Number, Image Comments, Derivation Description,
 *	Source Image Sequence, Contributing Equipment Sequence, and the
 *	private block described in usv/dcm_result.h. Study and patient
 *	attributes are untouched.
 */
#include "dcm_result_priv.h"
#include "dcm_save.h"
#include "usv/err.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

using namespace usv;

namespace
{

void ok(const OFCondition &c, const char *what)
{
	if (c.bad())
		throw ResultError(-USV_ERR_DICOM,
		                  std::string("tagged copy: ") + what + ": " + c.text());
}

std::string json_str(const char *s)
{
	std::string o = "\"";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			o += '\\';
			o += (char)ch;
		} else if (ch < 0x20) {
			char b[8];
			snprintf(b, sizeof b, "\\u%04x", ch);
			o += b;
		} else {
			o += (char)ch;
		}
	}
	return o + "\"";
}

std::string num(double v)
{
	char b[32];
	snprintf(b, sizeof b, "%.3f", std::isfinite(v) ? v : 0.0);
	return b;
}

/* The label shown: "uncertain" below min_confidence, else the prediction. */
const char *shown_label(const usv_result &r)
{
	return r.uncertain ? USV_LABEL_UNCERTAIN : r.pred_label;
}

std::string result_json(const usv_result &r, unsigned topk)
{
	std::string j = "{\"label\":" + json_str(shown_label(r)) +
	                ",\"predicted\":" + json_str(r.pred_label) +
	                ",\"uncertain\":" + (r.uncertain ? "true" : "false") +
	                ",\"min_confidence\":" + prob_str(r.min_confidence) +
	                ",\"index\":" + std::to_string(r.pred_index) +
	                ",\"prob\":" + prob_str(r.probs[r.pred_index]) +
	                ",\"frame\":" + std::to_string(r.frame + 1) + ",\"topk\":[";
	for (unsigned k = 0; k < topk; k++) {
		if (k)
			j += ",";
		j += "{\"label\":" + json_str(r.classes[r.top[k].class_index]) +
		     ",\"prob\":" + prob_str(r.top[k].prob) + "}";
	}
	j += "],\"classes\":[";
	for (uint32_t i = 0; i < r.nclasses; i++) {
		if (i)
			j += ",";
		j += json_str(r.classes[i]);
	}
	j += "],\"model\":{\"name\":" + json_str(r.model_name) +
	     ",\"version\":" + json_str(r.model_version) +
	     ",\"sha256\":" + json_str(r.model_sha256) +
	     "},\"algorithm\":" + json_str(r.algorithm_name) +
	     ",\"algorithm_version\":" + json_str(r.algorithm_version) +
	     ",\"timings_ms\":{\"decode\":" + num(r.t_decode_ms) +
	     ",\"infer\":" + num(r.t_infer_ms) + ",\"total\":" + num(r.t_total_ms) + "}";
	if (r.tech_label[0])
		j += ",\"technologist\":{\"label\":" + json_str(r.tech_label) +
		     ",\"source\":" + json_str(r.tech_source) +
		     ",\"agrees\":" + (r.agrees ? "true" : "false") + "}";
	else
		j += ",\"technologist\":null";
	return j + "}";
}

/* Keep a string within a VR's length (values here are ASCII). */
std::string cut(const std::string &s, size_t n)
{
	return s.size() <= n ? s : s.substr(0, n);
}

/* Block byte of our private creator in group g: the slot that already has
 * it, else the first free one in 0x10..0xFF. */
Uint16 private_slot(DcmDataset &ds, Uint16 g)
{
	int free_slot = -1;
	for (Uint16 e = 0x10; e <= 0xFF; e++) {
		OFString v;
		DcmTagKey key(g, e);
		if (ds.findAndGetOFString(key, v).good()) {
			if (v == USV_PRIVATE_CREATOR)
				return e;
		} else if (free_slot < 0 && !ds.tagExists(key)) {
			free_slot = e;
		}
	}
	if (free_slot < 0)
		throw ResultError(-USV_ERR_LIMIT,
		                  "tagged copy: no free private block in group 0091");
	return (Uint16)free_slot;
}

void put_private(DcmDataset &ds, Uint16 g, Uint16 slot, Uint16 el, DcmEVR vr, const std::string &v)
{
	DcmTag tag(g, (Uint16)((slot << 8) | el), vr);
	tag.setPrivateCreator(USV_PRIVATE_CREATOR);
	ok(ds.putAndInsertString(tag, v.c_str()), "private element");
}

void tag_dataset(const usv_result &r, const Opts &o, DcmDataset &ds, const SourceInfo &src,
                 const std::string &sop_uid, const std::string &series_uid)
{
	usv_view_info vi;
	usv_view_describe(r.pred_label, &vi);
	double p = r.probs[r.pred_index];
	char pbuf[16];
	snprintf(pbuf, sizeof pbuf, "%.2f", p);

	ok(ds.putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str()), "SOP Instance UID");
	ok(ds.putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str()), "Series UID");

	/* Image Type: DERIVED\SECONDARY + the source's values from the third on. */
	OFString it;
	std::string image_type = "DERIVED\\SECONDARY";
	if (ds.findAndGetOFStringArray(DCM_ImageType, it).good()) {
		std::string s = it.c_str();
		size_t a = s.find('\\');
		size_t b = a == std::string::npos ? a : s.find('\\', a + 1);
		if (b != std::string::npos)
			image_type += s.substr(b);
	}
	ok(ds.putAndInsertString(DCM_ImageType, image_type.c_str()), "Image Type");

	ok(ds.putAndInsertString(DCM_SeriesDescription,
	                         cut(std::string("AI VIEW: ") +
	                                 (r.uncertain ? USV_LABEL_UNCERTAIN : vi.display) + " (" +
	                                 pbuf + ")",
	                             64)
	                             .c_str()),
	   "Series Description");
	ok(ds.putAndInsertString(DCM_SeriesNumber, std::to_string(o.series_number).c_str()),
	   "Series Number");

	std::string comments;
	if (r.uncertain)
		comments = std::string("usview AI view: ") + USV_LABEL_UNCERTAIN +
		           " (most probable " + vi.display + " (" + r.pred_label +
		           ") p=" + prob_str(p) + ", below " + prob_str(r.min_confidence) + ")";
	else
		comments = std::string("usview AI view: ") + vi.display + " (" + r.pred_label +
		           ") p=" + prob_str(p);
	comments += "; top-" + std::to_string(o.topk) + ":";
	for (unsigned k = 0; k < o.topk; k++)
		comments += std::string(" ") + r.classes[r.top[k].class_index] + "=" +
		            prob_str(r.top[k].prob);
	if (r.tech_label[0])
		comments += std::string("; technologist: ") + r.tech_label + " (" +
		            (r.tech_source[0] ? r.tech_source : "unknown source") + "), " +
		            (r.agrees ? "agrees" : "disagrees");
	comments += "; frame " + std::to_string(r.frame + 1) + "; model " + r.model_name + " " +
	            r.model_version + "; not for diagnostic use";
	ok(ds.putAndInsertString(DCM_ImageComments, cut(comments, 10240).c_str()),
	   "Image Comments");

	std::string deriv = std::string("Copy of the source with the view classification of ") +
	                    r.algorithm_name + " (model " + r.model_name + " " + r.model_version +
	                    ", sha256 " + r.model_sha256 + "); pixel data unchanged";
	ok(ds.putAndInsertString(DCM_DerivationDescription, cut(deriv, 1024).c_str()),
	   "Derivation Description");

	/* Source Image Sequence: exactly one item, the source. */
	ds.findAndDeleteElement(DCM_SourceImageSequence);
	DcmItem *item = nullptr;
	ok(ds.findOrCreateSequenceItem(DCM_SourceImageSequence, item, -2), "Source Image Sequence");
	ok(item->putAndInsertString(DCM_ReferencedSOPClassUID, src.sop_class.c_str()),
	   "Referenced SOP Class");
	ok(item->putAndInsertString(DCM_ReferencedSOPInstanceUID, src.sop_instance.c_str()),
	   "Referenced SOP Instance");
	if (src.multiframe)
		ok(item->putAndInsertString(DCM_ReferencedFrameNumber,
		                            std::to_string(r.frame + 1).c_str()),
		   "Referenced Frame Number");

	/* Contributing Equipment: us, as processing equipment (appended). */
	DcmItem *eq = nullptr;
	ok(ds.findOrCreateSequenceItem(DCM_ContributingEquipmentSequence, eq, -2),
	   "Contributing Equipment Sequence");
	ok(eq->putAndInsertString(DCM_Manufacturer, o.manufacturer.c_str()), "Manufacturer");
	if (!o.institution.empty())
		ok(eq->putAndInsertString(DCM_InstitutionName, cut(o.institution, 64).c_str()),
		   "Institution Name");
	ok(eq->putAndInsertString(DCM_ManufacturerModelName, "usview"), "Model Name");
	ok(eq->putAndInsertString(DCM_SoftwareVersions, cut(o.software_version, 64).c_str()),
	   "Software Versions");
	ok(eq->putAndInsertString(DCM_DeviceUID, o.device_uid.c_str()), "Device UID");
	ok(eq->putAndInsertString(DCM_ContributionDescription,
	                          cut(std::string("AI view classification, model ") + r.model_name +
	                                  " " + r.model_version,
	                              1024)
	                              .c_str()),
	   "Contribution Description");
	DcmItem *purpose = nullptr;
	ok(eq->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0),
	   "Purpose of Reference");
	ok(purpose->putAndInsertString(DCM_CodeValue, "109102"), "code");
	ok(purpose->putAndInsertString(DCM_CodingSchemeDesignator, "DCM"), "code");
	ok(purpose->putAndInsertString(DCM_CodeMeaning, "Processing Equipment"), "code");

	/* Private block. */
	const Uint16 g = USV_PRIVATE_GROUP;
	Uint16 slot = private_slot(ds, g);
	ok(ds.putAndInsertString(DcmTag(g, slot, EVR_LO), USV_PRIVATE_CREATOR), "private creator");
	put_private(ds, g, slot, 0x01, EVR_LO, cut(shown_label(r), 64));
	put_private(ds, g, slot, 0x02, EVR_DS, prob_str(p));
	put_private(ds, g, slot, 0x03, EVR_LO, cut(r.model_name, 64));
	put_private(ds, g, slot, 0x04, EVR_LO, cut(r.model_version, 64));
	put_private(ds, g, slot, 0x05, EVR_LO, r.model_sha256);
	put_private(ds, g, slot, 0x06, EVR_US, std::to_string(r.frame + 1));
	std::string json = result_json(r, o.topk);
	if (json.size() > 10240)
		throw ResultError(-USV_ERR_LIMIT, "tagged copy: result JSON over 10240 bytes");
	put_private(ds, g, slot, 0x07, EVR_LT, json);
}

} // namespace

extern "C" int usv_tagged_write(const usv_result *r, const usv_result_opts *opts,
                                const char *out_path, usv_result_ids *ids, char *errbuf,
                                size_t errlen)
{
	try {
		int rc = usv_result_check(r, errbuf, errlen);
		if (rc)
			return rc;
		if (!out_path || !*out_path)
			return usv_seterr(errbuf, errlen, -EINVAL, "tagged copy: no output path");
		Opts o = resolve_opts(*r, opts, 9902);

		struct stat st;
		if (stat(r->source_path, &st) != 0)
			return usv_seterr(errbuf, errlen, -errno, "%s: %s", r->source_path,
			                  strerror(errno));
		if ((uint64_t)st.st_size > USV_TAGGED_MAX_BYTES)
			return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
			                  "%s: %lld bytes, over the tagged-copy limit of %llu",
			                  r->source_path, (long long)st.st_size,
			                  (unsigned long long)USV_TAGGED_MAX_BYTES);
		DcmFileFormat ff;
		OFCondition c = ff.loadFile(r->source_path);
		if (c.bad())
			return usv_seterr(errbuf, errlen,
			                  access(r->source_path, R_OK) ? -ENOENT : -USV_ERR_FORMAT,
			                  "%s: cannot read as DICOM: %s", r->source_path, c.text());
		/* Everything in memory before anything else (see dcmtk.md 4.4). */
		ok(ff.loadAllDataIntoMemory(), "loading the source");
		DcmDataset &ds = *ff.getDataset();
		SourceInfo src = source_info(ds, r->source_path);
		char sop[USV_UID_MAX], series[USV_UID_MAX];
		rc = result_uids(*r, src, USV_KIND_TAGGED, sop, series, errbuf, errlen);
		if (rc)
			return rc;
		tag_dataset(*r, o, ds, src, sop, series);

		E_TransferSyntax xs = ds.getOriginalXfer();
		if (xs == EXS_LittleEndianImplicit || xs == EXS_Unknown)
			xs = EXS_LittleEndianExplicit;
		std::string why;
		rc = save_file(ff, out_path, xs, EET_ExplicitLength, EGL_recalcGL, EWM_updateMeta,
		               why);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "%s: cannot write: %s", out_path,
			                  why.c_str());
		fill_ids(ids, src.sop_class.c_str(), sop, series, src.study);
		return 0;
	} catch (const ResultError &e) {
		return usv_seterr(errbuf, errlen, e.code, "%s: %s", r->source_path, e.what());
	} catch (const std::bad_alloc &) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "tagged copy: out of memory");
	} catch (const std::exception &e) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "%s: tagged copy: %s",
		                  r->source_path, e.what());
	} catch (...) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM,
		                  "tagged copy: unexpected failure");
	}
}
