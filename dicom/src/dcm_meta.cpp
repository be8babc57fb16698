/*
 * NAME
 *	dcm_meta.cpp - SOP Class and Instance UIDs from the file meta header
 *
 * DESCRIPTION
 *	See dcm_meta.h. The first USV_DCM_META_MAX bytes of the file go into
 *	a memory buffer (the cap: a corrupt group length or a huge element
 *	cannot make us read more), which DcmMetaInfo parses through a
 *	DcmInputBufferStream marked as ending there. A meta header cut by the
 *	cap or by the end of the file yields whatever complete elements came
 *	before the cut; the UIDs are then checked to be UIDs (digits and
 *	dots, at most 64 characters) before they are used.
 */
#include "usv/dcm_meta.h"

#include "usv/err.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcmetinf.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace
{

/* Trimmed value of a meta element, "" when absent or not a UID. */
std::string meta_uid(DcmMetaInfo &meta, const DcmTagKey &key)
{
	OFString v;
	if (meta.findAndGetOFString(key, v).bad())
		return "";
	std::string s(v.c_str());
	while (!s.empty() && (s.back() == ' ' || s.back() == '\0'))
		s.pop_back();
	if (s.empty() || s.size() > 64)
		return "";
	for (char ch : s)
		if (!((ch >= '0' && ch <= '9') || ch == '.'))
			return "";
	return s;
}

} // namespace

extern "C" int usv_dcm_read_meta_uids(const char *path, char *sop_class, size_t class_len,
                                      char *sop_instance, size_t inst_len, char *errbuf,
                                      size_t errlen)
{
	try {
		if (!path || !sop_class || !class_len || !sop_instance || !inst_len)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "meta header: invalid arguments");
		FILE *f = fopen(path, "rbe");
		if (!f) {
			int e = errno;
			return usv_seterr(errbuf, errlen, -e, "%s: %s", path, strerror(e));
		}
		std::vector<unsigned char> buf(USV_DCM_META_MAX);
		size_t n = fread(buf.data(), 1, buf.size(), f);
		int rerr = ferror(f) ? EIO : 0;
		fclose(f);
		if (rerr)
			return usv_seterr(errbuf, errlen, -rerr, "%s: read error", path);
		if (n < 132 || memcmp(buf.data() + 128, "DICM", 4) != 0)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no DICOM preamble",
			                  path);

		DcmInputBufferStream in;
		in.setBuffer(buf.data(), (offile_off_t)n);
		in.setEos();
		DcmMetaInfo meta;
		meta.transferInit();
		/* values over 1 KiB are skipped (a buffer stream cannot read them
		 * later, which is what we want: UIDs are short) */
		(void)meta.read(in, EXS_Unknown, EGL_noChange, 1024);
		meta.transferEnd();

		std::string cls = meta_uid(meta, DCM_MediaStorageSOPClassUID);
		std::string inst = meta_uid(meta, DCM_MediaStorageSOPInstanceUID);
		if (inst.empty() || inst.size() >= inst_len)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: no SOP Instance UID in the meta header", path);
		if (cls.size() >= class_len)
			cls.clear();
		memcpy(sop_class, cls.c_str(), cls.size() + 1);
		memcpy(sop_instance, inst.c_str(), inst.size() + 1);
		return 0;
	} catch (...) {
		return usv_seterr(errbuf, errlen, -ENOMEM, "meta header: out of memory");
	}
}
