/*
 * NAME
 *	html.h - text into HTML (usview report, the harvest report, the QA page)
 *
 * CONTRACTS
 *	usv_html_esc(f, s)
 *		Writes s to f with <, >, &, " and ' escaped as entities, and
 *		control characters other than tab as spaces, so that text from
 *		files and DICOM attributes (labels, paths, annotation strings,
 *		station names) can stand in element content and in quoted
 *		attribute values. s NULL: nothing.
 */
#ifndef USV_HTML_H
#define USV_HTML_H

#include <stdio.h>

void usv_html_esc(FILE *f, const char *s);

#endif
