/*
 * NAME
 *	html.h - text into the self-contained HTML reports (usview report, harvest)
 *
 * CONTRACTS
 *	usv_html_esc(f, s)
 *		Writes s to f with <, >, & and " escaped as entities, so that
 *		text from files (labels, paths, annotation strings) can stand in
 *		element content and in quoted attribute values. s NULL: nothing.
 */
#ifndef USV_CLI_HTML_H
#define USV_CLI_HTML_H

#include <stdio.h>

void usv_html_esc(FILE *f, const char *s);

#endif
