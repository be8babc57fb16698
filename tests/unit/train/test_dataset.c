/*
 * NAME
 *	test_dataset.c - unit tests of cli/dataset.c and cli/csv.c
 *
 * DESCRIPTION
 *	A CSV dataset of small files: labels sorted, groups from the third
 *	column or from the file name before a separator, quoted fields; group
 *	splits never put one group on both sides, keep every image once,
 *	reach the requested share within one group's size and are seeded;
 *	a label outside a fixed list is an error naming the row.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"

static char dir[256];

static void make_files(int with_group)
{
	char p[512];
	snprintf(p, sizeof p, "%s/ds%d.csv", dir, with_group);
	FILE *c = fopen(p, "w");
	assert_non_null(c);
	fprintf(c, "path,label,group,manufacturer\n");
	int k = 0;
	for (int g = 0; g < 37; g++) {
		int m = 1 + (g * 7) % 10;
		for (int i = 0; i < m; i++, k++) {
			char f[512];
			snprintf(f, sizeof f, "%s/%d_%d.png", dir, g, i);
			FILE *x = fopen(f, "w");
			assert_non_null(x);
			fprintf(x, "file %d %d\n", g, i);
			fclose(x);
			const char *lab = k % 3 == 0 ? "b" : k % 3 == 1 ? "a" : "c,x";
			if (with_group)
				fprintf(c, "%d_%d.png,\"%s\",P%d,philips\n", g, i, lab, g);
			else
				fprintf(c, "%d_%d.png,\"%s\"\n", g, i, lab);
		}
	}
	fclose(c);
}

static int count_in(const usv_dataset *d, const char *group)
{
	int n = 0;
	for (int i = 0; i < d->n; i++)
		n += !strcmp(d->items[i].group, group);
	return n;
}

static void test_load_and_split(void **state)
{
	(void)state;
	char p[512], err[512];
	snprintf(p, sizeof p, "%s/ds1.csv", dir);
	usv_dataset *d = NULL;
	assert_int_equal(usv_dataset_load(p, NULL, &d, err, sizeof err), 0);
	assert_int_equal(d->n_labels, 3);
	assert_string_equal(d->labels[0], "a");
	assert_string_equal(d->labels[1], "b");
	assert_string_equal(d->labels[2], "c,x"); /* quoted comma */
	assert_string_equal(d->items[0].group, "P0");
	assert_string_equal(d->items[0].manufacturer, "philips");
	assert_int_equal(strlen(d->hash), 64);
	for (uint64_t seed = 1; seed <= 5; seed++) {
		usv_dataset *a = NULL, *b = NULL, *a2 = NULL, *b2 = NULL;
		assert_int_equal(usv_dataset_split(d, 0.25, seed, &a, &b), 0);
		assert_int_equal(a->n + b->n, d->n);
		for (int i = 0; i < b->n; i++)
			assert_int_equal(count_in(a, b->items[i].group), 0);
		/* reached within one group (at most 10 images) of 25 % */
		assert_true(b->n >= 0.25 * d->n - 0.5 && b->n <= 0.25 * d->n + 10.5);
		assert_int_equal(usv_dataset_split(d, 0.25, seed, &a2, &b2), 0);
		assert_string_equal(b->hash, b2->hash);
		usv_dataset_free(a);
		usv_dataset_free(b);
		usv_dataset_free(a2);
		usv_dataset_free(b2);
	}
	usv_dataset *x1, *y1, *x2, *y2;
	assert_int_equal(usv_dataset_split(d, 0.3, 1, &x1, &y1), 0);
	assert_int_equal(usv_dataset_split(d, 0.3, 2, &x2, &y2), 0);
	assert_string_not_equal(y1->hash, y2->hash);
	usv_dataset_free(x1);
	usv_dataset_free(y1);
	usv_dataset_free(x2);
	usv_dataset_free(y2);
	usv_dataset_free(d);
}

static void test_group_sep_and_fixed_labels(void **state)
{
	(void)state;
	char p[512], err[512];
	snprintf(p, sizeof p, "%s/ds0.csv", dir);
	usv_ds_opts o = {.group_sep = '_'};
	usv_dataset *d = NULL;
	assert_int_equal(usv_dataset_load(p, &o, &d, err, sizeof err), 0);
	assert_string_equal(d->items[0].group, "0");
	assert_string_equal(d->items[d->n - 1].group, "36");
	assert_string_equal(d->items[0].manufacturer, "");
	usv_dataset_free(d);
	const char *only[2] = {"a", "b"};
	usv_ds_opts f = {.labels = only, .n_labels = 2};
	assert_int_equal(usv_dataset_load(p, &f, &d, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "c,x"));
	/* a missing file is an error naming it */
	snprintf(p, sizeof p, "%s/missing.csv", dir);
	assert_true(usv_dataset_load(p, NULL, &d, err, sizeof err) < 0);
	assert_non_null(strstr(err, "missing.csv"));
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/usv-test-dataset-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	make_files(1);
	make_files(0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_and_split),
	    cmocka_unit_test(test_group_sep_and_fixed_labels),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
