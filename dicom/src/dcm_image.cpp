/*
 * NAME
 *	dcm_image.cpp - DICOM header reading and one-frame 8-bit decoding
 *
 * DESCRIPTION
 *	See usv/dcm_image.h for the contract and the value mapping. The file
 *	is loaded with values over 4096 bytes left on disk; each decode builds
 *	a DicomImage with partial access for exactly one frame, so memory stays
 *	near one frame. JPEG 2000 frames are cut out of the encapsulated pixel
 *	sequence here and decoded by dcm_j2k.c (OpenJPEG).
 *
 *	Where the value mapping matters (pydicom parity, tested in
 *	tests/integration/ingest): DicomImage without a VOI window maps the
 *	stored range to 8 bits; for 8-bit data that is the identity. No
 *	setMinMaxWindow(), no file window: a per-image stretch would change
 *	the pixels the network was trained on.
 *
 *	Files are parsed leniently, like pydicom (some vendors write wrong
 *	item delimiters, e.g. a sequence item closed by a sequence
 *	delimiter): DCMTK's dcmIgnoreParsingErrors, a process-wide flag set
 *	once by usv_dcm_global_init() (usv/dicom.h), which must have run.
 */
#include "usv/dcm_image.h"
#include "usv/err.h"

#include "dcm_j2k.h"

#include <sys/stat.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmimage/diregist.h>
#include <dcmtk/dcmimgle/dcmimage.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

struct usv_dcm {
	DcmFileFormat ff;
	usv_dcm_info info;
	std::string path;
	E_TransferSyntax xfer = EXS_Unknown;
};

namespace
{

void copy_str(char *dst, size_t len, const OFString &s)
{
	size_t n = s.size() < len - 1 ? s.size() : len - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		dst[i] = (c < 0x20 && c != '\t') ? ' ' : (char)c;
	}
	dst[n] = 0;
}

void get_str(DcmItem *it, const DcmTagKey &tag, char *dst, size_t len, bool all = false)
{
	OFString s;
	dst[0] = 0;
	if (all ? it->findAndGetOFStringArray(tag, s).good()
	        : it->findAndGetOFString(tag, s).good())
		copy_str(dst, len, s);
}

/* Free text for the label reader (usv/dcm_image.h, LABEL TEXT): at most
 * len - 1 bytes of the value are read (getPartialValue: a long value that
 * was left on disk is not loaded whole), control characters become
 * spaces, leading and trailing spaces go; with UTF-8 a cut never splits a
 * character. */
void get_text(DcmItem *it, const DcmTagKey &tag, char *dst, size_t len, bool utf8)
{
	dst[0] = 0;
	DcmElement *el = nullptr;
	if (!it || it->findAndGetElement(tag, el).bad() || !el)
		return;
	Uint32 n = el->getLengthField();
	if (n == 0 || n == DCM_UndefinedLength)
		return;
	bool cut = n > len - 1;
	Uint32 take = cut ? (Uint32)(len - 1) : n;
	std::vector<unsigned char> b(take);
	if (el->getPartialValue(b.data(), 0, take).bad())
		return;
	size_t k = take;
	if (cut && utf8 && k > 0) {
		/* drop an incomplete last character */
		size_t i = k;
		while (i > 0 && (b[i - 1] & 0xC0) == 0x80 && k - i < 3)
			i--;
		if (i > 0) {
			unsigned char lead = b[i - 1];
			size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
			if (lead >= 0x80 && (i - 1) + need > k)
				k = i - 1;
		}
	}
	size_t s = 0, e = k;
	auto ctl = [](unsigned char c) { return c < 0x20 || c == 0x7F; };
	for (size_t i = 0; i < k; i++)
		if (ctl(b[i]))
			b[i] = ' ';
	while (s < e && b[s] == ' ')
		s++;
	while (e > s && b[e - 1] == ' ')
		e--;
	memcpy(dst, b.data() + s, e - s);
	dst[e - s] = 0;
}

bool is_j2k(E_TransferSyntax xs)
{
	return xs == EXS_JPEG2000LosslessOnly || xs == EXS_JPEG2000;
}

const char *const known_photometric[] = {"MONOCHROME1",  "MONOCHROME2",   "RGB",     "YBR_FULL",
                                         "YBR_FULL_422", "PALETTE COLOR", "YBR_RCT", "YBR_ICT"};

int read_info(usv_dcm *h, char *errbuf, size_t errlen)
{
	usv_dcm_info &in = h->info;
	DcmDataset *ds = h->ff.getDataset();
	const char *p = h->path.c_str();
	memset(&in, 0, sizeof in);
	h->xfer = ds->getOriginalXfer();
	OFString ts;
	if (h->ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, ts).good() &&
	    !ts.empty())
		copy_str(in.transfer_syntax, sizeof in.transfer_syntax, ts);
	else
		copy_str(in.transfer_syntax, sizeof in.transfer_syntax,
		         DcmXfer(h->xfer).getXferID());

	if (strcmp(in.transfer_syntax, DcmXfer(h->xfer).getXferID()))
		h->xfer = EXS_Unknown; /* the meta header names a syntax DCMTK does not know */
	get_str(ds, DCM_SOPClassUID, in.sop_class_uid, sizeof in.sop_class_uid);
	get_str(ds, DCM_SOPInstanceUID, in.sop_instance_uid, sizeof in.sop_instance_uid);
	get_str(ds, DCM_StudyInstanceUID, in.study_uid, sizeof in.study_uid);
	get_str(ds, DCM_SeriesInstanceUID, in.series_uid, sizeof in.series_uid);
	get_str(ds, DCM_Modality, in.modality, sizeof in.modality);
	get_str(ds, DCM_Manufacturer, in.manufacturer, sizeof in.manufacturer);
	get_str(ds, DCM_ManufacturerModelName, in.model, sizeof in.model);
	get_str(ds, DCM_PhotometricInterpretation, in.photometric, sizeof in.photometric);
	get_str(ds, DCM_SpecificCharacterSet, in.charset, sizeof in.charset, true);

	const bool utf8 = strstr(in.charset, "ISO_IR 192") != nullptr;
	DcmItem *view = nullptr;
	if (ds->findAndGetSequenceItem(DCM_ViewCodeSequence, view, 0).good() && view)
		get_text(view, DCM_CodeMeaning, in.view_code_meaning, sizeof in.view_code_meaning,
		         utf8);
	get_text(ds, DCM_ImageComments, in.image_comments, sizeof in.image_comments, utf8);
	get_text(ds, DCM_ProtocolName, in.protocol_name, sizeof in.protocol_name, utf8);
	get_text(ds, DCM_SeriesDescription, in.series_description, sizeof in.series_description,
	         utf8);
	get_text(ds, DCM_AcquisitionProtocolDescription, in.acquisition_protocol_description,
	         sizeof in.acquisition_protocol_description, utf8);
	get_text(ds, DCM_StudyDescription, in.study_description, sizeof in.study_description, utf8);
	get_text(ds, DCM_RequestedProcedureDescription, in.requested_procedure_description,
	         sizeof in.requested_procedure_description, utf8);
	get_text(ds, DCM_StationName, in.station_name, sizeof in.station_name, utf8);
	get_str(ds, DCM_StudyDate, in.study_date, sizeof in.study_date);
	get_str(ds, DCM_AccessionNumber, in.accession_number, sizeof in.accession_number);

	Uint16 v = 0;
	if (ds->findAndGetUint16(DCM_Rows, v).bad())
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no Rows", p);
	in.rows = v;
	if (ds->findAndGetUint16(DCM_Columns, v).bad())
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no Columns", p);
	in.cols = v;
	if (in.rows < 1 || in.cols < 1 || in.rows > USV_DCM_MAX_DIM || in.cols > USV_DCM_MAX_DIM)
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
		                  "%s: image size %dx%d outside 1..%d", p, in.cols, in.rows,
		                  USV_DCM_MAX_DIM);
	in.samples_per_pixel = ds->findAndGetUint16(DCM_SamplesPerPixel, v).good() ? v : 1;
	in.bits_allocated = ds->findAndGetUint16(DCM_BitsAllocated, v).good() ? v : 0;
	in.bits_stored = ds->findAndGetUint16(DCM_BitsStored, v).good() ? v : in.bits_allocated;
	in.planar_configuration = ds->findAndGetUint16(DCM_PlanarConfiguration, v).good() ? v : 0;
	in.pixel_representation = ds->findAndGetUint16(DCM_PixelRepresentation, v).good() ? v : 0;
	if (in.samples_per_pixel != 1 && in.samples_per_pixel != 3)
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: %d samples per pixel", p,
		                  in.samples_per_pixel);
	if (in.bits_allocated != 8 && in.bits_allocated != 16)
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: %d bits allocated", p,
		                  in.bits_allocated);
	if (in.bits_stored < 1 || in.bits_stored > in.bits_allocated)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: %d bits stored of %d", p,
		                  in.bits_stored, in.bits_allocated);
	Sint32 nf = 1;
	if (ds->tagExistsWithValue(DCM_NumberOfFrames) &&
	    ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad())
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: bad NumberOfFrames", p);
	if (nf < 1 || nf > USV_DCM_MAX_FRAMES)
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: %ld frames outside 1..%d", p,
		                  (long)nf, USV_DCM_MAX_FRAMES);
	in.frames = (int)nf;

	DcmElement *px = nullptr;
	in.has_pixel_data = ds->findAndGetElement(DCM_PixelData, px).good() && px;
	if (in.has_pixel_data && !DcmXfer(h->xfer).isEncapsulated()) {
		/* native: the value must hold every frame */
		/* YBR_FULL_422 stores 2 samples per pixel (Cb/Cr shared by pairs) */
		unsigned long long spp = !strcmp(in.photometric, "YBR_FULL_422")
		                             ? 2
		                             : (unsigned long long)in.samples_per_pixel;
		unsigned long long need =
		    (unsigned long long)in.rows * (unsigned long long)in.cols * spp *
		    (unsigned long long)(in.bits_allocated / 8) * (unsigned long long)in.frames;
		if (px->getLengthField() != DCM_UndefinedLength && px->getLengthField() + 1 < need)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: pixel data holds %lu bytes, %llu needed", p,
			                  (unsigned long)px->getLengthField(), need);
	}

	for (unsigned long i = 0; in.nregions < USV_DCM_MAX_REGIONS; i++) {
		DcmItem *r = nullptr;
		if (ds->findAndGetSequenceItem(DCM_SequenceOfUltrasoundRegions, r, (signed long)i)
		        .bad() ||
		    !r)
			break;
		long x0, y0, x1, y1, sf = 0, dt = 0, fl = 0;
		if (r->findAndGetLongInt(DCM_RegionLocationMinX0, x0).bad() ||
		    r->findAndGetLongInt(DCM_RegionLocationMinY0, y0).bad() ||
		    r->findAndGetLongInt(DCM_RegionLocationMaxX1, x1).bad() ||
		    r->findAndGetLongInt(DCM_RegionLocationMaxY1, y1).bad())
			continue;
		r->findAndGetLongInt(DCM_RegionSpatialFormat, sf);
		r->findAndGetLongInt(DCM_RegionDataType, dt);
		r->findAndGetLongInt(DCM_RegionFlags, fl);
		usv_us_region &g = in.regions[in.nregions++];
		auto clampi = [](long x) {
			return (int)(x < -1000000 ? -1000000 : x > 1000000 ? 1000000 : x);
		};
		g.x0 = clampi(x0);
		g.y0 = clampi(y0);
		g.x1 = clampi(x1);
		g.y1 = clampi(y1);
		g.spatial_format = clampi(sf);
		g.data_type = clampi(dt);
		g.flags = (unsigned)fl;
	}
	return 0;
}

/* The Pixel Data element as DcmPixelData, or nullptr. DCMTK makes one
 * only for a value it can read as pixel data: a (7FE0,0010) with another
 * VR (UN, SQ, a wrong explicit VR) is another class, and a static cast to
 * DcmPixelData would be undefined behaviour (found by fuzzing). */
DcmPixelData *pixel_data(DcmDataset *ds)
{
	DcmElement *el = nullptr;
	if (!ds || ds->findAndGetElement(DCM_PixelData, el).bad() || !el ||
	    el->ident() != EVR_PixelData)
		return nullptr;
	return OFstatic_cast(DcmPixelData *, el);
}

/* The bytes of frame f of an encapsulated pixel sequence. */
int frame_fragments(usv_dcm *h, int f, std::vector<uint8_t> &out, char *errbuf, size_t errlen)
{
	const char *p = h->path.c_str();
	DcmPixelData *pd = pixel_data(h->ff.getDataset());
	if (!pd)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no readable pixel data", p);
	DcmPixelSequence *seq = nullptr;
	if (pd->getEncapsulatedRepresentation(h->xfer, NULL, seq).bad() || !seq)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no encapsulated pixel data",
		                  p);
	unsigned long n = seq->card();
	if (n < 2)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no pixel data fragments",
		                  p);
	/* A fragment cannot hold more bytes than the file: DCMTK would
	 * allocate (and zero) whatever length an item header claims before it
	 * finds the file too short (a 1.5 KB instance claiming gigabytes). */
	struct stat fst;
	uint64_t fsize = stat(p, &fst) == 0 ? (uint64_t)fst.st_size : UINT64_MAX;
	Uint32 claimed = 0;
	auto item_bytes = [&](unsigned long i, Uint8 *&ptr, Uint32 &len) -> bool {
		DcmPixelItem *it = nullptr;
		if (seq->getItem(it, i).bad() || !it)
			return false;
		len = it->getLength();
		ptr = nullptr;
		if (len == 0)
			return true;
		if ((uint64_t)len > fsize) {
			claimed = len;
			return false;
		}
		return it->getUint8Array(ptr).good() && ptr;
	};
	auto too_long = [&](unsigned long i) {
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                  "%s: fragment %lu claims %lu bytes, more than the file's %llu", p,
		                  i, (unsigned long)claimed, (unsigned long long)fsize);
	};
	unsigned long first = 1, last = n - 1; /* inclusive fragment range */
	int frames = h->info.frames;
	if (frames > 1) {
		if (n - 1 == (unsigned long)frames) {
			first = last = (unsigned long)f + 1;
		} else {
			Uint8 *bot = nullptr;
			Uint32 botlen = 0;
			if (!item_bytes(0, bot, botlen) && claimed)
				return too_long(0);
			if (!bot || botlen < 4u * (Uint32)frames)
				return usv_seterr(
				    errbuf, errlen, -USV_ERR_UNSUPPORTED,
				    "%s: %lu fragments for %d frames and no offset table", p, n - 1,
				    frames);
			auto off = [&](int k) {
				return (unsigned long)bot[4 * k] |
				       ((unsigned long)bot[4 * k + 1] << 8) |
				       ((unsigned long)bot[4 * k + 2] << 16) |
				       ((unsigned long)bot[4 * k + 3] << 24);
			};
			unsigned long lo = off(f), hi = f + 1 < frames ? off(f + 1) : ~0UL, pos = 0;
			first = 0;
			last = 0;
			for (unsigned long i = 1; i < n; i++) {
				DcmPixelItem *it = nullptr;
				if (seq->getItem(it, i).bad() || !it)
					break;
				if (pos >= lo && pos < hi) {
					if (!first)
						first = i;
					last = i;
				}
				pos += 8 + it->getLength();
			}
			if (!first)
				return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
				                  "%s: frame %d not found via the offset table", p,
				                  f);
		}
	}
	out.clear();
	for (unsigned long i = first; i <= last; i++) {
		Uint8 *ptr;
		Uint32 len;
		if (!item_bytes(i, ptr, len))
			return claimed ? too_long(i)
			               : usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                            "%s: unreadable fragment %lu", p, i);
		if (out.size() + len > (size_t)1 << 30)
			return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT, "%s: frame over 1 GiB",
			                  p);
		out.insert(out.end(), ptr, ptr + len);
	}
	return 0;
}

/* PS3.5 G.5: the 64-byte RLE header of frame f, checked before DCMTK's RLE
 * decoder sees it (that decoder reads from any segment offset the header
 * names, inside the fragment or not): 1..15 segments whose offsets are at
 * least 64, ascending and inside the frame's bytes. */
int rle_header_check(usv_dcm *h, int f, char *errbuf, size_t errlen)
{
	std::vector<uint8_t> b;
	int rc = frame_fragments(h, f, b, errbuf, errlen);
	if (rc)
		return rc;
	const char *p = h->path.c_str();
	auto u32 = [&](size_t i) {
		return (uint32_t)b[4 * i] | ((uint32_t)b[4 * i + 1] << 8) |
		       ((uint32_t)b[4 * i + 2] << 16) | ((uint32_t)b[4 * i + 3] << 24);
	};
	if (b.size() < 64)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                  "%s: frame %d: RLE header truncated", p, f);
	uint32_t nseg = u32(0), prev = 64;
	if (nseg < 1 || nseg > 15)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: frame %d: %u RLE segments",
		                  p, f, nseg);
	for (uint32_t k = 1; k <= nseg; k++) {
		uint32_t o = u32(k);
		if (o < prev || o >= b.size())
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: frame %d: RLE segment %u at offset %u outside the "
			                  "frame's %zu bytes",
			                  p, f, k, o, b.size());
		prev = o;
	}
	return 0;
}

bool is_jpeg_family(E_TransferSyntax x)
{
	return x == EXS_JPEGProcess1 || x == EXS_JPEGProcess2_4 || x == EXS_JPEGProcess14 ||
	       x == EXS_JPEGProcess14SV1 || x == EXS_JPEGLSLossless || x == EXS_JPEGLSLossy;
}

/* The frame header (SOFn, or SOF55 of JPEG-LS) of a JPEG or JPEG-LS frame
 * must describe the image of the data set: the decoders size their
 * buffers from the codestream, so a 12 x 16 data set whose stream claims
 * 65535 x 65535 would make them allocate gigabytes. ITU-T T.81 B.2.2:
 * after FFC0..FFCF (not C4 DHT, C8 JPG, CC DAC) or FFF7: Lf (2), P (1),
 * Y (2), X (2), Nf (1). Returns 0 (matches), 1 (no frame header in these
 * bytes) or -USV_ERR_FORMAT (a different image, or no SOI). */
int jpeg_sof_check(const uint8_t *b, size_t n, const usv_dcm_info &in, const char *p, int f,
                   char *errbuf, size_t errlen)
{
	if (n < 4 || b[0] != 0xFF || b[1] != 0xD8)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                  "%s: frame %d: JPEG stream does not start with SOI", p, f);
	size_t i = 2;
	while (i + 4 <= n && b[i] == 0xFF) {
		while (i < n && b[i] == 0xFF)
			i++;
		if (i >= n)
			break;
		uint8_t m = b[i++];
		if (m == 0x01 || (m >= 0xD0 && m <= 0xD7))
			continue; /* no length */
		if (i + 2 > n)
			break;
		size_t len = ((size_t)b[i] << 8) | b[i + 1];
		bool sof =
		    (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xF7;
		if (sof) {
			if (len < 8 || i + 8 > n)
				break;
			int y = (b[i + 3] << 8) | b[i + 4], x = (b[i + 5] << 8) | b[i + 6];
			int nf = b[i + 7];
			if (x != in.cols || y != in.rows || nf != in.samples_per_pixel)
				return usv_seterr(
				    errbuf, errlen, -USV_ERR_FORMAT,
				    "%s: frame %d: JPEG frame header says %dx%d with %d "
				    "component(s), the data set %dx%d with %d",
				    p, f, x, y, nf, in.cols, in.rows, in.samples_per_pixel);
			return 0;
		}
		if (m == 0xDA || m == 0xD9)
			break; /* scan or end before any frame header */
		i += len;
	}
	return 1;
}

/* jpeg_sof_check over frame f; when the frames cannot be told apart (no
 * offset table and several fragments per frame), over every fragment
 * that starts a JPEG stream. */
int jpeg_header_check(usv_dcm *h, int f, char *errbuf, size_t errlen)
{
	std::vector<uint8_t> b;
	const char *p = h->path.c_str();
	int rc = frame_fragments(h, f, b, errbuf, errlen);
	if (rc == 0) {
		rc = jpeg_sof_check(b.data(), b.size(), h->info, p, f, errbuf, errlen);
		return rc == 1 ? usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                            "%s: frame %d: no JPEG frame header", p, f)
		               : rc;
	}
	if (rc != -USV_ERR_UNSUPPORTED)
		return rc;
	DcmPixelSequence *seq = nullptr;
	DcmPixelData *pd = pixel_data(h->ff.getDataset());
	if (!pd || pd->getEncapsulatedRepresentation(h->xfer, NULL, seq).bad() || !seq)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no encapsulated pixel data",
		                  p);
	for (unsigned long i = 1; i < seq->card(); i++) {
		DcmPixelItem *it = nullptr;
		Uint8 *ptr = nullptr;
		if (seq->getItem(it, i).bad() || !it || it->getLength() < 4 ||
		    it->getUint8Array(ptr).bad() || !ptr || ptr[0] != 0xFF || ptr[1] != 0xD8)
			continue;
		rc = jpeg_sof_check(ptr, it->getLength(), h->info, p, f, errbuf, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* YBR_FULL to RGB, PS3.3 C.7.6.3.1.2, computed the way pydicom 2.3 does
 * (float32 products, round half up, clip) so that lossless data decode to
 * exactly the same bytes:
 *   R = Y + 1.402 Cr', G = Y - (0.114 * 1.772 / 0.587) Cb' - (0.299 *
 *   1.402 / 0.587) Cr', B = Y + 1.772 Cb'  with Cb' = Cb - 128, Cr' = Cr - 128. */
void ybr_full_to_rgb(usv_image *img)
{
	const float kgb = (float)(-0.114 * 1.772 / 0.587), kgr = (float)(-0.299 * 1.402 / 0.587);
	const float kr = 1.402f, kb = 1.772f;
	size_t n = (size_t)img->w * (size_t)img->h;
	uint8_t *p = img->px;
	for (size_t i = 0; i < n; i++, p += 3) {
		float y = p[0], cb = (float)p[1] - 128.0f, cr = (float)p[2] - 128.0f;
		float v[3];
		v[0] = y + cb * 0.0f + cr * kr;
		v[1] = y + cb * kgb + cr * kgr;
		v[2] = y + cb * kb + cr * 0.0f;
		for (int k = 0; k < 3; k++) {
			float r = std::floor(v[k] + 0.5f);
			p[k] = (uint8_t)(r < 0.0f ? 0.0f : r > 255.0f ? 255.0f : r);
		}
	}
}

/* Expands a segmented palette LUT (PS3.3 C.7.9.2): discrete, linear and
 * indirect segments of 16-bit words into n entries. */
int expand_segmented(const Uint16 *seg, unsigned long nseg, unsigned long n,
                     std::vector<Uint16> &lut)
{
	lut.clear();
	lut.reserve(n);
	unsigned long i = 0;
	int depth = 0;
	std::vector<std::pair<unsigned long, unsigned long>> stack; /* (resume, remaining) */
	unsigned long remaining = ~0UL;
	while (lut.size() < n) {
		if (i >= nseg || remaining == 0) {
			if (stack.empty())
				break;
			i = stack.back().first;
			remaining = stack.back().second;
			stack.pop_back();
			depth--;
			continue;
		}
		if (i + 1 >= nseg)
			return -1;
		Uint16 op = seg[i], len = seg[i + 1];
		if (remaining != ~0UL)
			remaining--;
		if (op == 0) { /* discrete */
			if (i + 2 + len > nseg)
				return -1;
			for (unsigned k = 0; k < len && lut.size() < n; k++)
				lut.push_back(seg[i + 2 + k]);
			i += 2 + len;
		} else if (op == 1) { /* linear from the last value to seg[i+2] */
			if (i + 2 >= nseg || lut.empty())
				return -1;
			double y0 = lut.back(), y1 = seg[i + 2];
			for (unsigned k = 1; k <= len && lut.size() < n; k++)
				lut.push_back((Uint16)(y0 + (y1 - y0) * k / len + 0.5));
			i += 3;
		} else if (op == 2) { /* indirect: replay len segments at offset */
			if (i + 3 >= nseg || depth > 4)
				return -1;
			unsigned long off =
			    (unsigned long)seg[i + 2] | ((unsigned long)seg[i + 3] << 16);
			stack.push_back({i + 4, remaining});
			depth++;
			i = off;
			remaining = len;
		} else {
			return -1;
		}
	}
	while (lut.size() < n)
		lut.push_back(lut.empty() ? 0 : lut.back());
	return 0;
}

bool has_segmented_palette(DcmDataset *ds)
{
	return !ds->tagExistsWithValue(DCM_RedPaletteColorLookupTableData) &&
	       ds->tagExistsWithValue(DCM_SegmentedRedPaletteColorLookupTableData);
}

/* PALETTE COLOR with segmented LUTs, which DicomImage does not read. */
int decode_segmented_palette(usv_dcm *h, int frame, usv_image **out, char *errbuf, size_t errlen)
{
	const usv_dcm_info &in = h->info;
	const char *p = h->path.c_str();
	DcmDataset *ds = h->ff.getDataset();
	const DcmTagKey desc[3] = {DCM_RedPaletteColorLookupTableDescriptor,
	                           DCM_GreenPaletteColorLookupTableDescriptor,
	                           DCM_BluePaletteColorLookupTableDescriptor};
	const DcmTagKey data[3] = {DCM_SegmentedRedPaletteColorLookupTableData,
	                           DCM_SegmentedGreenPaletteColorLookupTableData,
	                           DCM_SegmentedBluePaletteColorLookupTableData};
	std::vector<Uint16> lut[3];
	long first = 0;
	int bits = 16;
	for (int k = 0; k < 3; k++) {
		Uint16 d0 = 0, d2 = 16;
		long d1 = 0;
		if (ds->findAndGetUint16(desc[k], d0, 0).bad() ||
		    ds->findAndGetLongInt(desc[k], d1, 1).bad() ||
		    ds->findAndGetUint16(desc[k], d2, 2).bad())
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: bad palette descriptor", p);
		unsigned long n = d0 ? d0 : 65536;
		const Uint16 *seg = nullptr;
		unsigned long nseg = 0;
		if (ds->findAndGetUint16Array(data[k], seg, &nseg).bad() || !seg ||
		    expand_segmented(seg, nseg, n, lut[k]))
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: bad segmented palette data", p);
		first = d1;
		bits = d2;
	}
	DcmPixelData *pd = pixel_data(ds);
	if (!pd)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: no readable pixel data", p);
	size_t npx = (size_t)in.rows * (size_t)in.cols, bps = (size_t)in.bits_allocated / 8;
	std::vector<Uint8> buf(npx * bps);
	Uint32 start = 0;
	OFString cm;
	if (pd->getUncompressedFrame(ds, (Uint32)frame, start, buf.data(), (Uint32)buf.size(), cm)
	        .bad())
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: frame %d: unreadable", p,
		                  frame);
	usv_image *o = nullptr;
	int rc = usv_image_new(in.cols, in.rows, 3, &o);
	if (rc)
		return usv_seterr(errbuf, errlen, rc, "%s: out of memory", p);
	for (size_t i = 0; i < npx; i++) {
		long v = bps == 2 ? (long)((const Uint16 *)buf.data())[i] : (long)buf[i];
		for (int k = 0; k < 3; k++) {
			long j = v - first;
			long n = (long)lut[k].size();
			j = j < 0 ? 0 : j >= n ? n - 1 : j;
			unsigned e = lut[k][(size_t)j];
			o->px[3 * i + (size_t)k] = (uint8_t)(bits > 8 ? e >> 8 : e & 0xff);
		}
	}
	*out = o;
	return 0;
}

} // namespace

/* The File Meta Information (group 0002, always explicit VR little
 * endian after the 128-byte preamble and "DICM") checked before DCMTK
 * reads it: DCMTK loads meta elements whole whatever their size, and with
 * dcmIgnoreParsingErrors an element claiming more bytes than the file has
 * made it allocate and fill that much (a 1 KB file claiming a 1.1 GB
 * Transfer Syntax UID took 33 s and 1.1 GB; found by fuzzing). 0, or
 * -USV_ERR_FORMAT naming the element. Files without the "DICM" prefix are
 * left to DCMTK. */
static int meta_lengths_check(const char *path, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0; /* DCMTK reports it */
	unsigned char b[132];
	struct stat st;
	int rc = 0;
	if (fstat(fileno(f), &st) != 0 || fread(b, 1, 132, f) != 132 ||
	    memcmp(b + 128, "DICM", 4)) {
		fclose(f);
		return 0;
	}
	uint64_t pos = 132, size = (uint64_t)st.st_size;
	for (int n = 0; n < 1000; n++) {
		unsigned char e[12];
		if (fread(e, 1, 8, f) != 8)
			break;
		unsigned group = e[0] | e[1] << 8, elem = e[2] | e[3] << 8;
		if (group != 0x0002)
			break;
		char vr[3] = {(char)e[4], (char)e[5], 0};
		static const char *const long_vrs[] = {"OB", "OD", "OF", "OL", "OV", "OW",
		                                       "SQ", "UC", "UN", "UR", "UT"};
		int is_long = 0;
		for (const char *v : long_vrs)
			is_long |= !strcmp(vr, v);
		uint64_t len, hdr = 8;
		if (is_long) {
			if (fread(e + 8, 1, 4, f) != 4)
				break;
			len = (uint64_t)e[8] | (uint64_t)e[9] << 8 | (uint64_t)e[10] << 16 |
			      (uint64_t)e[11] << 24;
			hdr = 12;
			if (len == 0xffffffffu)
				break; /* undefined length: not in a valid meta group; DCMTK decides
				        */
		} else {
			len = (uint64_t)(e[6] | e[7] << 8);
		}
		if (pos + hdr + len > size) {
			rc = usv_seterr(
			    errbuf, errlen, -USV_ERR_FORMAT,
			    "%s: meta element (0002,%04x) claims %llu bytes, the file has "
			    "%llu left",
			    path, elem, (unsigned long long)len,
			    (unsigned long long)(size - pos - hdr));
			break;
		}
		pos += hdr + len;
		if (fseek(f, (long)pos, SEEK_SET) != 0)
			break;
	}
	fclose(f);
	return rc;
}

extern "C" int usv_dcm_open(const char *path, usv_dcm **out, char *errbuf, size_t errlen)
{
	usv_dcm *h = nullptr;
	try {
		if (!path || !out)
			return usv_seterr(errbuf, errlen, -EINVAL, "usv_dcm_open: bad arguments");
		int mrc = meta_lengths_check(path, errbuf, errlen);
		if (mrc)
			return mrc;
		h = new usv_dcm();
		h->path = path;
		OFCondition c = h->ff.loadFile(path, EXS_Unknown, EGL_noChange, 4096);
		if (c.bad()) {
			int code = -USV_ERR_FORMAT;
			if (c == EC_InvalidFilename || c.code() == 0) /* not found etc. */
				code = -ENOENT;
			usv_seterr(errbuf, errlen, code, "%s: not readable as DICOM: %s", path,
			           c.text());
			delete h;
			return code;
		}
		int rc = read_info(h, errbuf, errlen);
		if (rc) {
			delete h;
			return rc;
		}
		*out = h;
		return 0;
	} catch (...) {
		delete h;
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "%s: DICOM parsing failed",
		                  path ? path : "");
	}
}

extern "C" const usv_dcm_info *usv_dcm_get_info(const usv_dcm *h)
{
	return h ? &h->info : nullptr;
}

extern "C" int usv_dcm_can_decode(const usv_dcm *h, char *why, size_t whylen)
{
	try {
		const usv_dcm_info &in = h->info;
		if (!in.has_pixel_data) {
			usv_seterr(why, whylen, 0, "no pixel data");
			return 0;
		}
		DcmXfer x(h->xfer);
		if (h->xfer == EXS_Unknown) {
			usv_seterr(why, whylen, 0, "unknown transfer syntax %s",
			           in.transfer_syntax);
			return 0;
		}
		if (x.isEncapsulated() && !is_j2k(h->xfer) &&
		    !DcmCodecList::canChangeCoding(h->xfer, EXS_LittleEndianExplicit)) {
			usv_seterr(why, whylen, 0, "transfer syntax %s (%s) cannot be decoded",
			           in.transfer_syntax, x.getXferName());
			return 0;
		}
		bool ok = false;
		for (const char *k : known_photometric)
			ok = ok || !strcmp(k, in.photometric);
		if ((!strcmp(in.photometric, "YBR_RCT") || !strcmp(in.photometric, "YBR_ICT")) &&
		    !is_j2k(h->xfer))
			ok = false;
		if (!ok) {
			usv_seterr(why, whylen, 0, "photometric interpretation '%s' not supported",
			           in.photometric);
			return 0;
		}
		bool mono = !strncmp(in.photometric, "MONOCHROME", 10) ||
		            !strcmp(in.photometric, "PALETTE COLOR");
		if ((mono && in.samples_per_pixel != 1) || (!mono && in.samples_per_pixel != 3)) {
			usv_seterr(why, whylen, 0, "%d samples per pixel with %s",
			           in.samples_per_pixel, in.photometric);
			return 0;
		}
		return 1;
	} catch (...) {
		usv_seterr(why, whylen, 0, "internal error");
		return 0;
	}
}

extern "C" int usv_dcm_decode_frame(usv_dcm *h, int frame, usv_image **out, char *errbuf,
                                    size_t errlen)
{
	try {
		if (!h || !out)
			return usv_seterr(errbuf, errlen, -EINVAL,
			                  "usv_dcm_decode_frame: bad arguments");
		const usv_dcm_info &in = h->info;
		const char *p = h->path.c_str();
		if (frame < 0 || frame >= in.frames)
			return usv_seterr(errbuf, errlen, -EINVAL, "%s: frame %d of %d", p, frame,
			                  in.frames);
		char why[256];
		if (!usv_dcm_can_decode(h, why, sizeof why))
			return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED, "%s: %s", p, why);

		if (is_j2k(h->xfer)) {
			std::vector<uint8_t> bytes;
			int rc = frame_fragments(h, frame, bytes, errbuf, errlen);
			if (rc)
				return rc;
			char jerr[256];
			rc = usv_j2k_decode(bytes.data(), bytes.size(), in.rows, in.cols,
			                    in.samples_per_pixel, out, jerr, sizeof jerr);
			if (rc)
				return usv_seterr(errbuf, errlen, rc, "%s: frame %d: %s", p, frame,
				                  jerr);
			if (!strcmp(in.photometric, "MONOCHROME1"))
				for (size_t i = 0; i < (size_t)in.rows * (size_t)in.cols; i++)
					(*out)->px[i] = (uint8_t)(255 - (*out)->px[i]);
			return 0;
		}

		if (h->xfer == EXS_RLELossless || is_jpeg_family(h->xfer)) {
			int rc = h->xfer == EXS_RLELossless
			             ? rle_header_check(h, frame, errbuf, errlen)
			             : jpeg_header_check(h, frame, errbuf, errlen);
			if (rc)
				return rc;
		}

		if (!strcmp(in.photometric, "PALETTE COLOR") &&
		    has_segmented_palette(h->ff.getDataset()))
			return decode_segmented_palette(h, frame, out, errbuf, errlen);

		/* YCbCr is kept and converted below (ybr_full_to_rgb) so that the
		 * result is reproducible (DCMTK's own integer conversion is off
		 * by up to 2 from the PS3.3 equations). JPEG data arrives as RGB
		 * anyway: the JPEG decoder converts colour itself. */
		const unsigned long flags =
		    CIF_UsePartialAccessToPixelData | CIF_KeepYCbCrColorModel;
		DcmDataset *ds = h->ff.getDataset();
		std::unique_ptr<DicomImage> imgp(
		    new DicomImage(&h->ff, ds->getCurrentXfer(), flags, (unsigned long)frame, 1));
		if (imgp->getStatus() != EIS_Normal && frame > 0 &&
		    DcmXfer(ds->getCurrentXfer()).isEncapsulated()) {
			/* Partial access needs the frame's first fragment; without a
			 * basic offset table and with several fragments per frame
			 * DCMTK cannot find it. Fall back to decompressing the whole
			 * pixel data once (bounded), then read frames from memory. */
			unsigned long long total = (unsigned long long)in.rows * in.cols * 3ULL *
			                           (unsigned long long)(in.bits_allocated / 8) *
			                           (unsigned long long)in.frames;
			if (total > (512ULL << 20))
				return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
				                  "%s: frame %d: no offset table and %llu MB to "
				                  "decompress",
				                  p, frame, total >> 20);
			for (int f = 0; f < in.frames; f++) {
				int rc = h->xfer == EXS_RLELossless
				             ? rle_header_check(h, f, errbuf, errlen)
				         : is_jpeg_family(h->xfer)
				             ? jpeg_header_check(h, f, errbuf, errlen)
				             : 0;
				if (rc)
					return rc;
			}
			if (ds->chooseRepresentation(EXS_LittleEndianExplicit, NULL).bad() ||
			    !ds->canWriteXfer(EXS_LittleEndianExplicit))
				return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
				                  "%s: frame %d: pixel data cannot be decompressed",
				                  p, frame);
			imgp.reset(new DicomImage(&h->ff, ds->getCurrentXfer(), flags,
			                          (unsigned long)frame, 1));
		}
		DicomImage &img = *imgp;
		if (img.getStatus() != EIS_Normal)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: frame %d: %s", p,
			                  frame, DicomImage::getString(img.getStatus()));
		if ((int)img.getWidth() != in.cols || (int)img.getHeight() != in.rows)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: decoded size %lux%lu differs from %dx%d", p,
			                  img.getWidth(), img.getHeight(), in.cols, in.rows);
		/* MONOCHROME1: DCMTK's own inversion is off by one for half of
		 * the 8-bit range (v >= 128 gives 256 - v). Render with reversed
		 * polarity (the stored values, ascending) and invert exactly. */
		const bool mono1 = !strcmp(in.photometric, "MONOCHROME1");
		if (mono1 && !img.setPolarity(EPP_Reverse))
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: frame %d: cannot render MONOCHROME1", p, frame);
		int c = img.isMonochrome() ? 1 : 3;
		size_t need = (size_t)in.rows * (size_t)in.cols * (size_t)c;
		if (img.getOutputDataSize(8) != need)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: frame %d: unexpected output size", p, frame);
		const void *data = img.getOutputData(8, 0, 0);
		if (!data)
			return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
			                  "%s: frame %d: pixel data could not be rendered", p,
			                  frame);
		usv_image *o = nullptr;
		int rc = usv_image_new(in.cols, in.rows, c, &o);
		if (rc)
			return usv_seterr(errbuf, errlen, rc, "%s: out of memory", p);
		memcpy(o->px, data, need);
		if (mono1)
			for (size_t i = 0; i < need; i++)
				o->px[i] = (uint8_t)(255 - o->px[i]);
		EP_Interpretation pi = img.getPhotometricInterpretation();
		if (c == 3 && (pi == EPI_YBR_Full || pi == EPI_YBR_Full_422))
			ybr_full_to_rgb(o);
		*out = o;
		return 0;
	} catch (...) {
		return usv_seterr(errbuf, errlen, -USV_ERR_DICOM, "%s: decoding failed",
		                  h ? h->path.c_str() : "");
	}
}

extern "C" void usv_dcm_free(usv_dcm *h)
{
	try {
		delete h;
	} catch (...) {
	}
}
