/*
 * NAME
 *	fuzz_dicom_prepare.c - libFuzzer harness: the worker's DICOM path
 *
 * DESCRIPTION
 *	Each input is a DICOM file (preamble and meta header included) run
 *	through usv_dcm_prepare(), the pipeline of usviewd's workers: parse,
 *	modality and decodability checks, frame selection, decoding in the
 *	file's transfer syntax (native, RLE, JPEG, JPEG-LS, JPEG 2000,
 *	deflate), crop rules, colour check and resize. Every frame (at most
 *	four) is decoded, to a small output square to keep runs fast.
 */
#include "fuzz_common.h"
#include "usv/dcm_prepare.h"
#include "usv/dicom.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char path[64], err[512];
	if (!ready) {
		if (usv_dcm_global_init(err, sizeof err))
			return 0;
		ready = 1;
	}
	int fd = fuzz_file_open(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	usv_prepare_opts o;
	usv_prepare_opts_init(&o);
	o.frames = USV_FRAMES_ALL;
	o.max_frames = 4;
	o.out_size = 32;
	usv_prepared *p = NULL;
	usv_dcm_prepare(path, &o, &p, err, sizeof err);
	usv_prepared_free(p);
	fuzz_file_close(fd);
	return 0;
}
