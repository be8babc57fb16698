/*
 * NAME
 *	fuzz_csv.c - libFuzzer harness: CSV dataset files of the usview CLI
 *
 * DESCRIPTION
 *	Each input is a dataset CSV (path,label[,group][,manufacturer])
 *	loaded by usv_dataset_load() (cli/dataset.c, compiled in) from a
 *	private folder that also holds the images a.png and b/c.png, so that
 *	rows naming them get past the file hashing; a dataset that loads is
 *	split by group and its class table written to /dev/null.
 */
#include "dataset.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static int write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(p, 1, n, f);
	return fclose(f) || w != n ? -1 : 0;
}

static int setup(void)
{
	char p[128];
	snprintf(dir, sizeof dir, "/tmp/usv-fuzz-csv-%ld", (long)getpid());
	mkdir(dir, 0700);
	snprintf(p, sizeof p, "%s/b", dir);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/a.png", dir);
	if (write_file(p, "a", 1))
		return -1;
	snprintf(p, sizeof p, "%s/b/c.png", dir);
	return write_file(p, "c", 1);
}

static void cleanup(void)
{
	char p[128];
	snprintf(p, sizeof p, "%s/a.png", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/b/c.png", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/data.csv", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/b", dir);
	rmdir(p);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	char path[128], err[512];
	if (!ready) {
		if (setup())
			return 0;
		atexit(cleanup);
		ready = 1;
	}
	snprintf(path, sizeof path, "%s/data.csv", dir);
	if (write_file(path, data, size))
		return 0;
	usv_ds_opts o = {.group_sep = '_', .threads = 1};
	usv_dataset *d = NULL, *a = NULL, *b = NULL;
	if (usv_dataset_load(path, &o, &d, err, sizeof err) == 0 &&
	    usv_dataset_split(d, 0.5, 1, &a, &b) == 0) {
		FILE *f = fopen("/dev/null", "w");
		if (f) {
			const usv_dataset *sets[3] = {d, a, b};
			const char *names[3] = {"all", "a", "b"};
			usv_dataset_table(f, sets, names, 3);
			fclose(f);
		}
	}
	usv_dataset_free(b);
	usv_dataset_free(a);
	usv_dataset_free(d);
	return 0;
}
