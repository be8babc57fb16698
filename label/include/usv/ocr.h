/*
 * NAME
 *	ocr.h - reading burned-in screen text with Tesseract
 *
 * SYNOPSIS
 *	#include "usv/ocr.h"
 *
 * DESCRIPTION
 *	One usv_ocr per thread (a Tesseract engine is not shared). Reads
 *	the text lines of one box of a frame: the box is scanned for rows
 *	and columns of bright, text-sized connected pixels (scanner fonts:
 *	light text on black), each line is cut out with a small margin,
 *	upscaled, thresholded and inverted to black on white, and read by
 *	Tesseract as a single line. Nothing outside the box is ever looked
 *	at, and the library never logs text it reads.
 *
 *	Not read: a lone glyph (marker arrows, icons), a line cut by the
 *	box's top or bottom edge where that edge is inside the frame, components too large to be
 *text (sector edges, grey bars, logos; blanked in the line image). Dark text on a light box (a
 *highlighted field) is not found. Tesseract's own messages go to /dev/null. While a usv_ocr call
 *runs, the calling thread's OpenMP max-active-levels is 0 (Tesseract's parallel regions run on one
 *thread: one engine per thread already uses the cores); the previous value is restored on return.
 *	Cost (bench/ocr_bench.sh): about 6 ms of CPU per line, 45 ms per
 *	EPIQ-like frame with 7 lines; an empty box costs no Tesseract call.
 *
 *	Line cache: each usv_ocr remembers the last USV_OCR_CACHE_LINES
 *	line images it read and what Tesseract answered (least recently used
 *	out first; the table is part of the usv_ocr, nothing is allocated
 *	per call). The key is the exact image Tesseract would be given (for
 *	bitmap fonts, thresholded black on white) as two independent 64-bit
 *	hashes of its bytes with its width and height, so a line drawn the
 *	same way again (a scanner's settings column: "C5-1", "Abd Gen",
 *	"P Low") is answered without Tesseract, with the same text and
 *	confidence. The line's box is always that of the current frame.
 *
 * CONTRACTS
 *	usv_ocr_new(tessdata_dir, &o, err, errlen)
 *		tessdata_dir NULL: Tesseract's default (the TESSDATA_PREFIX
 *		environment variable, else the packaged folder); language
 *		"eng". 0 and *o (caller frees with usv_ocr_free), or -ENOENT
 *		(no eng.traineddata: err says where it looked) / -ENOMEM.
 *	usv_ocr_read_box(o, img, box, lines, max, &n, err, errlen)
 *		img c = 1 or 3; box inside img (else -EINVAL). Writes up to
 *		max lines, top to bottom, each with its box in img
 *		coordinates, its text (UTF-8, trimmed, at most
 *		USV_OCR_LINE_MAX - 1 bytes) and Tesseract's mean word
 *		confidence 0..100; lines that read as empty are skipped. *n
 *		gets the count. 0, -EINVAL, -ENOMEM or -EIO (Tesseract
 *		failed; err says so).
 *	usv_ocr_set_word_cache(o, on)
 *		Off by default. On: a line that is not in the line cache is
 *		split into words (glyphs closer than a third of the line
 *		height), and when every word's image was read before in
 *		some line (Tesseract's words matched ours one to one), the
 *		line is answered with those words' texts joined by one space
 *		and the mean of their confidences, without Tesseract (counted
 *		as a hit). Settings columns whose numbers change from frame
 *		to frame ("G 78", "MI 1.1 TIS 0.6") and labels typed from a
 *		small vocabulary then rarely need Tesseract. The text may
 *		differ from a fresh read of the whole line where Tesseract
 *		would read a word differently in another context. A table of
 *		4 x USV_OCR_CACHE_LINES words, least recently used out first,
 *		allocated when first turned on. 0, -EINVAL, -ENOMEM.
 *	usv_ocr_cache_stats(o, &hits, &misses)
 *		Lines answered from the cache and lines given to Tesseract
 *		since usv_ocr_new; either pointer may be NULL; o NULL gives 0.
 *	usv_ocr_free(o)
 *		NULL-safe.
 */
#ifndef USV_OCR_H
#define USV_OCR_H

#include <stddef.h>

#include "usv/crop.h"
#include "usv/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USV_OCR_LINE_MAX 256
#define USV_OCR_MAX_LINES 64
#define USV_OCR_CACHE_LINES 256

typedef struct usv_ocr usv_ocr;

typedef struct usv_ocr_line {
	usv_box box;
	int conf;
	char text[USV_OCR_LINE_MAX];
} usv_ocr_line;

int usv_ocr_new(const char *tessdata_dir, usv_ocr **out, char *err, size_t errlen);
int usv_ocr_read_box(usv_ocr *o, const usv_image *img, const usv_box *box, usv_ocr_line *lines,
                     size_t max, size_t *n, char *err, size_t errlen);
int usv_ocr_set_word_cache(usv_ocr *o, int on);
void usv_ocr_cache_stats(const usv_ocr *o, size_t *hits, size_t *misses);
void usv_ocr_free(usv_ocr *o);

#ifdef __cplusplus
}
#endif
#endif
