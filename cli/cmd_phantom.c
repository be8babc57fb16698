/*
 * NAME
 *	cmd_phantom.c - usview phantom: labelled synthetic ultrasound DICOM studies
 *
 * SYNOPSIS
 *	usview phantom --out DIR --studies N [--manufacturer philips|toshiba]
 *	               [--seed S] [--per-view K] [--first-study I]
 *	               [--unannotated F] [--unmappable F] [--measurements F]
 *	               [--attr-labels F]
 *
 * DESCRIPTION
 *	Writes N studies, each one patient with K images of each of the
 *	paper's 11 views (phantom.h), as Ultrasound Image Storage files
 *	DIR/S<study>/I<nnnn>.dcm (8-bit MONOCHROME2, uncompressed), and
 *	DIR/labels.csv with path,label,group,manufacturer (group = the
 *	study). Without --manufacturer, studies alternate Philips EPIQ 7G
 *	(1024 x 768) and Toshiba Aplio XG (716 x 537). All UIDs, names and
 *	images are deterministic functions of the seed and the study index
 *	(--first-study shifts the index so that disjoint sets can be made
 *	with one seed). Every instance says it is synthetic: Patient Name
 *	PHANTOM^S<study>, Study and Series Description "SYNTHETIC PHANTOM -
 *	NOT FOR CLINICAL USE".
 *
 *	The screen around the image is burned in as scanners do it
 *	(phantom.h): the patient line in the top banner, settings on the
 *	right, and the view the technologist typed ("LT KIDNEY LONG", "Liver
 *	Rt Trans", "GB") at the lower left, beside or below the image. The
 *	options give shares of images (each 0..1, default 0, drawn per image
 *	from the seed):
 *	--unannotated F	no typed view text;
 *	--unmappable F	a typed text that names no view ("RUQ", "AORTA",
 *			"LYMPH NODE", ...); F + the --unannotated share <= 1;
 *	--measurements F	1-3 caliper marks in the sector, sometimes a
 *			dotted line, and a result line ("Dist 1.43 cm")
 *			outside the image;
 *	--attr-labels F	the view also (half of them) or only (the other
 *			half: no typed text) in one attribute: Image Comments
 *			(0020,4000), Protocol Name (0018,1030) or View Code
 *			Sequence (0054,0220; scheme 99USVIEW, the meaning in
 *			words, "Left Kidney Longitudinal").
 *	Image Comments that do not carry the view say the image is synthetic.
 *
 *	DIR/annotations.csv is the truth for readers of these labels:
 *	path,view,annotation,expected_label,expected_source,measurement
 *	view: the scene drawn (as labels.csv's label); annotation: the exact
 *	text typed into the pixels (empty when none; the fonts draw lower
 *	case with upper-case shapes); expected_label: what a correct reader
 *	gives, the view when an attribute or the typed text names it, empty
 *	when nothing does; expected_source: where it comes from,
 *	"dicom:ImageComments", "dicom:ProtocolName", "dicom:ViewCodeSequence"
 *	(an attribute wins over the pixels) or "ocr", empty with an empty
 *	expected_label; measurement: 1 when calipers and a result line were
 *	drawn, else 0.
 */
#include "cli.h"
#include "csv.h"
#include "opt.h"
#include "phantom.h"

#include "usv/dcm_result.h"
#include "usv/dcm_write.h"
#include "usv/dicom.h"
#include "usv/err.h"
#include "usv/train.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: usview phantom --out DIR --studies N [--manufacturer philips|toshiba]\n"
	        "                      [--seed S] [--per-view K] [--first-study I]\n"
	        "                      [--unannotated F] [--unmappable F] [--measurements F]\n"
	        "                      [--attr-labels F]\n"
	        "Shares F of images (0..1, default 0): no typed view text; a typed text that\n"
	        "names no view; calipers in the image and a measurement line; the view also\n"
	        "or only in Image Comments, Protocol Name or View Code Sequence.\n"
	        "Writes DIR/S<study>/I<nnnn>.dcm, DIR/labels.csv (path,label,group,manufacturer)\n"
	        "and DIR/annotations.csv (path,view,annotation,expected_label,expected_source,\n"
	        "measurement: the typed text, the label a correct reader gives and from where\n"
	        "- dicom:ImageComments, dicom:ProtocolName, dicom:ViewCodeSequence or ocr -,\n"
	        "and 1 for images with measurements).\n");
}

/* a uniform draw in [0, 1) for one decision about one image */
static double draw01(uint64_t isd, uint64_t what)
{
	usv_rng r;
	usv_rng_seed(&r, isd ^ (what * 0xD1B54A32D192ED03ULL));
	return usv_rng_uniform(&r);
}

/* what is typed, measured and stored for one image */
typedef struct plan {
	char text[USV_PHANTOM_TEXT_MAX]; /* typed into the pixels; "" none */
	char attr[USV_PHANTOM_TEXT_MAX]; /* the view in an attribute; "" none */
	const char *source;              /* expected_source */
	int measure, mappable_text;
} plan;

static void make_plan(uint64_t isd, int view, const double f[4], plan *p)
{
	memset(p, 0, sizeof *p);
	p->source = "";
	double u = draw01(isd, 1);
	if (u >= f[0] + f[1]) {
		usv_phantom_view_text(view, isd ^ 0x51ULL, 0, p->text, sizeof p->text);
		p->mappable_text = 1;
	} else if (u >= f[0]) {
		usv_phantom_unmappable_text(isd ^ 0x52ULL, p->text, sizeof p->text);
	}
	p->measure = draw01(isd, 2) < f[2];
	if (draw01(isd, 3) < f[3]) {
		int where = (int)(draw01(isd, 4) * 3);
		usv_phantom_view_text(view, isd ^ 0x53ULL, where == 2, p->attr, sizeof p->attr);
		p->source = where == 0   ? "dicom:ImageComments"
		            : where == 1 ? "dicom:ProtocolName"
		                         : "dicom:ViewCodeSequence";
		if (draw01(isd, 5) < 0.5) { /* only in the attribute */
			p->text[0] = 0;
			p->mappable_text = 0;
		}
	} else if (p->mappable_text) {
		p->source = "ocr";
	}
}

static void uid(char out[USV_UID_MAX], const char *seed, const char *what, long a, long b)
{
	char sa[32], sb[32];
	snprintf(sa, sizeof sa, "%ld", a);
	snprintf(sb, sizeof sb, "%ld", b);
	const char *parts[5] = {"usview-phantom", seed, what, sa, sb};
	usv_uid_derive(out, parts, 5);
}

int usv_cmd_phantom(int argc, char **argv)
{
	enum {
		OPT_MANUFACTURER = 256,
		OPT_STUDIES,
		OPT_PER_VIEW,
		OPT_FIRST_STUDY,
		OPT_SEED,
		OPT_UNANNOTATED,
		OPT_UNMAPPABLE,
		OPT_MEASUREMENTS,
		OPT_ATTR_LABELS
	};
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"manufacturer", required_argument, NULL, OPT_MANUFACTURER},
	    {"studies", required_argument, NULL, OPT_STUDIES},
	    {"per-view", required_argument, NULL, OPT_PER_VIEW},
	    {"first-study", required_argument, NULL, OPT_FIRST_STUDY},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"unannotated", required_argument, NULL, OPT_UNANNOTATED},
	    {"unmappable", required_argument, NULL, OPT_UNMAPPABLE},
	    {"measurements", required_argument, NULL, OPT_MEASUREMENTS},
	    {"attr-labels", required_argument, NULL, OPT_ATTR_LABELS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *out = NULL, *manu = NULL;
	long studies = -1, per_view = 1, first = 0, seed = 1;
	double share[4] = {0, 0, 0, 0}; /* unannotated, unmappable, measurements, attr-labels */
	int c, bad = 0;
	optind = 1;
	while (!bad && (c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case OPT_MANUFACTURER:
			if (!usv_phantom_vendor_find(optarg)) {
				fprintf(stderr,
				        "usview phantom: --manufacturer: '%s' is not philips or "
				        "toshiba\n",
				        optarg);
				return 2;
			}
			manu = optarg;
			break;
		case OPT_STUDIES:
			bad = usv_opt_long("phantom", "--studies", optarg, 1, 100000, &studies);
			break;
		case OPT_PER_VIEW:
			bad = usv_opt_long("phantom", "--per-view", optarg, 1, 1000, &per_view);
			break;
		case OPT_FIRST_STUDY:
			bad =
			    usv_opt_long("phantom", "--first-study", optarg, 0, 100000000, &first);
			break;
		case OPT_SEED:
			bad = usv_opt_long("phantom", "--seed", optarg, 0, 0x7fffffffL, &seed);
			break;
		case OPT_UNANNOTATED:
			bad = usv_opt_double("phantom", "--unannotated", optarg, 0, 1, &share[0]);
			break;
		case OPT_UNMAPPABLE:
			bad = usv_opt_double("phantom", "--unmappable", optarg, 0, 1, &share[1]);
			break;
		case OPT_MEASUREMENTS:
			bad = usv_opt_double("phantom", "--measurements", optarg, 0, 1, &share[2]);
			break;
		case OPT_ATTR_LABELS:
			bad = usv_opt_double("phantom", "--attr-labels", optarg, 0, 1, &share[3]);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return usv_opt_fail("phantom", c, argv);
		}
	}
	if (bad)
		return 2;
	if (!out || studies < 1) {
		fprintf(stderr, "usview phantom: %s: required\n", !out ? "--out" : "--studies");
		return 2;
	}
	if (share[0] + share[1] > 1.0 + 1e-9) {
		fprintf(stderr, "usview phantom: --unannotated plus --unmappable exceeds 1\n");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "usview phantom: %s: unexpected argument\n", argv[optind]);
		return 2;
	}
	char err[USV_ERRBUF];
	if (usv_dcm_global_init(err, sizeof err)) {
		fprintf(stderr, "usview phantom: %s\n", err);
		return 1;
	}
	if (mkdir(out, 0755) && errno != EEXIST) {
		fprintf(stderr, "usview phantom: %s: %s\n", out, strerror(errno));
		return 1;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/labels.csv", out);
	FILE *lf = fopen(path, "w");
	if (!lf) {
		fprintf(stderr, "usview phantom: %s: %s\n", path, strerror(errno));
		return 1;
	}
	fprintf(lf, "path,label,group,manufacturer\n");
	snprintf(path, sizeof path, "%s/annotations.csv", out);
	FILE *af = fopen(path, "w");
	if (!af) {
		fprintf(stderr, "usview phantom: %s: %s\n", path, strerror(errno));
		fclose(lf);
		return 1;
	}
	fprintf(af, "path,view,annotation,expected_label,expected_source,measurement\n");
	char seeds[32];
	snprintf(seeds, sizeof seeds, "%ld", seed);
	int status = 0;
	long written = 0;
	for (long s = first; s < first + studies && !status; s++) {
		const usv_phantom_vendor *v =
		    usv_phantom_vendor_find(manu ? manu : (s % 2 ? "toshiba" : "philips"));
		char sdir[32];
		snprintf(sdir, sizeof sdir, "S%05ld", s);
		snprintf(path, sizeof path, "%s/%s", out, sdir);
		if (mkdir(path, 0755) && errno != EEXIST) {
			fprintf(stderr, "usview phantom: %s: %s\n", path, strerror(errno));
			status = 1;
			break;
		}
		char st_uid[USV_UID_MAX], se_uid[USV_UID_MAX], for_uid[USV_UID_MAX];
		uid(st_uid, seeds, "study", s, 0);
		uid(se_uid, seeds, "series", s, 0);
		uid(for_uid, seeds, "frame-of-reference", s, 0);
		char pname[64], pid[64], acc[32], date[16], sid[16], banner[160];
		snprintf(pname, sizeof pname, "PHANTOM^S%05ld", s);
		snprintf(pid, sizeof pid, "PH%ld-%05ld", seed, s);
		snprintf(acc, sizeof acc, "PHA%ld%05ld", seed % 1000, s);
		/* one study per day from 2016-01-01, day within a 28-day month */
		snprintf(date, sizeof date, "2016%02ld%02ld", 1 + (s / 28) % 12, 1 + s % 28);
		snprintf(sid, sizeof sid, "%ld", s);
		snprintf(banner, sizeof banner, "%s\n%s %.4s/%.2s/%.2s", pname, pid, date, date + 4,
		         date + 6);
		int inst = 0;
		for (int view = 0; view < USV_PHANTOM_N_VIEWS && !status; view++) {
			for (long k = 0; k < per_view; k++) {
				inst++;
				uint64_t isd = (uint64_t)seed * 0x9E3779B97F4A7C15ULL ^
				               ((uint64_t)s << 20) ^ ((uint64_t)view << 12) ^
				               (uint64_t)k;
				plan pl;
				make_plan(isd, view, share, &pl);
				usv_phantom_overlay ov = {
				    .banner = banner, .annotation = pl.text, .measure = pl.measure};
				uint8_t *px = NULL;
				if (usv_phantom_render(v, view, isd, &ov, &px)) {
					fprintf(stderr, "usview phantom: out of memory\n");
					status = 1;
					break;
				}
				char sop[USV_UID_MAX], fname[96];
				uid(sop, seeds, "instance", s, inst);
				snprintf(fname, sizeof fname, "%s/I%04d.dcm", sdir, inst);
				snprintf(path, sizeof path, "%s/%s", out, fname);
				int vcs = !strcmp(pl.source, "dicom:ViewCodeSequence");
				const usv_view_info *vi = usv_view_at((size_t)view);
				usv_dcm_us_spec sp = {
				    .rows = v->rows,
				    .cols = v->cols,
				    .pixels = px,
				    .sop_instance_uid = sop,
				    .study_uid = st_uid,
				    .series_uid = se_uid,
				    .frame_of_reference_uid = for_uid,
				    .patient_name = pname,
				    .patient_id = pid,
				    .patient_sex = "O",
				    .patient_birth_date = "",
				    .study_date = date,
				    .study_time = "090000",
				    .study_id = sid,
				    .accession_number = acc,
				    .study_description = "SYNTHETIC PHANTOM - NOT FOR CLINICAL USE",
				    .series_description =
				        "SYNTHETIC PHANTOM - NOT FOR CLINICAL USE",
				    .image_comments = !strcmp(pl.source, "dicom:ImageComments")
				                          ? pl.attr
				                          : "Synthetic image made by usview "
				                            "phantom; not a patient",
				    .protocol_name =
				        !strcmp(pl.source, "dicom:ProtocolName") ? pl.attr : NULL,
				    .manufacturer = v->manufacturer,
				    .model_name = v->model,
				    .institution = "usview phantom",
				    .software_versions = "usview phantom 1",
				    .body_part = "ABDOMEN",
				    .view_code_value = vcs ? vi->code_value : NULL,
				    .view_code_scheme = vcs ? "99USVIEW" : NULL,
				    .view_code_meaning = vcs ? pl.attr : NULL,
				    .series_number = 1,
				    .instance_number = inst,
				    .burned_in_annotation = 1,
				    .region_x0 = v->crop_x,
				    .region_y0 = v->crop_y,
				    .region_x1 = v->crop_x + v->crop_side - 1,
				    .region_y1 = v->crop_y + v->crop_side - 1,
				    .delta_x_cm = v->cm_per_px,
				    .delta_y_cm = v->cm_per_px,
				};
				int rc = usv_dcm_write_us(path, &sp, err, sizeof err);
				free(px);
				if (rc) {
					fprintf(stderr, "usview phantom: %s\n", err);
					status = 1;
					break;
				}
				usv_csv_put(lf, fname);
				fprintf(lf, ",%s,%s,%s\n", usv_phantom_view_label(view), sdir,
				        v->key);
				usv_csv_put(af, fname);
				fprintf(af, ",%s,", usv_phantom_view_label(view));
				usv_csv_put(af, pl.text);
				fprintf(af, ",%s,%s,%d\n",
				        *pl.source ? usv_phantom_view_label(view) : "", pl.source,
				        pl.measure);
				written++;
			}
		}
	}
	if (fclose(af) && !status) {
		fprintf(stderr, "usview phantom: %s/annotations.csv: write error\n", out);
		status = 1;
	}
	if (fclose(lf) && !status) {
		fprintf(stderr, "usview phantom: %s/labels.csv: write error\n", out);
		status = 1;
	}
	if (!status)
		printf("wrote %ld images of %ld studies to %s\n", written, studies, out);
	usv_dcm_global_cleanup();
	return status;
}
