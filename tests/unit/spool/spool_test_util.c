/*
 * NAME
 *	spool_test_util.c - scaffolding shared by the spool unit tests
 *	(see spool_test_util.h)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "spool_test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char spool_root[PATH_MAX];

int spool_setup(void **state)
{
	snprintf(spool_root, sizeof spool_root, "/tmp/usv-spool-XXXXXX");
	assert_non_null(mkdtemp(spool_root));
	assert_true(strlen(spool_root) + sizeof "/spool" <= sizeof spool_root);
	strcat(spool_root, "/spool");
	(void)state;
	return 0;
}

int spool_teardown(void **state)
{
	char cmd[PATH_MAX + 32];
	char *slash = strrchr(spool_root, '/');
	*slash = 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", spool_root);
	assert_int_equal(system(cmd), 0);
	(void)state;
	return 0;
}

size_t spool_count_dir(const char *sub)
{
	char p[PATH_MAX + 256];
	snprintf(p, sizeof p, "%s/%s", spool_root, sub);
	DIR *d = opendir(p);
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

usv_spool *spool_open_test(void)
{
	usv_spool *sp = NULL;
	char err[256];
	assert_int_equal(usv_spool_open(spool_root, &sp, err, sizeof err), 0);
	return sp;
}
