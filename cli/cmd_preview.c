/*
 * NAME
 *	cmd_preview.c - usview preview: the crop the network would see
 *
 * SYNOPSIS
 *	usview preview FILE [-o OUT.png] [--frame N] [--info] [--raw OUT.npy]
 *
 * DESCRIPTION
 *	Runs the shared preparation pipeline (usv_dcm_prepare: decode, colour
 *	exclusion, crop, 256 x 256 area resize) on one frame (default the
 *	first) and writes the result as PNG. --info prints one JSON line:
 *	size, frames, photometric, transfer syntax, crop box and its source,
 *	and the SHA-256 of the 256 x 256 x 3 output pixels. --raw (for tests)
 *	writes the decoded full frame before the crop as a NumPy .npy file
 *	(uint8, shape rows x cols or rows x cols x 3).
 *	Exit status: 0 ok, 1 failure, 2 usage, 3 excluded by policy,
 *	4 unsupported encoding.
 */
#include "cli.h"
#include "opt.h"

#include "usv/dcm_image.h"
#include "usv/dcm_prepare.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/sha256.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_npy(const usv_image *img, const char *path, char *err, size_t errlen)
{
	char hdr[128];
	int n;
	if (img->c == 1)
		n = snprintf(hdr, sizeof hdr,
		             "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d), }",
		             img->h, img->w);
	else
		n = snprintf(hdr, sizeof hdr,
		             "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }",
		             img->h, img->w, img->c);
	/* magic(6) + version(2) + len(2) + header, padded with spaces to a
	 * multiple of 64, ending in '\n' */
	size_t total = 10 + (size_t)n + 1;
	size_t pad = (64 - total % 64) % 64;
	FILE *f = fopen(path, "wb");
	if (!f)
		return usv_seterr(err, errlen, -errno, "%s: %s", path, strerror(errno));
	unsigned hl = (unsigned)n + (unsigned)pad + 1;
	unsigned char pre[10] = {0x93,
	                         'N',
	                         'U',
	                         'M',
	                         'P',
	                         'Y',
	                         1,
	                         0,
	                         (unsigned char)(hl & 0xff),
	                         (unsigned char)(hl >> 8)};
	fwrite(pre, 1, sizeof pre, f);
	fwrite(hdr, 1, (size_t)n, f);
	for (size_t i = 0; i < pad; i++)
		fputc(' ', f);
	fputc('\n', f);
	fwrite(img->px, 1, (size_t)img->w * (size_t)img->h * (size_t)img->c, f);
	if (fclose(f))
		return usv_seterr(err, errlen, -EIO, "%s: write failed", path);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: usview preview FILE [-o OUT.png] [--frame N] [--info] [--raw OUT.npy]\n");
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

int usv_cmd_preview(int argc, char **argv)
{
	enum { OPT_RAW = 256, OPT_FRAME, OPT_INFO };
	static const struct option opts[] = {{"raw", required_argument, NULL, OPT_RAW},
	                                     {"frame", required_argument, NULL, OPT_FRAME},
	                                     {"info", no_argument, NULL, OPT_INFO},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *file = NULL, *png = NULL, *raw = NULL;
	int frame = 0, info = 0, opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'o':
			png = optarg;
			break;
		case OPT_RAW:
			raw = optarg;
			break;
		case OPT_FRAME:
			if (usv_opt_int("preview", "--frame", optarg, 0, USV_DCM_MAX_FRAMES - 1,
			                &frame))
				return 2;
			break;
		case OPT_INFO:
			info = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("preview", opt, argv);
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usview preview: %s\n",
		        optind >= argc ? "no DICOM file" : "give exactly one DICOM file");
		return 2;
	}
	file = argv[optind];
	if (!png && !raw && !info) {
		fprintf(stderr, "usview preview: nothing to do: give -o, --raw or --info\n");
		return 2;
	}
	char err[USV_ERRBUF];
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usview preview: %s\n", err);
		return 1;
	}
	int status = 1;
	if (raw) {
		usv_dcm *h = NULL;
		usv_image *img = NULL;
		int rc = usv_dcm_open(file, &h, err, sizeof err);
		if (!rc)
			rc = usv_dcm_decode_frame(h, frame, &img, err, sizeof err);
		if (!rc)
			rc = write_npy(img, raw, err, sizeof err);
		usv_image_free(img);
		usv_dcm_free(h);
		if (rc) {
			fprintf(stderr, "usview preview: %s\n", err);
			status = rc == -USV_ERR_UNSUPPORTED ? 4 : 1;
			goto out;
		}
	}
	if (png || info) {
		usv_prepare_opts o;
		usv_prepare_opts_init(&o);
		o.frame = frame;
		usv_prepared *p = NULL;
		int rc = usv_dcm_prepare(file, &o, &p, err, sizeof err);
		if (rc) {
			fprintf(stderr, "usview preview: %s\n", err);
			status = rc == -USV_ERR_EXCLUDED ? 3 : rc == -USV_ERR_UNSUPPORTED ? 4 : 1;
			goto out;
		}
		const usv_image *img = p->frames[0].img;
		if (png && (rc = usv_image_write_png(img, png, err, sizeof err))) {
			fprintf(stderr, "usview preview: %s\n", err);
			usv_prepared_free(p);
			goto out;
		}
		if (info) {
			usv_sha256 c;
			uint8_t d[32];
			char hex[65];
			usv_sha256_init(&c);
			usv_sha256_update(&c, img->px,
			                  (size_t)img->w * (size_t)img->h * (size_t)img->c);
			usv_sha256_final(&c, d);
			usv_sha256_hex(d, hex);
			printf("{\"file\": ");
			json_str(file);
			printf(", \"rows\": %d, \"cols\": %d, \"frames\": %d, \"frame\": %d, "
			       "\"photometric\": ",
			       p->info.rows, p->info.cols, p->info.frames, p->frames[0].index);
			json_str(p->info.photometric);
			printf(", \"transfer_syntax\": ");
			json_str(p->info.transfer_syntax);
			printf(", \"manufacturer\": ");
			json_str(p->info.manufacturer);
			printf(", \"model\": ");
			json_str(p->info.model);
			printf(", \"crop\": [%d, %d, %d, %d], \"crop_source\": \"%s\", "
			       "\"colour_share\": %.4f, \"sha256\": \"%s\"}\n",
			       p->crop.x, p->crop.y, p->crop.w, p->crop.h,
			       usv_crop_source_name(p->crop_source), p->frames[0].colour_share,
			       hex);
		}
		usv_prepared_free(p);
	}
	status = 0;
out:
	usv_dcm_global_cleanup();
	return status;
}
