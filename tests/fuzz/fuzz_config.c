/*
 * NAME
 *	fuzz_config.c - libFuzzer harness: usviewd's YAML configuration
 *
 * DESCRIPTION
 *	Each input is a configuration file's text, parsed over the defaults
 *	and validated by usv_config_load_string(), as usviewd does at start
 *	and on SIGHUP. A configuration that loads is also dumped (to
 *	/dev/null), which walks every field.
 */
#include "usv/config.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct usv_config cfg;
	char err[512];
	usv_config_defaults(&cfg);
	if (usv_config_load_string((const char *)data, size, "fuzz.yaml", &cfg, err, sizeof err) ==
	    0) {
		FILE *f = fopen("/dev/null", "w");
		if (f) {
			usv_config_dump(&cfg, f);
			fclose(f);
		}
	}
	return 0;
}
