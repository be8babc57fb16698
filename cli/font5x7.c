/*
 * NAME
 *	font5x7.c - a 5 x 7 bitmap font for burned-in phantom annotations
 *
 * DESCRIPTION
 *	Upper-case letters, digits and . , : - + ( ) / % ^ _ =; lower
 *	case is drawn as upper case, unknown characters as blanks. Each glyph is 7 rows of 5
 *	bits (bit 4 = leftmost column).
 */
#include "phantom.h"

#include <ctype.h>
#include <string.h>

typedef struct glyph {
	char c;
	unsigned char row[7];
} glyph;

static const glyph font[] = {
    {'A', {14, 17, 17, 31, 17, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}},
    {'C', {14, 17, 16, 16, 16, 17, 14}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
    {'E', {31, 16, 16, 30, 16, 16, 31}}, {'F', {31, 16, 16, 30, 16, 16, 16}},
    {'G', {14, 17, 16, 23, 17, 17, 15}}, {'H', {17, 17, 17, 31, 17, 17, 17}},
    {'I', {14, 4, 4, 4, 4, 4, 14}},      {'J', {7, 2, 2, 2, 2, 18, 12}},
    {'K', {17, 18, 20, 24, 20, 18, 17}}, {'L', {16, 16, 16, 16, 16, 16, 31}},
    {'M', {17, 27, 21, 21, 17, 17, 17}}, {'N', {17, 17, 25, 21, 19, 17, 17}},
    {'O', {14, 17, 17, 17, 17, 17, 14}}, {'P', {30, 17, 17, 30, 16, 16, 16}},
    {'Q', {14, 17, 17, 17, 21, 18, 13}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
    {'S', {15, 16, 16, 14, 1, 1, 30}},   {'T', {31, 4, 4, 4, 4, 4, 4}},
    {'U', {17, 17, 17, 17, 17, 17, 14}}, {'V', {17, 17, 17, 17, 10, 10, 4}},
    {'W', {17, 17, 17, 21, 21, 21, 10}}, {'X', {17, 10, 10, 4, 10, 10, 17}},
    {'Y', {17, 17, 10, 4, 4, 4, 4}},     {'Z', {31, 1, 2, 4, 8, 16, 31}},
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'_', {0, 0, 0, 0, 0, 0, 31}},       {'-', {0, 0, 0, 31, 0, 0, 0}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {':', {0, 12, 12, 0, 12, 12, 0}},
    {'/', {1, 1, 2, 4, 8, 16, 16}},      {'^', {4, 10, 17, 0, 0, 0, 0}},
    {'+', {0, 4, 4, 31, 4, 4, 0}},       {',', {0, 0, 0, 0, 12, 4, 8}},
    {'(', {2, 4, 8, 8, 8, 4, 2}},        {')', {8, 4, 2, 2, 2, 4, 8}},
    {'%', {24, 25, 2, 4, 8, 19, 3}},     {'=', {0, 0, 31, 0, 31, 0, 0}},
};

void usv_phantom_glyph(uint8_t *px, int w, int h, int x, int y, int scale, uint8_t value,
                       const uint8_t *rows, int ncols, int nrows)
{
	for (int r = 0; r < nrows; r++)
		for (int b = 0; b < ncols; b++) {
			if (!(rows[r] & (1u << (ncols - 1 - b))))
				continue;
			/* the dot, and a slide of it to each diagonal neighbour that no
			 * row or column neighbour joins already */
			for (int dir = -1; dir <= 1; dir++) {
				int nb = b + dir;
				int steps = 0;
				if (dir && r + 1 < nrows && nb >= 0 && nb < ncols &&
				    (rows[r + 1] & (1u << (ncols - 1 - nb))) &&
				    !(rows[r] & (1u << (ncols - 1 - nb))) &&
				    !(rows[r + 1] & (1u << (ncols - 1 - b))))
					steps = scale;
				if (dir && !steps)
					continue;
				for (int t = 0; t <= steps; t++)
					for (int dy = 0; dy < scale; dy++)
						for (int dx = 0; dx < scale; dx++) {
							int xx = x + b * scale + dir * t + dx,
							    yy = y + r * scale + t + dy;
							if (xx >= 0 && xx < w && yy >= 0 && yy < h)
								px[(size_t)yy * w + xx] = value;
						}
			}
		}
}

void usv_phantom_text(uint8_t *px, int w, int h, int x, int y, int scale, uint8_t value,
                      const char *s)
{
	for (; *s; s++, x += USV_PHANTOM_ADV5X7 * scale) {
		char c = (char)toupper((unsigned char)*s);
		for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
			if (font[i].c == c) {
				usv_phantom_glyph(px, w, h, x, y, scale, value, font[i].row, 5, 7);
				break;
			}
	}
}
