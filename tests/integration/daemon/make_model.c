/*
 * NAME
 *	make_model - write a tiny seeded model with the 11 view labels (usv_view_at())
 *
 * SYNOPSIS
 *	make_model OUT.usvm [SEED [TEST_VIEWS]]
 *
 * DESCRIPTION
 *	For daemon tests and the demo fallback: 256x256 RGB -> centre crop
 *	64x64 -> conv 3x3/4 (8 channels, ReLU) -> global average pool -> FC 11
 *	-> softmax, He-scaled random weights from SEED (default 1). Classifies
 *	in well under a millisecond, so tests measure the daemon, not the
 *	network. Its predictions mean nothing. TEST_VIEWS (1, 2 or 10) goes
 *	into meta.test_views.
 */
#include "usv/dcm_result.h"
#include "usv/err.h"
#include "usv/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 1;

static float gauss(float sd)
{
	double u = 0, v = 0;
	for (int i = 0; i < 2; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		double x = ((rng >> 11) + 0.5) / 9007199254740992.0;
		if (i == 0)
			u = x;
		else
			v = x;
	}
	return (float)(sd * sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static int add(usv_netdef *def, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
               int64_t d, float sd)
{
	int64_t shape[4] = {a, b, c, d};
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	float *w = malloc(n * sizeof *w);
	if (!w)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		w[i] = sd > 0 ? gauss(sd) : 0.01f * (float)(i % 7);
	int r = usv_netdef_add_tensor(def, name, ndim, shape, w);
	free(w);
	return r;
}

int main(int argc, char **argv)
{
	usv_netdef *def = NULL;
	usv_layer_def l;
	usv_model_meta m;
	char err[USV_ERRBUF];
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: make_model OUT [SEED]\n");
		return 2;
	}
	rng = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
	if ((r = usv_netdef_new(&def)) < 0)
		return 1;

	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "conv1");
	l.type = USV_LAYER_CONV;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "data");
	l.num_output = 8;
	l.kernel_h = l.kernel_w = 3;
	l.stride_h = l.stride_w = 4;
	l.pad_t = l.pad_b = l.pad_l = l.pad_r = 1;
	l.group = 1;
	l.has_bias = 1;
	l.act = USV_ACT_RELU;
	r = usv_netdef_add_layer(def, &l);

	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "pool");
	l.type = USV_LAYER_GLOBAL_AVEPOOL;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "conv1");
	r = r ? r : usv_netdef_add_layer(def, &l);

	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "fc");
	l.type = USV_LAYER_FC;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "pool");
	l.num_output = 11;
	l.has_bias = 1;
	r = r ? r : usv_netdef_add_layer(def, &l);

	memset(&l, 0, sizeof l);
	snprintf(l.name, sizeof l.name, "prob");
	l.type = USV_LAYER_SOFTMAX;
	l.n_inputs = 1;
	snprintf(l.inputs[0], sizeof l.inputs[0], "fc");
	r = r ? r : usv_netdef_add_layer(def, &l);

	r = r ? r : add(def, "conv1.weight", 4, 8, 3, 3, 3, sqrtf(2.0f / 27));
	r = r ? r : add(def, "conv1.bias", 1, 8, 1, 1, 1, 0);
	r = r ? r : add(def, "fc.weight", 2, 11, 8, 1, 1, 3.0f);
	r = r ? r : add(def, "fc.bias", 1, 11, 1, 1, 1, 0.3f);

	memset(&m, 0, sizeof m);
	snprintf(m.arch, sizeof m.arch, "custom");
	snprintf(m.name, sizeof m.name, "usview tiny test model (seed %llu)",
	         (unsigned long long)(argc > 2 ? strtoull(argv[2], NULL, 10) : 1));
	m.input_c = 3;
	m.input_h = m.input_w = 64;
	m.resize_h = m.resize_w = 256;
	m.channel_order = USV_RGB;
	m.scale = 1.0f / 128;
	m.mean_rgb[0] = m.mean_rgb[1] = m.mean_rgb[2] = 128;
	/* the labels: dicom's view table, in its order */
	const char *labels[11];
	for (size_t i = 0; i < 11; i++)
		labels[i] = usv_view_at(i) ? usv_view_at(i)->key : "?";
	m.n_labels = 11;
	m.labels = labels;
	m.output_layer = "prob";
	m.output_is_prob = 1;
	m.test_views = argc > 3 ? atoi(argv[3]) : 0; /* 0 = 1 */
	m.provenance_json = "{\"source\": \"tests/integration/daemon/make_model.c\"}";
	r = r ? r : usv_netdef_set_meta(def, &m);
	if (r == 0 && usv_netdef_validate(def, err, sizeof err) < 0) {
		fprintf(stderr, "make_model: %s\n", err);
		r = -EINVAL;
	}
	if (r == 0 && (r = usv_netdef_write(def, argv[1], err, sizeof err)) < 0)
		fprintf(stderr, "make_model: %s\n", err);
	usv_netdef_free(def);
	if (r < 0) {
		fprintf(stderr, "make_model: %s\n", usv_strerror(r));
		return 1;
	}
	return 0;
}
