/*
 * ref_mlp.h - the naive forward pass the training tests check usv_head
 * against: FC layers in double, ReLU between them (times a dropout mask
 * when given), written independently of nn/src/train.c.
 */
#ifndef USV_TEST_REF_MLP_H
#define USV_TEST_REF_MLP_H

/* The logits z[dims[L]] of sample i of x ([n][dims[0]]); masks: NULL, or
 * per hidden layer l NULL or [n][dims[l + 1]]. Layers of at most 64. */
static void ref_logits(int L, const int *dims, double *const *w, double *const *b, const float *x,
                       float *const *masks, int i, double *z)
{
	double a[64];
	for (int k = 0; k < dims[0]; k++)
		a[k] = x[i * dims[0] + k];
	for (int l = 0; l < L; l++) {
		for (int o = 0; o < dims[l + 1]; o++) {
			double s = b[l][o];
			for (int k = 0; k < dims[l]; k++)
				s += w[l][o * dims[l] + k] * a[k];
			z[o] = s;
		}
		if (l < L - 1)
			for (int o = 0; o < dims[l + 1]; o++) {
				double r = z[o] > 0 ? z[o] : 0;
				if (masks && masks[l])
					r *= masks[l][i * dims[l + 1] + o];
				a[o] = r;
			}
	}
}

#endif
