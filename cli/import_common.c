/*
 * NAME
 *	import_common.c - labels, provenance and model file for the importers
 */
#include "import_common.h"

#include "usv/err.h"
#include "usv/import.h"
#include "usv/sha256.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output size of the network: num_output of the last layer that has one
 * (FC or convolution); 0 if none. */
static int output_size(usv_netdef *def)
{
	for (int i = usv_netdef_n_layers(def) - 1; i >= 0; i--) {
		const usv_layer_def *l = usv_netdef_layer(def, i);
		if (l->type == USV_LAYER_FC || l->type == USV_LAYER_CONV)
			return l->num_output;
	}
	return 0;
}

int usv_cli_import_finish(const char *cmd, usv_netdef *def, const char *importer,
                          const usv_cli_source *src, int nsrc, const char *labels_path,
                          const char *name, const char *out_path)
{
	char err[USV_ERRBUF];
	char **labels = NULL;
	int nl = 0, rc, ret = 1;
	char *prov = NULL;
	cJSON *j = NULL;
	usv_model_meta meta = *usv_netdef_meta(def);

	if (labels_path) {
		if (usv_labels_read(labels_path, &labels, &nl, err, sizeof err) < 0) {
			fprintf(stderr, "usview %s: %s\n", cmd, err);
			goto out;
		}
		int no = output_size(def);
		if (no && nl != no) {
			fprintf(stderr, "usview %s: %s: %d labels, the network has %d outputs\n",
			        cmd, labels_path, nl, no);
			goto out;
		}
		meta.labels = (const char *const *)labels;
		meta.n_labels = nl;
	}
	if (name)
		snprintf(meta.name, sizeof meta.name, "%s", name);

	j = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(j, "sources");
	if (!j || !arr || !cJSON_AddStringToObject(j, "importer", importer)) {
		fprintf(stderr, "usview %s: out of memory\n", cmd);
		goto out;
	}
	for (int i = 0; i < nsrc; i++) {
		if (!src[i].path)
			continue;
		char hex[65];
		if ((rc = usv_sha256_file(src[i].path, hex)) < 0) {
			fprintf(stderr, "usview %s: %s: %s\n", cmd, src[i].path, usv_strerror(rc));
			goto out;
		}
		cJSON *o = cJSON_CreateObject();
		if (!o) {
			fprintf(stderr, "usview %s: out of memory\n", cmd);
			goto out;
		}
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "role", src[i].role);
		cJSON_AddStringToObject(o, "path", src[i].path);
		cJSON_AddStringToObject(o, "sha256", hex);
	}
	prov = cJSON_PrintUnformatted(j);
	if (!prov) {
		fprintf(stderr, "usview %s: out of memory\n", cmd);
		goto out;
	}
	meta.provenance_json = prov;
	if ((rc = usv_netdef_set_meta(def, &meta)) < 0) {
		fprintf(stderr, "usview %s: cannot set metadata: %s\n", cmd, usv_strerror(rc));
		goto out;
	}
	if (usv_netdef_write(def, out_path, err, sizeof err) < 0) {
		fprintf(stderr, "usview %s: %s\n", cmd, err);
		goto out;
	}
	ret = 0;
out:
	cJSON_Delete(j);
	free(prov);
	usv_labels_free(labels, nl);
	return ret;
}
