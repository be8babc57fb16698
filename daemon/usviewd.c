/*
 * usviewd - the usview DICOM node (receiver, classifier, result sender).
 */
#include <stdio.h>

int main(int argc, char **argv)
{
	(void)argc, (void)argv;
	fprintf(stderr, "usviewd: not built yet\n");
	return 1;
}
