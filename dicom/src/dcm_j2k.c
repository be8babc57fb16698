/*
 * NAME
 *	dcm_j2k.c - JPEG 2000 decoding of one DICOM frame with OpenJPEG
 *
 * DESCRIPTION
 *	DCMTK (free edition) has no JPEG 2000 codec. DICOM carries a J2K frame
 *	as a raw codestream (ISO 15444-1 Annex A) split over fragments; the
 *	caller joins them and hands the bytes here. OpenJPEG reads them
 *	through its user stream API over a memory buffer. See dcm_j2k.h.
 */
#include "dcm_j2k.h"

#include "usv/err.h"

#include <errno.h>
#include <openjpeg.h>
#include <stdio.h>
#include <string.h>

struct membuf {
	const uint8_t *p;
	size_t len, pos;
};

static OPJ_SIZE_T mem_read(void *dst, OPJ_SIZE_T n, void *user)
{
	struct membuf *m = user;
	if (m->pos >= m->len)
		return (OPJ_SIZE_T)-1;
	size_t k = m->len - m->pos < n ? m->len - m->pos : n;
	memcpy(dst, m->p + m->pos, k);
	m->pos += k;
	return k;
}

static OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user)
{
	struct membuf *m = user;
	if (n < 0) {
		if ((size_t)(-n) > m->pos)
			n = -(OPJ_OFF_T)m->pos;
	} else if ((size_t)n > m->len - m->pos) {
		n = (OPJ_OFF_T)(m->len - m->pos);
	}
	m->pos = (size_t)((OPJ_OFF_T)m->pos + n);
	return n;
}

static OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user)
{
	struct membuf *m = user;
	if (n < 0 || (size_t)n > m->len)
		return OPJ_FALSE;
	m->pos = (size_t)n;
	return OPJ_TRUE;
}

static void quiet(const char *msg, void *data)
{
	(void)msg, (void)data;
}

static void keep_error(const char *msg, void *data)
{
	char *buf = data;
	if (!buf[0]) {
		snprintf(buf, 200, "%s", msg);
		buf[strcspn(buf, "\n")] = 0;
	}
}

int usv_j2k_decode(const uint8_t *buf, size_t len, int rows, int cols, int spp, usv_image **out,
                   char *errbuf, size_t errlen)
{
	if (!buf || len < 12 || rows < 1 || cols < 1 || (spp != 1 && spp != 3) || !out)
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "JPEG 2000: empty frame");
	/* JP2 files start with a signature box; DICOM wants a bare codestream,
	 * but some writers embed JP2. */
	static const uint8_t jp2sig[] = {0, 0, 0, 0x0c, 'j', 'P', ' ', ' '};
	OPJ_CODEC_FORMAT fmt = memcmp(buf, jp2sig, sizeof jp2sig) ? OPJ_CODEC_J2K : OPJ_CODEC_JP2;
	if (fmt == OPJ_CODEC_J2K && !(buf[0] == 0xff && buf[1] == 0x4f))
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                  "JPEG 2000: no SOC marker at the start of the frame");

	struct membuf m = {buf, len, 0};
	char oerr[208] = "";
	int rc = 0;
	opj_image_t *img = NULL;
	opj_codec_t *codec = opj_create_decompress(fmt);
	opj_stream_t *st = opj_stream_create(1 << 16, OPJ_TRUE);
	if (!codec || !st) {
		rc = usv_seterr(errbuf, errlen, -ENOMEM, "JPEG 2000: out of memory");
		goto out;
	}
	opj_stream_set_user_data(st, &m, NULL);
	opj_stream_set_user_data_length(st, len);
	opj_stream_set_read_function(st, mem_read);
	opj_stream_set_skip_function(st, mem_skip);
	opj_stream_set_seek_function(st, mem_seek);
	opj_set_info_handler(codec, quiet, NULL);
	opj_set_warning_handler(codec, quiet, NULL);
	opj_set_error_handler(codec, keep_error, oerr);
	opj_dparameters_t par;
	opj_set_default_decoder_parameters(&par);
	if (!opj_setup_decoder(codec, &par) || !opj_read_header(st, codec, &img) ||
	    !opj_decode(codec, st, img) || !opj_end_decompress(codec, st)) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "JPEG 2000: %s",
		                oerr[0] ? oerr : "decoding failed");
		goto out;
	}
	if ((int)img->numcomps < spp) {
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT,
		                "JPEG 2000: %u components, expected %d", img->numcomps, spp);
		goto out;
	}
	for (int k = 0; k < spp; k++) {
		opj_image_comp_t *c = &img->comps[k];
		if (c->dx != 1 || c->dy != 1 || (int)c->w != cols || (int)c->h != rows ||
		    !c->data) {
			rc = usv_seterr(
			    errbuf, errlen, -USV_ERR_UNSUPPORTED,
			    "JPEG 2000: component %d is %ux%u (step %u,%u), expected %dx%d", k,
			    c->w, c->h, c->dx, c->dy, cols, rows);
			goto out;
		}
		if (c->prec < 1 || c->prec > 16) {
			rc = usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
			                "JPEG 2000: %u-bit samples", c->prec);
			goto out;
		}
	}
	usv_image *o = NULL;
	if ((rc = usv_image_new(cols, rows, spp, &o))) {
		usv_seterr(errbuf, errlen, rc, "JPEG 2000: out of memory");
		goto out;
	}
	size_t npx = (size_t)rows * (size_t)cols;
	for (int k = 0; k < spp; k++) {
		opj_image_comp_t *c = &img->comps[k];
		long max = (1L << c->prec) - 1, off = c->sgnd ? (1L << (c->prec - 1)) : 0;
		for (size_t i = 0; i < npx; i++) {
			long v = (long)c->data[i] + off;
			if (v < 0)
				v = 0;
			if (v > max)
				v = max;
			if (c->prec > 8)
				v >>= c->prec - 8; /* as DicomImage maps > 8-bit data */
			else if (c->prec < 8)
				v = (v * 255 + max / 2) / max;
			o->px[i * (size_t)spp + (size_t)k] = (uint8_t)v;
		}
	}
	*out = o;
out:
	if (img)
		opj_image_destroy(img);
	if (st)
		opj_stream_destroy(st);
	if (codec)
		opj_destroy_codec(codec);
	return rc;
}
