/*
 * NAME
 *	fuzz_image.c - libFuzzer harness: PNG, JPEG and BMP input images
 *
 * DESCRIPTION
 *	Each input is an image file read by usv_image_load() (the format is
 *	found from the content); an image that loads is converted to grey,
 *	cropped and area-resized as the dataset pipeline does.
 */
#include "fuzz_common.h"
#include "usv/image.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[256];
	int fd = fuzz_file_open(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	usv_image *img = NULL, *grey = NULL, *crop = NULL, *small = NULL;
	if (usv_image_load(path, &img, err, sizeof err) == 0) {
		usv_image_to_grey(img, 3, &grey);
		usv_image_crop(img, img->w / 4, img->h / 4, img->w / 2 + 1, img->h / 2 + 1, &crop);
		usv_image_resize_area(img, 17, 13, &small);
	}
	usv_image_free(small);
	usv_image_free(crop);
	usv_image_free(grey);
	usv_image_free(img);
	fuzz_file_close(fd);
	return 0;
}
