/*
 * NAME
 *	imgio.c - image files: PNG (libpng), JPEG (libjpeg-turbo), BMP
 *
 * DESCRIPTION
 *	usv_image_load() reads the whole file (at most USV_IMGIO_MAX_FILE
 *	bytes), picks the decoder by the leading bytes (PNG signature, JPEG
 *	SOI + marker, "BM") and returns RGB. Every decoder checks the
 *	dimensions against USV_IMAGE_MAX_DIM before allocating.
 *
 *	BMP: BITMAPCOREHEADER (12 bytes) and BITMAPINFOHEADER and its V2-V5
 *	extensions; 24-bit, 32-bit (BI_RGB, or BI_BITFIELDS with 8-bit
 *	masks) and 1/4/8-bit palette images, uncompressed; rows bottom-up
 *	(height > 0) or top-down (height < 0), padded to 4 bytes.
 *
 *	JPEG: libjpeg's error handler is replaced by one that longjmp()s back
 *	with the library's message, so a corrupt stream is an error, not an
 *	exit. Grey and YCbCr decode to RGB; CMYK is refused.
 */
#include "usv/image.h"

#include "usv/err.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define USV_IMGIO_MAX_FILE ((size_t)512 << 20)

static int read_all(const char *path, uint8_t **buf, size_t *len, char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return usv_seterr(errbuf, errlen, -errno, "%s: %s", path, strerror(errno));
	size_t cap = 1 << 16, n = 0;
	uint8_t *b = malloc(cap);
	if (!b) {
		fclose(f);
		return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory", path);
	}
	for (;;) {
		if (n == cap) {
			if (cap >= USV_IMGIO_MAX_FILE) {
				free(b);
				fclose(f);
				return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
				                  "%s: file larger than %zu bytes", path,
				                  USV_IMGIO_MAX_FILE);
			}
			uint8_t *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				fclose(f);
				return usv_seterr(errbuf, errlen, -ENOMEM, "%s: out of memory",
				                  path);
			}
			b = nb;
			cap *= 2;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				free(b);
				fclose(f);
				return usv_seterr(errbuf, errlen, -EIO, "%s: read error", path);
			}
			break;
		}
	}
	fclose(f);
	*buf = b;
	*len = n;
	return 0;
}

static int dims_ok(long w, long h)
{
	return w >= 1 && h >= 1 && w <= USV_IMAGE_MAX_DIM && h <= USV_IMAGE_MAX_DIM;
}

/* ---------------- PNG ---------------- */

static int load_png(const char *path, const uint8_t *b, size_t n, usv_image **out, char *errbuf,
                    size_t errlen)
{
	png_image pi;
	memset(&pi, 0, sizeof pi);
	pi.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&pi, b, n))
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: PNG: %s", path, pi.message);
	if (!dims_ok((long)pi.width, (long)pi.height)) {
		png_image_free(&pi);
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
		                  "%s: PNG: size %ux%u out of range", path, pi.width, pi.height);
	}
	pi.format = PNG_FORMAT_RGB;
	usv_image *img;
	int rc = usv_image_new((int)pi.width, (int)pi.height, 3, &img);
	if (rc < 0) {
		png_image_free(&pi);
		return usv_seterr(errbuf, errlen, rc, "%s: out of memory", path);
	}
	/* transparent pixels are composited onto black */
	png_color bg = {0, 0, 0};
	if (!png_image_finish_read(&pi, &bg, img->px, 0, NULL)) {
		usv_image_free(img);
		rc = usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: PNG: %s", path, pi.message);
		png_image_free(&pi);
		return rc;
	}
	*out = img;
	return 0;
}

int usv_image_write_png(const usv_image *img, const char *path, char *errbuf, size_t errlen)
{
	if (!img || !img->px || (img->c != 1 && img->c != 3) || !dims_ok(img->w, img->h))
		return usv_seterr(errbuf, errlen, -EINVAL, "%s: bad image to write", path);
	png_image pi;
	memset(&pi, 0, sizeof pi);
	pi.version = PNG_IMAGE_VERSION;
	pi.width = (png_uint_32)img->w;
	pi.height = (png_uint_32)img->h;
	pi.format = img->c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
	if (!png_image_write_to_file(&pi, path, 0, img->px, 0, NULL)) {
		int rc = usv_seterr(errbuf, errlen, -EIO, "%s: PNG write: %s", path, pi.message);
		png_image_free(&pi);
		return rc;
	}
	return 0;
}

/* ---------------- JPEG ---------------- */

typedef struct jerr {
	struct jpeg_error_mgr mgr;
	jmp_buf jb;
	char msg[JMSG_LENGTH_MAX];
} jerr;

static void jerr_exit(j_common_ptr ci)
{
	jerr *e = (jerr *)ci->err;
	(*ci->err->format_message)(ci, e->msg);
	longjmp(e->jb, 1);
}

static void jerr_output(j_common_ptr ci)
{
	(void)ci; /* warnings are not printed: library code does not log */
}

/* Warnings pass, except the end of the data before the end of the image
 * (the file, or a scan's entropy-coded segment, ends early): libjpeg would
 * go on to decode the rest of the image from nothing, so a 140-byte file
 * claiming 10758x16128 cost 8 s and 1.1 GB. Such a file is refused. */
static void jerr_emit(j_common_ptr ci, int level)
{
	if (level < 0 &&
	    (ci->err->msg_code == JWRN_JPEG_EOF || ci->err->msg_code == JWRN_HIT_MARKER))
		jerr_exit(ci);
	if (level < 0)
		ci->err->num_warnings++;
}

static int load_jpeg(const char *path, const uint8_t *b, size_t n, usv_image **out, char *errbuf,
                     size_t errlen)
{
	struct jpeg_decompress_struct ci;
	jerr e;
	/* volatile: modified between setjmp and longjmp */
	usv_image *volatile img = NULL;
	memset(&ci, 0, sizeof ci);
	ci.err = jpeg_std_error(&e.mgr);
	e.mgr.error_exit = jerr_exit;
	e.mgr.output_message = jerr_output;
	e.mgr.emit_message = jerr_emit;
	e.msg[0] = 0;
	if (setjmp(e.jb)) {
		jpeg_destroy_decompress(&ci);
		usv_image_free(img);
		return usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, "%s: JPEG: %s", path, e.msg);
	}
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, b, (unsigned long)n);
	jpeg_read_header(&ci, TRUE);
	if (!dims_ok((long)ci.image_width, (long)ci.image_height)) {
		jpeg_destroy_decompress(&ci);
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
		                  "%s: JPEG: size %ux%u out of range", path, ci.image_width,
		                  ci.image_height);
	}
	if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
		jpeg_destroy_decompress(&ci);
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED, "%s: JPEG: CMYK", path);
	}
	ci.out_color_space = JCS_RGB;
	jpeg_start_decompress(&ci);
	if (ci.output_components != 3) {
		jpeg_destroy_decompress(&ci);
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: JPEG: %d output components", path, ci.output_components);
	}
	usv_image *im;
	int rc = usv_image_new((int)ci.output_width, (int)ci.output_height, 3, &im);
	if (rc < 0) {
		jpeg_destroy_decompress(&ci);
		return usv_seterr(errbuf, errlen, rc, "%s: out of memory", path);
	}
	img = im;
	while (ci.output_scanline < ci.output_height) {
		JSAMPROW row = img->px + (size_t)ci.output_scanline * (size_t)img->w * 3;
		if (jpeg_read_scanlines(&ci, &row, 1) != 1)
			break;
	}
	jpeg_finish_decompress(&ci);
	jpeg_destroy_decompress(&ci);
	*out = img;
	return 0;
}

/* ---------------- BMP ---------------- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const uint8_t *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* Shift and width of a contiguous channel mask; -1 unless an 8-bit mask. */
static int mask_shift(uint32_t m)
{
	if (!m)
		return -1;
	int s = 0;
	while (!(m & 1)) {
		m >>= 1;
		s++;
	}
	return m == 0xff ? s : -1;
}

static int load_bmp(const char *path, const uint8_t *b, size_t n, usv_image **out, char *errbuf,
                    size_t errlen)
{
#define BAD(...) usv_seterr(errbuf, errlen, -USV_ERR_FORMAT, __VA_ARGS__)
	if (n < 26)
		return BAD("%s: BMP: truncated header", path);
	uint32_t off = le32(b + 10), hs = le32(b + 14);
	long w, h;
	unsigned bpp, planes;
	uint32_t comp = 0, ncolors = 0;
	int core = hs == 12;
	if (core) {
		w = (long)le16(b + 18);
		h = (long)(int16_t)le16(b + 20);
		planes = le16(b + 22);
		bpp = le16(b + 24);
	} else {
		if (hs < 40 || hs > 1024 || n < 14 + (size_t)hs)
			return BAD("%s: BMP: unsupported or truncated info header (%u bytes)", path,
			           hs);
		w = (long)(int32_t)le32(b + 18);
		h = (long)(int32_t)le32(b + 22);
		planes = le16(b + 26);
		bpp = le16(b + 28);
		comp = le32(b + 30);
		ncolors = le32(b + 46);
	}
	int topdown = h < 0;
	if (topdown)
		h = -h;
	if (planes != 1)
		return BAD("%s: BMP: %u planes", path, planes);
	if (!dims_ok(w, h))
		return usv_seterr(errbuf, errlen, -USV_ERR_LIMIT,
		                  "%s: BMP: size %ldx%ld out of range", path, w, h);
	int rs = 16, gs = 8, bs = 0; /* 32-bit channel shifts */
	if (comp == 3 && bpp == 32) {
		uint32_t mr, mg, mb;
		/* right after the 40-byte header: appended to it (BI_BITFIELDS
		 * with a plain info header) or part of it (V2 and later) */
		size_t mo = 14 + 40;
		if (n < mo + 12)
			return BAD("%s: BMP: truncated bit masks", path);
		mr = le32(b + mo), mg = le32(b + mo + 4), mb = le32(b + mo + 8);
		rs = mask_shift(mr), gs = mask_shift(mg), bs = mask_shift(mb);
		if (rs < 0 || gs < 0 || bs < 0)
			return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
			                  "%s: BMP: bit masks other than 8 bits per channel", path);
	} else if (comp != 0) {
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: BMP: compression %u not supported", path, comp);
	}
	if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 && bpp != 32)
		return usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                  "%s: BMP: %u bits per pixel not supported", path, bpp);
	uint8_t pal[256][3];
	memset(pal, 0, sizeof pal);
	if (bpp <= 8) {
		uint32_t maxc = 1u << bpp;
		if (ncolors == 0 || ncolors > maxc)
			ncolors = maxc;
		size_t esz = core ? 3 : 4, po = 14 + (size_t)hs;
		if (po + ncolors * esz > n || po + ncolors * esz > off)
			return BAD("%s: BMP: truncated palette", path);
		for (uint32_t i = 0; i < ncolors; i++) {
			pal[i][0] = b[po + i * esz + 2];
			pal[i][1] = b[po + i * esz + 1];
			pal[i][2] = b[po + i * esz + 0];
		}
	}
	size_t stride = (((size_t)w * bpp + 31) / 32) * 4;
	if (off > n || (n - off) / stride < (size_t)h)
		return BAD("%s: BMP: truncated pixel data", path);
	usv_image *img;
	int rc = usv_image_new((int)w, (int)h, 3, &img);
	if (rc < 0)
		return usv_seterr(errbuf, errlen, rc, "%s: out of memory", path);
	for (long y = 0; y < h; y++) {
		const uint8_t *row = b + off + stride * (size_t)(topdown ? y : h - 1 - y);
		uint8_t *d = img->px + (size_t)y * (size_t)w * 3;
		for (long x = 0; x < w; x++, d += 3) {
			switch (bpp) {
			case 24:
				d[0] = row[3 * x + 2], d[1] = row[3 * x + 1], d[2] = row[3 * x];
				break;
			case 32: {
				uint32_t v = le32(row + 4 * x);
				d[0] = (uint8_t)(v >> rs), d[1] = (uint8_t)(v >> gs),
				d[2] = (uint8_t)(v >> bs);
				break;
			}
			default: {
				unsigned ppb = 8 / bpp; /* pixels per byte */
				unsigned byte = row[x / ppb];
				unsigned sh = (unsigned)(ppb - 1 - (unsigned)(x % ppb)) * bpp;
				unsigned idx = (byte >> sh) & ((1u << bpp) - 1);
				if (idx >= ncolors) {
					usv_image_free(img);
					return BAD("%s: BMP: palette index %u out of range", path,
					           idx);
				}
				memcpy(d, pal[idx], 3);
			}
			}
		}
	}
	*out = img;
	return 0;
#undef BAD
}

int usv_image_load(const char *path, usv_image **out, char *errbuf, size_t errlen)
{
	*out = NULL;
	uint8_t *b = NULL;
	size_t n = 0;
	int rc = read_all(path, &b, &n, errbuf, errlen);
	if (rc < 0)
		return rc;
	static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	if (n >= 8 && !memcmp(b, png_sig, 8))
		rc = load_png(path, b, n, out, errbuf, errlen);
	else if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		rc = load_jpeg(path, b, n, out, errbuf, errlen);
	else if (n >= 2 && b[0] == 'B' && b[1] == 'M')
		rc = load_bmp(path, b, n, out, errbuf, errlen);
	else
		rc = usv_seterr(errbuf, errlen, -USV_ERR_UNSUPPORTED,
		                "%s: not a PNG, JPEG or BMP file", path);
	free(b);
	return rc;
}
