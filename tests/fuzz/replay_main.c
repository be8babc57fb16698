/*
 * NAME
 *	replay_main.c - runs a fuzz harness over saved inputs, without libFuzzer
 *
 * SYNOPSIS
 *	fuzz_replay_<harness> DIR|FILE...
 *
 * DESCRIPTION
 *	Linked with one harness's LLVMFuzzerTestOneInput (and its
 *	LLVMFuzzerInitialize, when it has one) into a plain executable, so that
 *	the ordinary sanitizer build (USV_SANITIZE=ON, gcc) replays the
 *	committed corpus and crash reproducers as a ctest. Every regular file
 *	of each folder argument (not recursive, in name order) and every file
 *	argument is read whole and passed once. A crash or a sanitizer report
 *	ends the process; otherwise it prints the number of inputs and exits 0.
 *	An argument that does not exist is skipped (a harness without
 *	reproducers has no regressions folder); no argument, an unreadable
 *	file or no input at all is exit 1.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: cannot open\n", path);
		return -1;
	}
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	int bad = ferror(f) || !buf;
	fclose(f);
	if (bad) {
		free(buf);
		fprintf(stderr, "replay: %s: cannot read\n", path);
		return -1;
	}
	/* an exact-size copy, so that reads past the end are caught */
	uint8_t *exact = malloc(n ? n : 1);
	if (!exact) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 1;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	long count = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st)) {
			/* a harness may have no reproducers yet (git keeps no
			 * empty folder) */
			printf("replay: %s: absent, skipped\n", argv[i]);
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]))
				return 1;
			count++;
			continue;
		}
		struct dirent **ents;
		int n = scandir(argv[i], &ents, NULL, by_name);
		if (n < 0) {
			fprintf(stderr, "replay: %s: cannot list\n", argv[i]);
			return 1;
		}
		int rc = 0;
		for (int k = 0; k < n; k++) {
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", argv[i], ents[k]->d_name);
			if (!rc && ents[k]->d_name[0] != '.' && !stat(p, &st) &&
			    S_ISREG(st.st_mode)) {
				printf("replay: %s\n", p);
				fflush(stdout);
				rc = run_file(p);
				count++;
			}
			free(ents[k]);
		}
		free(ents);
		if (rc)
			return 1;
	}
	printf("replay: %ld inputs, no failure\n", count);
	return count > 0 ? 0 : 1;
}
