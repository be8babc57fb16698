/*
 * NAME
 *	qr_tool - drive usv_qr_* (usv/dcm_qr.h) from the integration test
 *
 * SYNOPSIS
 *	qr_tool find HOST PORT CALLED CALLING TIMEOUT RANGE MODALITY MAX
 *	qr_tool get  HOST PORT CALLED CALLING TIMEOUT STUDY DIR [KILL_PID AFTER]
 *	qr_tool move HOST PORT CALLED CALLING TIMEOUT STUDY DEST_AE LISTEN_PORT DIR [AFTER]
 *
 * DESCRIPTION
 *	Prints one JSON object on stdout: rc (the function's return value),
 *	err, and the studies (find) or n_ok, n_failed and the paths given to
 *	the file callback (get, move). With KILL_PID and AFTER, the callback
 *	sends SIGKILL to KILL_PID once AFTER files have arrived (a peer going
 *	away mid-transfer); with KILL_PID 0 (get) or AFTER alone (move) it
 *	returns non-zero there instead (the caller cancels). Exit status 0 unless the arguments
 *	are wrong or set-up fails.
 */
#include "usv/dcm_qr.h"
#include "usv/dcm_scu.h"
#include "usv/dicom.h"
#include "usv/err.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
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

struct files {
	char **v;
	size_t n;
	long kill_pid;
	size_t kill_after;
};

static int on_file(const char *path, void *ud)
{
	struct files *f = ud;
	char **nv = realloc(f->v, (f->n + 1) * sizeof *nv);
	if (!nv)
		return 1;
	f->v = nv;
	f->v[f->n++] = strdup(path);
	if (f->kill_after && f->n == f->kill_after) {
		if (f->kill_pid > 0)
			kill((pid_t)f->kill_pid, SIGKILL);
		else
			return 1;
	}
	return 0;
}

static void print_retrieve(int rc, const char *err, size_t ok, size_t failed, struct files *f)
{
	printf("{\"rc\": %d, \"err\": ", rc);
	json_str(rc ? err : "");
	printf(", \"n_ok\": %zu, \"n_failed\": %zu, \"files\": [", ok, failed);
	for (size_t i = 0; i < f->n; i++) {
		printf(i ? ", " : "");
		json_str(f->v[i]);
		free(f->v[i]);
	}
	printf("]}\n");
	free(f->v);
}

static int run(int argc, char **argv);

int main(int argc, char **argv)
{
	char err[USV_ERRBUF] = "";
	if (argc < 8) {
		fprintf(stderr, "usage: see the header of qr_tool.c\n");
		return 2;
	}
	if (usv_dcm_global_init(err, sizeof err) || usv_scu_global_init(5)) {
		fprintf(stderr, "set-up: %s\n", err);
		return 2;
	}
	int rc = run(argc, argv);
	usv_dcm_global_cleanup();
	return rc;
}

static int run(int argc, char **argv)
{
	char err[USV_ERRBUF] = "";
	usv_qr_peer p = {argv[2], atoi(argv[3]), argv[4], argv[5], atoi(argv[6])};
	struct files f = {NULL, 0, 0, 0};
	size_t ok = 0, failed = 0;
	if (!strcmp(argv[1], "find") && argc == 10) {
		usv_qr_study *st = NULL;
		size_t n = 0;
		int rc =
		    usv_qr_find_studies(&p, argv[7], argv[8], (size_t)strtoul(argv[9], NULL, 10),
		                        &st, &n, err, sizeof err);
		printf("{\"rc\": %d, \"err\": ", rc);
		json_str(rc ? err : "");
		printf(", \"studies\": [");
		for (size_t i = 0; !rc && i < n; i++) {
			printf("%s{\"uid\": ", i ? ", " : "");
			json_str(st[i].study_uid);
			printf(", \"date\": ");
			json_str(st[i].study_date);
			printf(", \"modalities\": ");
			json_str(st[i].modalities);
			printf(", \"n_instances\": %d}", st[i].n_instances);
		}
		printf("]}\n");
		free(st);
		return 0;
	}
	if (!strcmp(argv[1], "get") && (argc == 9 || argc == 11)) {
		if (argc == 11) {
			f.kill_pid = atol(argv[9]);
			f.kill_after = (size_t)strtoul(argv[10], NULL, 10);
		}
		int rc = usv_qr_get_study(&p, argv[7], argv[8], on_file, &f, &ok, &failed, err,
		                          sizeof err);
		print_retrieve(rc, err, ok, failed, &f);
		return 0;
	}
	if (!strcmp(argv[1], "move") && (argc == 11 || argc == 12)) {
		if (argc == 12)
			f.kill_after = (size_t)strtoul(argv[11], NULL, 10);
		int rc = usv_qr_move_study(&p, argv[7], argv[8], atoi(argv[9]), argv[10], on_file,
		                           &f, &ok, &failed, err, sizeof err);
		print_retrieve(rc, err, ok, failed, &f);
		return 0;
	}
	fprintf(stderr, "usage: see the header of qr_tool.c\n");
	return 2;
}
