/*
 * NAME
 *	dcm_result_priv.h - helpers shared by the SR writer and the tagged copy
 *
 * DESCRIPTION
 *	Internal to dicom/ (C++ only). usv::SourceInfo gathers what both result
 *	writers need from the source instance (they save with usv::save_file,
 *	dcm_save.h: write only, no fsync); usv::ResultError carries a
 *	negative usview code and one line of text out of the writers to their
 *	extern "C" entry points.
 */
#ifndef USV_DCM_RESULT_PRIV_H
#define USV_DCM_RESULT_PRIV_H

#include "usv/dcm_result.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>

#include <mutex>
#include <stdexcept>
#include <string>

namespace usv
{

struct ResultError : std::runtime_error {
	int code;
	ResultError(int c, const std::string &m) : std::runtime_error(m), code(c)
	{
	}
};

struct SourceInfo {
	std::string sop_class, sop_instance, series, study;
	std::string charset;     /* Specific Character Set, normalised; "" = none */
	long nframes = 0;        /* Number of Frames; 0 = attribute absent */
	bool multiframe = false; /* frames are referenced by number */
};

/* Read the identifying attributes of a loaded source dataset; throws
 * ResultError(-USV_ERR_FORMAT) when a UID is missing or invalid. */
SourceInfo source_info(DcmDataset &ds, const char *path);

/* The result's frame must exist in the source; then the derived SOP Instance
 * and Series UIDs of a result of `kind` (USV_KIND_SR, USV_KIND_TAGGED).
 * 0 or -EINVAL (frame out of range, message in errbuf). */
int result_uids(const usv_result &r, const SourceInfo &src, const char *kind, char sop[USV_UID_MAX],
                char series[USV_UID_MAX], char *errbuf, size_t errlen);

/* Copies the identifiers of a written result into *ids (NULL: nothing). */
void fill_ids(usv_result_ids *ids, const char *sop_class, const char *sop, const char *series,
              const std::string &study);

/* Fill in defaults of the options (never NULL afterwards). */
struct Opts {
	std::string manufacturer, software_version, device_uid, device_name, institution;
	long series_number = 0;
	unsigned topk = 1;
};
Opts resolve_opts(const usv_result &r, const usv_result_opts *o, long default_series);

/* Probability as a DS string ("%.6f"). */
std::string prob_str(double p);

/* dcmsr keeps a static, unsynchronised node counter: every SR tree of this
 * library is built under this one lock (dcm_sr.cpp). */
std::mutex &sr_mutex();

} // namespace usv

#endif
