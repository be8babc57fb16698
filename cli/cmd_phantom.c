/*
 * NAME
 *	cmd_phantom.c - usview phantom: labelled synthetic ultrasound DICOM studies
 *
 * SYNOPSIS
 *	usview phantom --out DIR --studies N [--manufacturer philips|toshiba]
 *	               [--seed S] [--per-view K] [--first-study I]
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
 */
#include "cli.h"
#include "csv.h"
#include "opt.h"
#include "phantom.h"

#include "usv/dcm_result.h"
#include "usv/dcm_write.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: usview phantom --out DIR --studies N [--manufacturer philips|toshiba]\n"
	           "                      [--seed S] [--per-view K] [--first-study I]\n");
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
	enum { OPT_MANUFACTURER = 256, OPT_STUDIES, OPT_PER_VIEW, OPT_FIRST_STUDY, OPT_SEED };
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},
	    {"manufacturer", required_argument, NULL, OPT_MANUFACTURER},
	    {"studies", required_argument, NULL, OPT_STUDIES},
	    {"per-view", required_argument, NULL, OPT_PER_VIEW},
	    {"first-study", required_argument, NULL, OPT_FIRST_STUDY},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *out = NULL, *manu = NULL;
	long studies = -1, per_view = 1, first = 0, seed = 1;
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
		char pname[64], pid[64], acc[32], date[16], sid[16];
		snprintf(pname, sizeof pname, "PHANTOM^S%05ld", s);
		snprintf(pid, sizeof pid, "PH%ld-%05ld", seed, s);
		snprintf(acc, sizeof acc, "PHA%ld%05ld", seed % 1000, s);
		/* one study per day from 2016-01-01, day within a 28-day month */
		snprintf(date, sizeof date, "2016%02ld%02ld", 1 + (s / 28) % 12, 1 + s % 28);
		snprintf(sid, sizeof sid, "%ld", s);
		int inst = 0;
		for (int view = 0; view < USV_PHANTOM_N_VIEWS && !status; view++) {
			for (long k = 0; k < per_view; k++) {
				inst++;
				uint64_t isd = (uint64_t)seed * 0x9E3779B97F4A7C15ULL ^
				               ((uint64_t)s << 20) ^ ((uint64_t)view << 12) ^
				               (uint64_t)k;
				uint8_t *px = NULL;
				if (usv_phantom_render(v, view, isd, &px)) {
					fprintf(stderr, "usview phantom: out of memory\n");
					status = 1;
					break;
				}
				char sop[USV_UID_MAX], fname[96];
				uid(sop, seeds, "instance", s, inst);
				snprintf(fname, sizeof fname, "%s/I%04d.dcm", sdir, inst);
				snprintf(path, sizeof path, "%s/%s", out, fname);
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
				    .image_comments = "Synthetic image made by usview phantom; "
				                      "not a patient",
				    .manufacturer = v->manufacturer,
				    .model_name = v->model,
				    .institution = "usview phantom",
				    .software_versions = "usview phantom 1",
				    .body_part = "ABDOMEN",
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
				written++;
			}
		}
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
