/*
 * NAME
 *	dcm_dicomdir.cpp - instance files referenced by a DICOMDIR
 *
 * DESCRIPTION
 *	See usv/dcm_dicomdir.h. The DICOMDIR is read as a plain DICOM file
 *	(DcmFileFormat, values over 4096 bytes left on disk) rather than
 *	through DcmDicomDir, which creates an empty directory when the file
 *	is not one and rewrites it on destruction when modified. Records are
 *	taken in sequence order; the offsets that chain them (0004,1400 /
 *	0004,1420) are not followed, so a DICOMDIR with broken offsets still
 *	lists its files.
 */
#include "usv/dcm_dicomdir.h"
#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcdatset.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace
{

const size_t kMaxComponents = 16;
const size_t kMaxComponentLen = 64;

std::string trim(const OFString &s)
{
	size_t b = 0, e = s.size();
	while (b < e && s[b] == ' ')
		b++;
	while (e > b && (s[e - 1] == ' ' || s[e - 1] == 0))
		e--;
	return std::string(s.c_str() + b, e - b);
}

/* 0 and the component, or a reason. */
const char *check_component(const std::string &c)
{
	if (c.empty())
		return "empty path component";
	if (c.size() > kMaxComponentLen)
		return "path component longer than 64 bytes";
	if (c == "." || c == "..")
		return "path component '.' or '..'";
	for (unsigned char ch : c)
		if (ch == '/' || ch < 0x20 || ch == 0x7F)
			return "path component with '/' or a control character";
	return nullptr;
}

struct Strv {
	std::vector<char *> v;
	~Strv()
	{
		for (char *s : v)
			free(s);
	}
};

} // namespace

extern "C" void usv_dcm_strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

extern "C" int usv_dcm_is_dicomdir(const char *path)
{
	try {
		if (!path || !*path)
			return 0;
		struct stat sb;
		if (stat(path, &sb) || !S_ISREG(sb.st_mode))
			return 0;
		DcmFileFormat ff;
		if (ff.loadFile(path, EXS_Unknown, EGL_noChange, 4096, ERM_metaOnly).bad())
			return 0;
		OFString cls;
		if (ff.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, cls).bad())
			return 0;
		return cls == USV_DICOMDIR_SOP_CLASS ? 1 : 0;
	} catch (...) {
		return 0;
	}
}

extern "C" int usv_dcm_dicomdir_list(const char *path, char ***files, size_t *n, char *err,
                                     size_t errlen)
{
	try {
		if (!path || !*path || !files || !n)
			return usv_seterr(err, errlen, -EINVAL, "DICOMDIR: bad arguments");
		struct stat sb;
		if (stat(path, &sb))
			return usv_seterr(err, errlen, -ENOENT, "%s: %s", path, strerror(errno));
		if (!S_ISREG(sb.st_mode))
			return usv_seterr(err, errlen, -USV_ERR_FORMAT, "%s: not a regular file",
			                  path);
		DcmFileFormat ff;
		OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, 4096);
		if (c.bad())
			return usv_seterr(err, errlen, -USV_ERR_FORMAT,
			                  "%s: not a DICOMDIR: not readable as DICOM: %s", path,
			                  c.text());
		OFString cls;
		if (ff.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, cls).bad() ||
		    cls.empty())
			return usv_seterr(err, errlen, -USV_ERR_FORMAT,
			                  "%s: not a DICOMDIR: no Media Storage SOP Class in the "
			                  "meta header",
			                  path);
		if (cls != USV_DICOMDIR_SOP_CLASS)
			return usv_seterr(err, errlen, -USV_ERR_FORMAT,
			                  "%s: not a DICOMDIR: Media Storage SOP Class %.64s", path,
			                  cls.c_str());
		DcmSequenceOfItems *seq = nullptr;
		if (ff.getDataset()->findAndGetSequence(DCM_DirectoryRecordSequence, seq).bad() ||
		    !seq)
			return usv_seterr(err, errlen, -USV_ERR_FORMAT,
			                  "%s: not a DICOMDIR: no Directory Record Sequence", path);
		unsigned long nrec = seq->card();
		if (nrec > USV_DICOMDIR_MAX_RECORDS)
			return usv_seterr(err, errlen, -USV_ERR_LIMIT,
			                  "%s: %lu directory records, more than %d", path, nrec,
			                  USV_DICOMDIR_MAX_RECORDS);

		std::string prefix(path);
		size_t slash = prefix.rfind('/');
		prefix = slash == std::string::npos ? std::string() : prefix.substr(0, slash + 1);

		Strv out;
		for (unsigned long i = 0; i < nrec; i++) {
			DcmItem *rec = seq->getItem(i);
			if (!rec)
				continue;
			OFString type;
			rec->findAndGetOFString(DCM_DirectoryRecordType, type);
			std::string t = trim(type);
			if (t == "PATIENT" || t == "STUDY" || t == "SERIES")
				continue;
			Uint16 inuse = 0xFFFF;
			if (rec->findAndGetUint16(DCM_RecordInUseFlag, inuse).good() && inuse == 0)
				continue;
			DcmElement *el = nullptr;
			if (rec->findAndGetElement(DCM_ReferencedFileID, el).bad() || !el ||
			    el->getLength() == 0)
				continue;
			if (el->getLength() > kMaxComponents * (kMaxComponentLen + 1))
				return usv_seterr(err, errlen, -USV_ERR_LIMIT,
				                  "%s: record %lu: Referenced File ID of %lu bytes",
				                  path, i + 1, (unsigned long)el->getLength());
			unsigned long vm = el->getVM();
			if (vm > kMaxComponents)
				return usv_seterr(
				    err, errlen, -USV_ERR_LIMIT,
				    "%s: record %lu: %lu path components, more than %zu", path,
				    i + 1, vm, kMaxComponents);
			std::string p = prefix;
			for (unsigned long k = 0; k < vm; k++) {
				OFString v;
				if (el->getOFString(v, k).bad())
					return usv_seterr(
					    err, errlen, -USV_ERR_FORMAT,
					    "%s: record %lu: unreadable Referenced File ID", path,
					    i + 1);
				std::string comp = trim(v);
				const char *why = check_component(comp);
				if (why)
					return usv_seterr(
					    err, errlen, -USV_ERR_FORMAT,
					    "%s: record %lu: invalid Referenced File ID: %s", path,
					    i + 1, why);
				if (k)
					p += '/';
				p += comp;
			}
			if (p.size() >= PATH_MAX)
				return usv_seterr(err, errlen, -USV_ERR_LIMIT,
				                  "%s: record %lu: resolved path of %zu bytes",
				                  path, i + 1, p.size());
			char *s = strdup(p.c_str());
			if (!s)
				return usv_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
			out.v.push_back(s);
		}
		char **arr = nullptr;
		if (!out.v.empty()) {
			arr = (char **)malloc(out.v.size() * sizeof *arr);
			if (!arr)
				return usv_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
			memcpy(arr, out.v.data(), out.v.size() * sizeof *arr);
		}
		*n = out.v.size();
		*files = arr;
		out.v.clear();
		return 0;
	} catch (const std::bad_alloc &) {
		return usv_seterr(err, errlen, -ENOMEM, "%s: out of memory", path ? path : "");
	} catch (...) {
		return usv_seterr(err, errlen, -USV_ERR_DICOM, "%s: DICOMDIR reading failed",
		                  path ? path : "");
	}
}
