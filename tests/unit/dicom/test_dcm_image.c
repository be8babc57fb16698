/*
 * NAME
 *	test_dcm_image.c - header reading and frame decoding of the shared US files
 *
 * DESCRIPTION
 *	Independent reference: $USV_SHARED_DIR/data/dicom/MANIFEST.tsv (size,
 *	frames, photometric interpretation, transfer syntax, number of
 *	ultrasound regions, as listed by the data set's curators). Every file
 *	is opened, compared with its row, and its first and last frame are
 *	decoded where the syntax is decodable. Broken input (truncated, random
 *	bytes behind a preamble, absurd sizes, corrupt JPEG 2000) must fail
 *	cleanly; under the sanitizer build this also checks memory safety.
 *	usv_dcm_prepare(): frame policies, exclusion and unsupported reasons,
 *	grey replication, the EPIQ rule crop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dcm_j2k.h"
#include "usv/dcm_image.h"
#include "usv/dcm_prepare.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *shared(void)
{
	const char *s = getenv("USV_SHARED_DIR");
	return s ? s : "../shared";
}

/* Splits a TSV line in place; returns the number of fields. */
static int split(char *line, char **f, int max)
{
	int n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == '\t') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

static void test_manifest_files(void **state)
{
	(void)state;
	char path[PATH_MAX], line[4096], err[USV_ERRBUF];
	snprintf(path, sizeof path, "%s/data/dicom/MANIFEST.tsv", shared());
	FILE *m = fopen(path, "r");
	assert_non_null(m);
	assert_non_null(fgets(line, sizeof line, m)); /* header */
	int files = 0, decoded = 0;
	while (fgets(line, sizeof line, m)) {
		line[strcspn(line, "\r\n")] = 0;
		char *f[16];
		if (split(line, f, 16) < 13 || strncmp(f[0], "us/", 3))
			continue;
		/* file source license sha256 sop manufacturer model WxH
		 * photometric bits transfer_syntax frames us_regions */
		int w = 0, h = 0;
		assert_int_equal(sscanf(f[7], "%dx%d", &w, &h), 2);
		int frames = atoi(f[11]), nreg = atoi(f[12]);
		snprintf(path, sizeof path, "%s/data/dicom/%s", shared(), f[0]);
		files++;
		usv_dcm *d = NULL;
		int rc = usv_dcm_open(path, &d, err, sizeof err);
		if (!strcmp(f[0], "us/fo-dicom__GH364.dcm")) {
			/* stray item tag at data set level: refused, named */
			assert_int_equal(rc, -USV_ERR_FORMAT);
			assert_non_null(strstr(err, "GH364"));
			continue;
		}
		if (rc)
			fail_msg("%s: %s", f[0], err);
		const usv_dcm_info *in = usv_dcm_get_info(d);
		assert_int_equal(in->cols, w);
		assert_int_equal(in->rows, h);
		assert_int_equal(in->frames, frames);
		assert_string_equal(in->photometric, f[8]);
		assert_int_equal(in->bits_allocated, atoi(f[9]));
		assert_int_equal((int)in->nregions, nreg);
		assert_string_equal(in->modality, "US");
		char why[256];
		int can = usv_dcm_can_decode(d, why, sizeof why);
		if (strstr(f[0], "will-jxl")) {
			assert_int_equal(can, 0);
			assert_non_null(strstr(why, "1.2.840.10008.1.2.4.111"));
			usv_image *img = NULL;
			assert_int_equal(usv_dcm_decode_frame(d, 0, &img, err, sizeof err),
			                 -USV_ERR_UNSUPPORTED);
			assert_null(img);
			usv_dcm_free(d);
			continue;
		}
		if (!can)
			fail_msg("%s: %s", f[0], why);
		int c = !strncmp(in->photometric, "MONOCHROME", 10) ? 1 : 3;
		int last = frames - 1;
		for (int k = 0; k < 2; k++) {
			int fr = k ? last : 0;
			usv_image *img = NULL;
			rc = usv_dcm_decode_frame(d, fr, &img, err, sizeof err);
			if (rc)
				fail_msg("%s frame %d: %s", f[0], fr, err);
			assert_int_equal(img->w, w);
			assert_int_equal(img->h, h);
			assert_int_equal(img->c, c);
			usv_image_free(img);
		}
		usv_image *img = NULL;
		assert_int_equal(usv_dcm_decode_frame(d, frames, &img, err, sizeof err), -EINVAL);
		assert_int_equal(usv_dcm_decode_frame(d, -1, &img, err, sizeof err), -EINVAL);
		decoded++;
		usv_dcm_free(d);
	}
	fclose(m);
	assert_int_equal(files, 33);
	assert_int_equal(decoded, 31);
}

static void write_bytes(const char *p, const void *b, size_t n)
{
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	fclose(f);
}

static void test_bad_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/usv-dcmtest-XXXXXX", p[PATH_MAX], src[PATH_MAX], err[USV_ERRBUF];
	assert_non_null(mkdtemp(dir));
	usv_dcm *d = NULL;

	/* missing file */
	snprintf(p, sizeof p, "%s/none.dcm", dir);
	assert_true(usv_dcm_open(p, &d, err, sizeof err) < 0);
	assert_null(d);

	/* random bytes behind a preamble */
	unsigned char buf[132 + 4096];
	memset(buf, 0, 128);
	memcpy(buf + 128, "DICM", 4);
	srand(7);
	for (size_t i = 132; i < sizeof buf; i++)
		buf[i] = (unsigned char)rand();
	snprintf(p, sizeof p, "%s/random.dcm", dir);
	write_bytes(p, buf, sizeof buf);
	assert_true(usv_dcm_open(p, &d, err, sizeof err) < 0);
	assert_non_null(strstr(err, "random.dcm"));

	/* truncated copies of a native and of a J2K file, at several cuts */
	static const char *const names[] = {"pydicom-data__US1_UNCR.dcm",
	                                    "pydicom-data__US1_J2KR.dcm",
	                                    "pydicom-data__OBXXXX1A_rle.dcm"};
	for (size_t k = 0; k < 3; k++) {
		snprintf(src, sizeof src, "%s/data/dicom/us/%s", shared(), names[k]);
		FILE *f = fopen(src, "rb");
		assert_non_null(f);
		static unsigned char all[1 << 20];
		size_t n = fread(all, 1, sizeof all, f);
		fclose(f);
		for (size_t cut = 200; cut < n; cut += n / 5) {
			snprintf(p, sizeof p, "%s/cut.dcm", dir);
			write_bytes(p, all, cut);
			d = NULL;
			int rc = usv_dcm_open(p, &d, err, sizeof err);
			if (rc == 0) {
				usv_image *img = NULL;
				rc = usv_dcm_decode_frame(d, 0, &img, err, sizeof err);
				usv_image_free(img);
				usv_dcm_free(d);
			}
			assert_true(rc < 0); /* never a frame from a cut file */
		}
	}
	unlink(p);
	snprintf(p, sizeof p, "%s/random.dcm", dir);
	unlink(p);
	rmdir(dir);
}

static void test_j2k_garbage(void **state)
{
	(void)state;
	char err[USV_ERRBUF];
	usv_image *img = NULL;
	unsigned char junk[512];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	assert_int_equal(usv_j2k_decode(junk, sizeof junk, 10, 10, 1, &img, err, sizeof err),
	                 -USV_ERR_FORMAT);
	junk[0] = 0xff, junk[1] = 0x4f, junk[2] = 0xff, junk[3] = 0x51; /* SOC SIZ, then junk */
	assert_true(usv_j2k_decode(junk, sizeof junk, 10, 10, 1, &img, err, sizeof err) < 0);
	assert_null(img);
	assert_true(usv_j2k_decode(NULL, 0, 10, 10, 1, &img, err, sizeof err) < 0);
}

static void test_prepare(void **state)
{
	(void)state;
	char p[PATH_MAX], err[USV_ERRBUF];
	usv_prepare_opts o;
	usv_prepared *r = NULL;
	snprintf(p, sizeof p, "%s/data/dicom/us/dcm4che__US-PAL-8-10x-echo", shared());
	usv_prepare_opts_init(&o);
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), -USV_ERR_EXCLUDED);
	assert_non_null(strstr(err, "colour overlay"));
	assert_null(r);

	o.colour_threshold = -1; /* check off */
	o.frames = USV_FRAMES_ALL;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_int_equal(r->nframes, 10);
	for (size_t i = 0; i < r->nframes; i++) {
		assert_int_equal(r->frames[i].index, (int)i);
		assert_int_equal(r->frames[i].img->w, 256);
		assert_int_equal(r->frames[i].img->h, 256);
		assert_int_equal(r->frames[i].img->c, 3);
	}
	usv_prepared_free(r);
	o.frames = USV_FRAMES_EVERY_NTH;
	o.every_n = 3;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_int_equal(r->nframes, 4);
	assert_int_equal(r->frames[3].index, 9);
	usv_prepared_free(r);
	o.frames = USV_FRAMES_MIDDLE;
	o.to_grey = 1;
	o.out_size = 64;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_int_equal(r->nframes, 1);
	assert_int_equal(r->frames[0].index, 5);
	const usv_image *g = r->frames[0].img;
	assert_int_equal(g->w, 64);
	for (size_t i = 0; i < (size_t)g->w * (size_t)g->h; i++)
		assert_true(g->px[3 * i] == g->px[3 * i + 1] && g->px[3 * i] == g->px[3 * i + 2]);
	usv_prepared_free(r);
	o.frames = USV_FRAMES_ALL;
	o.max_frames = 2;
	o.to_grey = 0;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_int_equal(r->nframes, 2);
	usv_prepared_free(r);
	o.frame = 10; /* out of range */
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), -EINVAL);

	snprintf(p, sizeof p, "%s/data/dicom/us/dcm4che__will-jxl.dcm", shared());
	assert_int_equal(usv_dcm_prepare(p, NULL, &r, err, sizeof err), -USV_ERR_UNSUPPORTED);
	assert_non_null(strstr(err, "1.2.840.10008.1.2.4.111"));
	snprintf(p, sizeof p, "%s/data/dicom/us/pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm",
	         shared());
	assert_int_equal(usv_dcm_prepare(p, NULL, &r, err, sizeof err), 0);
	assert_int_equal(r->crop_source, USV_CROP_RULE); /* Philips EPIQ 1024 x 768 */
	assert_int_equal(r->crop.x, 212);
	assert_int_equal(r->crop.w, 600);
	/* grey input replicated: R = G = B */
	for (size_t i = 0; i < 256 * 256; i++)
		assert_true(r->frames[0].img->px[3 * i] == r->frames[0].img->px[3 * i + 2]);
	usv_prepared_free(r);
}

static int setup(void **state)
{
	(void)state;
	char err[USV_ERRBUF];
	return usv_dcm_global_init(err, sizeof err);
}

static int teardown(void **state)
{
	(void)state;
	usv_dcm_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest_files),
	    cmocka_unit_test(test_bad_files),
	    cmocka_unit_test(test_j2k_garbage),
	    cmocka_unit_test(test_prepare),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
