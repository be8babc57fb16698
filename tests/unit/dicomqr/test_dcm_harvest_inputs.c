/*
 * NAME
 *	test_dcm_harvest_inputs.c - label text in usv_dcm_info, full frames
 *	from usv_dcm_prepare, DICOMDIR listing
 *
 * DESCRIPTION
 *	Independent truth comes from DCMTK's command line tools (package
 *	dcmtk): dcmodify writes the label attributes into copies of a shared
 *	file (values with control characters, padding, multiple values,
 *	over-long text, UTF-8 cut inside a character, a View Code Sequence
 *	of two items); dcmmkdir builds a DICOMDIR over copies with 8.3
 *	names in nested folders and dcmdump lists its Referenced File IDs in
 *	record order. usv_dcm_prepare(keep_full): the kept frame is the
 *	decoder's frame, and cropping it at the reported box, replicating
 *	grey and resizing gives exactly the network input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "usv/dcm_dicomdir.h"
#include "usv/dcm_image.h"
#include "usv/dcm_prepare.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/image.h"

#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char tmpdir[256];

static const char *shared(void)
{
	const char *s = getenv("USV_SHARED_DIR");
	return s ? s : "../shared";
}

/* Runs argv (searched in PATH) with no shell; returns the exit status. */
static int run(char *const argv[])
{
	pid_t pid;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return -1;
	int st = 0;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void copy_file(const char *src, const char *dst)
{
	FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
	assert_non_null(in);
	assert_non_null(out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

static void us_file(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/data/dicom/us/%s", shared(), name);
}

static int setup(void **state)
{
	(void)state;
	char err[USV_ERRBUF];
	assert_int_equal(usv_dcm_global_init(err, sizeof err), 0);
	snprintf(tmpdir, sizeof tmpdir, "/tmp/usv-harvest-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char *rm[] = {"rm", "-rf", tmpdir, NULL};
	run(rm);
	usv_dcm_global_cleanup();
	return 0;
}

/* ---- label text ---------------------------------------------------------- */

static void test_label_text(void **state)
{
	(void)state;
	char src[PATH_MAX], dst[PATH_MAX], err[USV_ERRBUF];
	us_file("pydicom-data__US1_UNCR.dcm", src, sizeof src);
	snprintf(dst, sizeof dst, "%s/label.dcm", tmpdir);
	copy_file(src, dst);

	/* Image Comments: tab, newline, ESC, DEL, then 1500 'x': 1023 bytes kept */
	char comments[1600];
	strcpy(comments, "(0020,4000)=L1\tL2\nL3\x1b\x7f");
	size_t k = strlen(comments);
	memset(comments + k, 'x', 1500);
	comments[k + 1500] = 0;
	/* Acquisition Protocol Description: 300 'a' -> 255 bytes */
	char acq[400];
	strcpy(acq, "(0018,9424)=");
	k = strlen(acq);
	memset(acq + k, 'a', 300);
	acq[k + 300] = 0;
	/* Requested Procedure Description, UTF-8: 255 'b' + U+00E9 (2 bytes):
	 * the cut at 256 bytes falls inside the last character */
	char req[400];
	strcpy(req, "(0032,1060)=");
	k = strlen(req);
	memset(req + k, 'b', 255);
	strcpy(req + k + 255, "\xc3\xa9");
	char *mod[] = {"dcmodify", "-nb",
	               "-i",       "(0008,0005)=ISO_IR 192",
	               "-i",       "(0054,0220)[0].(0008,0100)=T-62000",
	               "-i",       "(0054,0220)[0].(0008,0104)=Liver right, longitudinal",
	               "-i",       "(0054,0220)[1].(0008,0104)=Second item",
	               "-i",       comments,
	               "-i",       "(0018,1030)=  Abdomen  ",
	               "-i",       acq,
	               "-i",       "(0008,1030)=ABDOMEN\\LIVER",
	               "-i",       req,
	               dst,        NULL};
	assert_int_equal(run(mod), 0);

	usv_dcm *h = NULL;
	assert_int_equal(usv_dcm_open(dst, &h, err, sizeof err), 0);
	const usv_dcm_info *in = usv_dcm_get_info(h);
	assert_string_equal(in->view_code_meaning, "Liver right, longitudinal");
	assert_int_equal(strlen(in->image_comments), USV_DCM_COMMENTS_LEN - 1);
	assert_memory_equal(in->image_comments, "L1 L2 L3  xxx", 13);
	for (size_t i = 10; i < strlen(in->image_comments); i++)
		assert_int_equal(in->image_comments[i], 'x');
	assert_string_equal(in->protocol_name, "Abdomen");
	assert_string_equal(in->series_description, "");
	assert_int_equal(strlen(in->acquisition_protocol_description), USV_DCM_ACQ_DESC_LEN - 1);
	assert_int_equal(in->acquisition_protocol_description[0], 'a');
	assert_string_equal(in->study_description, "ABDOMEN\\LIVER");
	assert_int_equal(strlen(in->requested_procedure_description), 255);
	assert_int_equal(in->requested_procedure_description[254], 'b');
	assert_string_equal(in->sop_instance_uid,
	                    "1.3.6.1.4.1.5962.1.1.13.1.1.20040826185059.5457");
	/* the header reading still decodes */
	usv_image *img = NULL;
	assert_int_equal(usv_dcm_decode_frame(h, 0, &img, err, sizeof err), 0);
	usv_image_free(img);
	usv_dcm_free(h);

	/* the same with room for the whole character (not UTF-8: cut as is) */
	char *mod2[] = {"dcmodify", "-nb", "-i", "(0008,0005)=ISO_IR 100", dst, NULL};
	assert_int_equal(run(mod2), 0);
	assert_int_equal(usv_dcm_open(dst, &h, err, sizeof err), 0);
	in = usv_dcm_get_info(h);
	assert_int_equal(strlen(in->requested_procedure_description), 256);
	usv_dcm_free(h);

	/* absent everywhere: all "" (the shared file has no such text but
	 * Image Comments) */
	us_file("pydicom-data__OBXXXX1A.dcm", src, sizeof src);
	assert_int_equal(usv_dcm_open(src, &h, err, sizeof err), 0);
	in = usv_dcm_get_info(h);
	assert_string_equal(in->view_code_meaning, "");
	assert_string_equal(in->image_comments, "");
	assert_string_equal(in->protocol_name, "");
	assert_string_equal(in->acquisition_protocol_description, "");
	assert_string_equal(in->requested_procedure_description, "");
	usv_dcm_free(h);
	us_file("dcm4che__YBR_422.dcm", src, sizeof src);
	assert_int_equal(usv_dcm_open(src, &h, err, sizeof err), 0);
	in = usv_dcm_get_info(h);
	assert_string_equal(in->series_description, "Musculoskeletal");
	assert_string_equal(in->study_description, "ECOTOMOGRAFIA CODO IZQUIERDO");
	/* ISO_IR 100 bytes kept as stored: "M\xdaSC-ESQUEL" */
	assert_string_equal(in->protocol_name, "M\xdaSC-ESQUEL");
	usv_dcm_free(h);
}

/* ---- keep_full ------------------------------------------------------------ */

static void check_full(const char *name, int want_c)
{
	char p[PATH_MAX], err[USV_ERRBUF];
	us_file(name, p, sizeof p);
	usv_prepare_opts o;
	usv_prepare_opts_init(&o);
	assert_int_equal(o.keep_full, 0);
	o.colour_threshold = -1;
	usv_prepared *r = NULL;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_null(r->frames[0].full);
	usv_prepared_free(r);

	o.keep_full = 1;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_int_equal(r->nframes, 1);
	const usv_image *full = r->frames[0].full;
	assert_non_null(full);
	assert_int_equal(full->w, r->info.cols);
	assert_int_equal(full->h, r->info.rows);
	assert_int_equal(full->c, want_c);

	usv_dcm *h = NULL;
	usv_image *dec = NULL;
	assert_int_equal(usv_dcm_open(p, &h, err, sizeof err), 0);
	assert_int_equal(usv_dcm_decode_frame(h, 0, &dec, err, sizeof err), 0);
	assert_memory_equal(full->px, dec->px, (size_t)dec->w * dec->h * dec->c);
	usv_image_free(dec);
	usv_dcm_free(h);

	/* crop at the reported box, grey to 3 channels, resize = network input */
	usv_image *crop = NULL, *rgb = NULL, *small = NULL;
	assert_int_equal(usv_image_crop(full, r->crop.x, r->crop.y, r->crop.w, r->crop.h, &crop),
	                 0);
	if (crop->c == 1) {
		assert_int_equal(usv_image_new(crop->w, crop->h, 3, &rgb), 0);
		for (size_t i = 0; i < (size_t)crop->w * crop->h; i++)
			rgb->px[3 * i] = rgb->px[3 * i + 1] = rgb->px[3 * i + 2] = crop->px[i];
	} else {
		rgb = crop;
		crop = NULL;
	}
	assert_int_equal(usv_image_resize_area(rgb, o.out_size, o.out_size, &small), 0);
	assert_memory_equal(small->px, r->frames[0].img->px, (size_t)o.out_size * o.out_size * 3);
	usv_image_free(crop);
	usv_image_free(rgb);
	usv_image_free(small);
	usv_prepared_free(r);
}

static void test_keep_full(void **state)
{
	(void)state;
	check_full("pydicom-data__US1_UNCR.dcm", 3);
	check_full("pydicom-data__JPGLosslessP14SV1_1s_1f_8b.dcm", 1);

	/* several frames: one full image each */
	char p[PATH_MAX], err[USV_ERRBUF];
	us_file("dcm4che__US-PAL-8-10x-echo", p, sizeof p);
	usv_prepare_opts o;
	usv_prepare_opts_init(&o);
	o.colour_threshold = -1;
	o.frames = USV_FRAMES_EVERY_NTH;
	o.every_n = 4;
	o.keep_full = 1;
	usv_prepared *r = NULL;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), 0);
	assert_int_equal(r->nframes, 3);
	for (size_t i = 0; i < r->nframes; i++) {
		assert_non_null(r->frames[i].full);
		assert_int_equal(r->frames[i].full->c, 3);
	}
	/* frames differ (echo loop), so each kept image is its own frame */
	assert_true(memcmp(r->frames[0].full->px, r->frames[1].full->px,
	                   (size_t)r->info.cols * r->info.rows * 3) != 0);
	/* keep_full 2: the first selected frame only, the same image */
	usv_prepared *r2 = NULL;
	o.keep_full = 2;
	assert_int_equal(usv_dcm_prepare(p, &o, &r2, err, sizeof err), 0);
	assert_int_equal(r2->nframes, 3);
	assert_non_null(r2->frames[0].full);
	assert_memory_equal(r2->frames[0].full->px, r->frames[0].full->px,
	                    (size_t)r->info.cols * r->info.rows * 3);
	for (size_t i = 1; i < r2->nframes; i++)
		assert_null(r2->frames[i].full);
	usv_prepared_free(r2);
	usv_prepared_free(r);
	/* excluded for colour: no result, nothing leaks (sanitizer build) */
	r = NULL;
	o.colour_threshold = 0.02;
	assert_int_equal(usv_dcm_prepare(p, &o, &r, err, sizeof err), -USV_ERR_EXCLUDED);
	assert_non_null(strstr(err, "colour overlay"));
	assert_null(r);
}

/* ---- DICOMDIR ------------------------------------------------------------- */

/* Referenced File IDs in record order, as dcmdump prints them. */
static size_t dump_file_ids(const char *dicomdir, char ids[][64], size_t max)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof cmd, "dcmdump +P 0004,1500 '%s'", dicomdir);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char line[512];
	size_t n = 0;
	while (fgets(line, sizeof line, f) && n < max) {
		char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
		if (!a || !b)
			continue;
		*b = 0;
		snprintf(ids[n], 64, "%.63s", a + 1);
		for (char *c = ids[n]; *c; c++)
			if (*c == '\\')
				*c = '/';
		n++;
	}
	assert_int_equal(pclose(f), 0);
	return n;
}

static void test_dicomdir(void **state)
{
	(void)state;
	char fs[512], p[PATH_MAX], src[PATH_MAX], err[USV_ERRBUF];
	snprintf(fs, sizeof fs, "%s/fileset", tmpdir);
	const char *dirs[] = {"", "/A", "/B", "/B/C"};
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s%s", fs, dirs[i]);
		assert_int_equal(mkdir(p, 0755), 0);
	}
	struct {
		const char *src, *dst;
	} files[] = {
	    {"pydicom-data__US1_UNCR.dcm", "A/IM000001"},
	    {"pydicom-data__US1_UNCI.dcm", "A/IM000002"},
	    {"pydicom-data__OBXXXX1A.dcm", "B/C/IM000003"},
	    {"cwil__US-YBR_FULL_422-EVRLE.dcm", "B/IM000004"},
	};
	for (size_t i = 0; i < 4; i++) {
		us_file(files[i].src, src, sizeof src);
		snprintf(p, sizeof p, "%s/%s", fs, files[i].dst);
		copy_file(src, p);
	}
	char dd[PATH_MAX], wd[PATH_MAX];
	snprintf(dd, sizeof dd, "%s/DICOMDIR", fs);
	assert_non_null(getcwd(wd, sizeof wd));
	assert_int_equal(chdir(fs), 0);
	char *mk[] = {"dcmmkdir", "-q", "+I", "+r", "+D", "DICOMDIR", "A", "B", NULL};
	int mk_rc = run(mk);
	assert_int_equal(chdir(wd), 0);
	assert_int_equal(mk_rc, 0);

	assert_int_equal(usv_dcm_is_dicomdir(dd), 1);
	char **v = NULL;
	size_t n = 0;
	assert_int_equal(usv_dcm_dicomdir_list(dd, &v, &n, err, sizeof err), 0);
	assert_int_equal(n, 4);
	/* record order = dcmdump's order; every copied file once */
	char ids[8][64];
	assert_int_equal(dump_file_ids(dd, ids, 8), 4);
	int seen[4] = {0};
	for (size_t i = 0; i < n; i++) {
		snprintf(p, sizeof p, "%s/%s", fs, ids[i]);
		assert_string_equal(v[i], p);
		struct stat sb;
		assert_int_equal(stat(v[i], &sb), 0);
		for (size_t k = 0; k < 4; k++) {
			snprintf(p, sizeof p, "%s/%s", fs, files[k].dst);
			if (!strcmp(v[i], p))
				seen[k]++;
		}
	}
	for (size_t k = 0; k < 4; k++)
		assert_int_equal(seen[k], 1);
	usv_dcm_strv_free(v, n);
	usv_dcm_strv_free(NULL, 0);

	/* not a DICOMDIR: an image, a text file, a missing file */
	us_file("pydicom-data__US1_UNCR.dcm", src, sizeof src);
	assert_int_equal(usv_dcm_is_dicomdir(src), 0);
	v = NULL;
	assert_int_equal(usv_dcm_dicomdir_list(src, &v, &n, err, sizeof err), -USV_ERR_FORMAT);
	assert_non_null(strstr(err, "not a DICOMDIR"));
	assert_non_null(strstr(err, "1.2.840.10008.5.1.4.1.1.6.1"));
	assert_null(v);
	snprintf(p, sizeof p, "%s/text", tmpdir);
	FILE *t = fopen(p, "w");
	assert_non_null(t);
	fputs("DICOMDIR? no.\n", t);
	fclose(t);
	assert_int_equal(usv_dcm_is_dicomdir(p), 0);
	assert_int_equal(usv_dcm_dicomdir_list(p, &v, &n, err, sizeof err), -USV_ERR_FORMAT);
	assert_non_null(strstr(err, "text"));
	snprintf(p, sizeof p, "%s/missing/DICOMDIR", tmpdir);
	assert_int_equal(usv_dcm_is_dicomdir(p), 0);
	assert_int_equal(usv_dcm_dicomdir_list(p, &v, &n, err, sizeof err), -ENOENT);
	assert_int_equal(usv_dcm_is_dicomdir(NULL), 0);
	assert_int_equal(usv_dcm_dicomdir_list(NULL, &v, &n, err, sizeof err), -EINVAL);

	/* a component ".." makes it invalid: patch "A\\IM000001" (10 bytes) into
	 * "..\\IM00001" in place */
	FILE *d = fopen(dd, "r+b");
	assert_non_null(d);
	static char buf[1 << 20];
	size_t len = fread(buf, 1, sizeof buf, d);
	assert_true(len > 0 && len < sizeof buf);
	char *hit = memmem(buf, len, "A\\IM000001", 10);
	assert_non_null(hit);
	memcpy(hit, "..\\IM00001", 10);
	assert_int_equal(fseek(d, 0, SEEK_SET), 0);
	assert_int_equal(fwrite(buf, 1, len, d), len);
	assert_int_equal(fclose(d), 0);
	assert_int_equal(usv_dcm_dicomdir_list(dd, &v, &n, err, sizeof err), -USV_ERR_FORMAT);
	assert_non_null(strstr(err, "record "));
	assert_non_null(strstr(err, "'.' or '..'"));
	assert_null(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_label_text),
	    cmocka_unit_test(test_keep_full),
	    cmocka_unit_test(test_dicomdir),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
