/*
 * NAME
 *	import.h - build usview networks from Caffe and TensorFlow Lite files
 *
 * SYNOPSIS
 *	#include "usv/import.h"
 *
 * DESCRIPTION
 *	usv_import_caffe() reads a Caffe deploy prototxt (text format) and a
 *	caffemodel (binary protobuf; the current `layer` messages and the
 *	legacy V1 `layers` messages with enum layer types are both read).
 *	  arch == NULL: the network is built from the prototxt: Convolution,
 *	    ReLU, LRN (across or within channel), Pooling (MAX, AVE,
 *	    global_pooling AVE), InnerProduct, Softmax, Dropout, Concat,
 *	    Eltwise SUM, Flatten; input from `input` + `input_shape` /
 *	    `input_dim` or an Input layer. Layers keep their Caffe names; an
 *	    in-place layer (top == bottom) is a layer of its own whose output
 *	    replaces the blob for the layers after it. The network input is
 *	    the blob "data".
 *	  arch = "caffenet" / "vgg16": the built-in architecture
 *	    (usv_netdef_builtin(), classes = rows of the fc8 weights) whose
 *	    tensors are replaced, by Caffe layer name, by the caffemodel's.
 *	mean_path (optional): a BlobProto .binaryproto or a .npy [3,H,W]
 *	(float32 or float64), BGR like the network input; it becomes the
 *	model's mean image and H x W its resize size. Metadata: BGR, scale 1,
 *	no labels (the caller sets them), output layer = the last layer,
 *	output_is_prob when that layer is a Softmax.
 *
 *	usv_import_tflite() reads a TensorFlow Lite flatbuffer (subgraph 0)
 *	made of CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D,
 *	FULLY_CONNECTED, ADD, CONCATENATION, SOFTMAX, RESHAPE / SQUEEZE of a
 *	1x1 map, RELU, RELU6, QUANTIZE / DEQUANTIZE (identities: the engine is
 *	float). Quantized weights are dequantized (scale * (q - zero_point),
 *	per tensor or per output channel); int32 biases are scaled by input
 *	scale * weight scale. Weights are transposed from OHWI / 1HWO to
 *	[out, in/group, kh, kw]. head_path (optional) is a second model whose
 *	input is fed by the first model's output (Coral embedding extractor +
 *	head layers). Metadata: RGB, input size = resize size; mean and scale
 *	from the input tensor's quantization (uint8 scale s, zero point z
 *	mean x = s * (q - z), so mean = z and scale = s; float input: 127.5 and
 *	1/127.5), output_is_prob when the last op is SOFTMAX.
 *
 *	Layer and tensor names longer than USV_NAME_MAX - 8 are shortened.
 *
 * OWNERSHIP
 *	*out is the caller's; release with usv_netdef_free().
 *
 * DIAGNOSTICS
 *	0 or a negative code: -USV_ERR_FORMAT (malformed, truncated),
 *	-USV_ERR_UNSUPPORTED (an unknown layer or op, a feature we do not
 *	implement), -USV_ERR_LIMIT, -ENOENT, -ENOMEM, -EIO. errbuf receives one
 *	line naming the file and the reason (and the layer or op).
 */
#ifndef USV_IMPORT_H
#define USV_IMPORT_H

#include "usv/nn.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Files larger than this are refused (VGG16's caffemodel is 553 MB). */
#define USV_IMPORT_MAX_FILE ((size_t)2 << 30)

int usv_import_caffe(const char *prototxt, const char *caffemodel, const char *arch,
                     const char *mean_path, usv_netdef **out, char *errbuf, size_t errlen);

int usv_import_tflite(const char *path, const char *head_path, usv_netdef **out, char *errbuf,
                      size_t errlen);

/* Reads a label file: one label per line (trailing CR/LF and blanks
 * stripped), at most USV_MAX_LABELS of at most USV_LABEL_MAX - 1 bytes.
 * *labels is an array of *n malloc()ed strings; free with
 * usv_labels_free(). */
int usv_labels_read(const char *path, char ***labels, int *n, char *errbuf, size_t errlen);
void usv_labels_free(char **labels, int n);

#ifdef __cplusplus
}
#endif
#endif
