/*
 * NAME
 *	csv.h - a small CSV reader and writer helper for the usview CLI
 *
 * DESCRIPTION
 *	usv_csv_read() reads a whole file (at most USV_CSV_MAX_BYTES) into
 *	rows of fields. Fields are separated by commas; a field may be
 *	double-quoted ("" inside quotes is a quote). Empty lines and lines
 *	starting with '#' are skipped; CR before LF is dropped.
 *
 *	usv_csv_put() writes one field quoted when it needs to be.
 *
 * OWNERSHIP
 *	The usv_csv belongs to the caller: usv_csv_free() (NULL-safe).
 */
#ifndef USV_CLI_CSV_H
#define USV_CLI_CSV_H

#include <stddef.h>
#include <stdio.h>

#define USV_CSV_MAX_BYTES (256u << 20)
#define USV_CSV_MAX_FIELDS 256

typedef struct usv_csv_row {
	int n;
	char **f;
} usv_csv_row;

typedef struct usv_csv {
	int n_rows;
	usv_csv_row *rows;
	char *buf;
} usv_csv;

int usv_csv_read(const char *path, usv_csv **out, char *errbuf, size_t errlen);
void usv_csv_free(usv_csv *c);
/* Index of the column named name in row 0, or -1. */
int usv_csv_col(const usv_csv *c, const char *name);
void usv_csv_put(FILE *f, const char *s);

#endif
