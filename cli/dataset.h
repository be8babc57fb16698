/*
 * NAME
 *	dataset.h - labelled image sets for usview train / eval / report
 *
 * DESCRIPTION
 *	A dataset is either
 *	  - a CSV file with rows path,label[,group][,manufacturer] (an optional
 *	    header row whose first field is "path" or "file"; relative paths
 *	    are relative to the CSV's folder), or
 *	  - a folder tree label/.../file (every regular file below a label
 *	    folder whose name does not start with '.').
 *	Files are DICOM (recognised by the "DICM" preamble or a .dcm name),
 *	read through exactly the daemon's decode + crop + resize pipeline
 *	(usv_dcm_prepare), or PNG / JPEG / BMP (usv_image_load, then an area
 *	resize to the network's resize size).
 *
 *	Groups (study or patient) keep related images on one side of every
 *	split. The group is the CSV's third column; when absent it is, with
 *	group_sep set, the part of the file's base name before the first
 *	group_sep character (e.g. '_' for "<patient>_<n>.jpg"), else the
 *	file itself.
 *
 *	Labels are sorted (strcmp) unless a fixed label list is given (a
 *	model's labels at evaluation time; unknown labels are then errors).
 *
 * OWNERSHIP
 *	usv_dataset_load() and usv_dataset_split() return datasets owned by
 *	the caller (usv_dataset_free(), NULL-safe).
 */
#ifndef USV_CLI_DATASET_H
#define USV_CLI_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "usv/image.h"

#define USV_DS_MAX_ITEMS 2000000

typedef struct usv_ds_item {
	char *path; /* as resolved (openable) */
	char *name; /* as written in the CSV / relative to the folder */
	int label;  /* index into labels */
	char *group;
	char *manufacturer; /* "" when unknown */
	char sha256[65];    /* of the file's bytes */
} usv_ds_item;

typedef struct usv_dataset {
	int n;
	usv_ds_item *items;
	int n_labels;
	char **labels;
	char hash[65]; /* SHA-256 over the items' (sha256, label) lines */
} usv_dataset;

typedef struct usv_ds_opts {
	char group_sep;            /* 0 = none */
	const char *const *labels; /* fixed label list or NULL */
	int n_labels;
	int threads; /* files hashed in parallel (0, 1: one thread; at most 16) */
} usv_ds_opts;

int usv_dataset_load(const char *spec, const usv_ds_opts *o, usv_dataset **out, char *errbuf,
                     size_t errlen);
void usv_dataset_free(usv_dataset *d);

/* Splits d by group: a seeded shuffle of the groups, which go to *b until
 * it holds at least `fraction` of the images; the rest to *a. Both share
 * d's label list. */
int usv_dataset_split(const usv_dataset *d, double fraction, uint64_t seed, usv_dataset **a,
                      usv_dataset **b);

/* Keeps the items with keep[i] != 0 (in order), frees the others and
 * updates the hash. */
void usv_dataset_keep(usv_dataset *d, const char *keep);

/* Tries to load every item at size x size (the pipeline below); items
 * that fail (excluded by policy, undecodable, unreadable) are dropped with
 * one warning line each on `warn` (may be NULL). *dropped gets the count. */
int usv_dataset_drop_unloadable(usv_dataset *d, int size, FILE *warn, int *dropped);

/* Prints the per-class table (counts and shares per split), as Table 2
 * of the paper. names[i] labels sets[i]; all sets share one label list. */
void usv_dataset_table(FILE *f, const usv_dataset *const *sets, const char *const *names, int n);
/* The same as a JSON object {"labels":[..],"splits":{"name":[counts..]}}
 * (malloc'ed string, caller frees). */
char *usv_dataset_table_json(const usv_dataset *const *sets, const char *const *names, int n);

/* Loads one dataset file as RGB8 size x size through the pipeline above. */
int usv_ds_load_image(const char *path, int size, usv_image **out, char *errbuf, size_t errlen);

#endif
