/*
 * NAME
 *	fuzz_cstore.cpp - libFuzzer harness: a data set received by C-STORE
 *
 * DESCRIPTION
 *	The storage SCP (dicom/src/dcm_scp.cpp) receives a C-STORE data set
 *	bit for bit into a spool file behind a meta header that names the
 *	presentation context's transfer syntax, checks it (DCMTK load with
 *	elements over 4096 bytes left on disk, SOP Class and Instance UIDs
 *	present and equal to the request's, Rows and Columns within
 *	USV_DCM_MAX_DIM) and hands it to a worker, which runs
 *	usv_dcm_prepare() on it. This harness does the same with the data
 *	set taken from the input: byte 0 picks the negotiated transfer
 *	syntax (index into `syntaxes`, modulo its size), the rest is the
 *	data set as it arrives in the P-DATA PDVs. The meta header carries
 *	the fixed `req_class` and `req_inst`; the request is taken to name
 *	the data set's own SOP Class and Instance UIDs (a conforming peer),
 *	so the check below, which mirrors the SCP's, fails on absent UIDs,
 *	not on mismatching ones.
 */
#include "fuzz_common.h"
#include "usv/dcm_image.h"
#include "usv/dcm_prepare.h"
#include "usv/dicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>

#include <cstdint>
#include <cstring>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const syntaxes[] = {
    "1.2.840.10008.1.2",      "1.2.840.10008.1.2.1",    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
};
static const char req_class[] = "1.2.840.10008.5.1.4.1.1.6.1";
static const char req_inst[] = "1.2.826.0.1.3680043.8.498.1";

/* One explicit VR little endian meta element. */
static void put_elem(std::string &out, uint16_t elem, const char *vr, const std::string &val)
{
	std::string v = val;
	if (v.size() % 2)
		v.push_back('\0');
	uint8_t h[12] = {
	    0x02,           0x00,          (uint8_t)(elem & 0xff), (uint8_t)(elem >> 8),
	    (uint8_t)vr[0], (uint8_t)vr[1]};
	size_t n = 6;
	if (!strcmp(vr, "OB")) {
		h[n++] = 0;
		h[n++] = 0;
		for (int i = 0; i < 4; i++)
			h[n++] = (uint8_t)(v.size() >> (8 * i));
	} else {
		h[n++] = (uint8_t)(v.size() & 0xff);
		h[n++] = (uint8_t)(v.size() >> 8);
	}
	out.append((const char *)h, n);
	out.append(v);
}

/* Preamble, DICM and the meta group the SCP writes before the data set. */
static std::string meta_header(const char *ts)
{
	std::string g;
	put_elem(g, 0x0001, "OB", std::string("\0\1", 2));
	put_elem(g, 0x0002, "UI", req_class);
	put_elem(g, 0x0003, "UI", req_inst);
	put_elem(g, 0x0010, "UI", ts);
	put_elem(g, 0x0012, "UI", "1.2.276.0.7230010.3.0.3.6.7");
	std::string len(4, '\0');
	for (int i = 0; i < 4; i++)
		len[i] = (char)(g.size() >> (8 * i));
	std::string out(128, '\0');
	out += "DICM";
	put_elem(out, 0x0000, "UL", len);
	out += g;
	return out;
}

/* The SCP's acceptance check (check_file in dcm_scp.cpp). */
static bool scp_accepts(const char *path)
{
	DcmFileFormat ff;
	if (ff.loadFile(path, EXS_Unknown, EGL_noChange, 4096).bad())
		return false;
	DcmDataset *ds = ff.getDataset();
	OFString inst, cls;
	if (ds->findAndGetOFString(DCM_SOPInstanceUID, inst).bad())
		return false;
	if (ds->findAndGetOFString(DCM_SOPClassUID, cls).bad())
		return false;
	Uint16 rows = 0, cols = 0;
	ds->findAndGetUint16(DCM_Rows, rows);
	ds->findAndGetUint16(DCM_Columns, cols);
	return rows <= USV_DCM_MAX_DIM && cols <= USV_DCM_MAX_DIM;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	char path[64], err[512];
	if (!ready) {
		if (usv_dcm_global_init(err, sizeof err))
			return 0;
		ready = true;
	}
	if (size < 1)
		return 0;
	std::string file = meta_header(syntaxes[data[0] % (sizeof syntaxes / sizeof syntaxes[0])]);
	file.append((const char *)data + 1, size - 1);
	int fd = fuzz_file_open((const uint8_t *)file.data(), file.size(), path, sizeof path);
	if (fd < 0)
		return 0;
	if (scp_accepts(path)) {
		usv_prepare_opts o;
		usv_prepare_opts_init(&o);
		o.out_size = 32;
		usv_prepared *p = nullptr;
		usv_dcm_prepare(path, &o, &p, err, sizeof err);
		usv_prepared_free(p);
	}
	fuzz_file_close(fd);
	return 0;
}
