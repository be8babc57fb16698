#!/usr/bin/python3
"""make_corpus.py - writes the seed corpora of tests/fuzz/corpus/<harness>/

Usage: tests/fuzz/make_corpus.py SHARED_DIR USVIEW MAKE_MODEL
  e.g. tests/fuzz/make_corpus.py ../shared build/cli/usview \
       build/tests/integration/daemon/make_model

Small files only (the whole corpus stays well under 5 MB): tiny generated
DICOM instances in every transfer syntax the worker decodes (DCMTK's
dcmconv, dcmcrle, dcmcjpeg, dcmcjpls), a few small real ones from
SHARED_DIR/data/dicom/us, the shipped configuration, the Caffe prototxts
and the small CaffeNet caffemodel, the smallest MobileNet .tflite, model
files from MAKE_MODEL and `USVIEW import-caffe`, small .npy files, small
PNG / JPEG / BMP images and dataset CSVs. Needs Debian's python3-pydicom,
-numpy and -pil and the dcmtk tools.
"""
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SHARED, USVIEW, MAKE_MODEL = sys.argv[1], sys.argv[2], sys.argv[3]
# the request UIDs of fuzz_cstore.cpp
US_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"
INST = "1.2.826.0.1.3680043.8.498.1"
CSTORE_TS = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
             "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
             "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
             "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
             "1.2.840.10008.1.2.5"]


def out(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tiny_us(path, rgb, frames, bits=8):
    rng = np.random.default_rng(7)
    ds = Dataset()
    ds.SOPClassUID = US_CLASS
    if frames > 1:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
        ds.NumberOfFrames = frames
    ds.SOPInstanceUID = INST
    ds.Modality = "US"
    ds.PatientName = "Fuzz^Seed"
    ds.Rows, ds.Columns = 12, 16
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    shape = (frames, 12, 16, 3) if rgb else (frames, 12, 16)
    px = rng.integers(0, 1 << bits, size=shape, dtype=np.uint8 if bits == 8 else np.uint16)
    if rgb:  # grey-ish colour: below the worker's colour-overlay threshold
        px = np.clip(px[..., :1].astype(int) + rng.integers(-20, 20, size=shape), 0, 255)
        px = px.astype(np.uint8)
    ds.PixelData = px.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = INST
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)


def dicom_seeds(tmp):
    files = []
    for name, rgb, frames in (("grey", False, 1), ("rgb", True, 1), ("grey3f", False, 3)):
        base = os.path.join(tmp, name + ".dcm")
        tiny_us(base, rgb, frames)
        files.append(base)
        conv = [("ivrle", ["dcmconv", "+ti"]), ("evrbe", ["dcmconv", "+tb"]),
                ("deflate", ["dcmconv", "+td"]), ("rle", ["dcmcrle"]),
                ("jpeg50", ["dcmcjpeg", "+eb"]), ("jpeg51", ["dcmcjpeg", "+ee"]),
                ("jpeg57", ["dcmcjpeg", "+el"]), ("jpeg70", ["dcmcjpeg", "+e1"]),
                ("jpls80", ["dcmcjpls", "+el"]), ("jpls81", ["dcmcjpls", "+en"])]
        for tag, cmd in conv:
            dst = os.path.join(tmp, "%s_%s.dcm" % (name, tag))
            if subprocess.run(cmd + [base, dst], capture_output=True).returncode == 0:
                files.append(dst)
    g16 = os.path.join(tmp, "grey12bit.dcm")
    tiny_us(g16, False, 1, bits=12)
    files.append(g16)
    us = os.path.join(SHARED, "data", "dicom", "us")
    for n in ("robyoung-dicom-test-files__ExplVR_BigEnd.dcm", "pydicom-data__OBXXXX1A_rle.dcm",
              "pydicom-data__US1_J2KI.dcm", "cwil__no-pixel-spacing.dcm"):
        files.append(os.path.join(us, n))
    for f in files:
        data = open(f, "rb").read()
        name = os.path.basename(f)
        out("dicom_prepare", name, data)
        # C-STORE: the transfer syntax index, then the data set (no meta)
        ds = pydicom.dcmread(f)
        ts = str(ds.file_meta.TransferSyntaxUID)
        if ts not in CSTORE_TS:
            continue
        fp = io.BytesIO(data)
        pydicom.filereader.read_preamble(fp, False)
        pydicom.filereader._read_file_meta_info(fp)
        out("cstore", name, bytes([CSTORE_TS.index(ts)]) + fp.read())


def main():
    # rewrites its own seeds; the inputs libFuzzer added (-merge=1, named by
    # their SHA-1) stay
    with tempfile.TemporaryDirectory() as tmp:
        dicom_seeds(tmp)
        # configuration
        root = os.path.dirname(os.path.dirname(HERE))
        out("config", "usviewd.yaml", open(os.path.join(root, "config", "usviewd.yaml"), "rb").read())
        out("config", "small.yaml", b"listen:\n  port: 11112\n  ae_title: USVIEW\n"
            b"allowed_peers: [{ae_title: PACS, host: 10.1.2.3}]\nspool:\n  retention_h: {done: 1.5, sent: 0}\n"
            b"model:\n  workers: 2\n  precision: fp32\nframes:\n  policy: first\n")
        out("config", "empty.yaml", b"")
        # Caffe
        caffe = os.path.join(SHARED, "models", "caffe")
        for n in sorted(os.listdir(caffe)):
            if n.endswith(".prototxt"):
                out("caffe_prototxt", n, open(os.path.join(caffe, n), "rb").read())
        out("caffemodel", "mini_caffenet.caffemodel",
            open(os.path.join(caffe, "mini_caffenet.caffemodel"), "rb").read())
        # TFLite: the smallest MobileNet only
        out("tflite", "mobilenet_v1_0.25_128_quant.tflite",
            open(os.path.join(SHARED, "models", "mobilenet", "mobilenet_v1_0.25_128_quant.tflite"),
                 "rb").read())
        # model files
        for seed in ("1", "2"):
            p = os.path.join(tmp, "m%s.usvm" % seed)
            subprocess.run([MAKE_MODEL, p, seed], check=True, capture_output=True)
            out("model", "make_model_%s.usvm" % seed, open(p, "rb").read())
        p = os.path.join(tmp, "mini.usvm")
        subprocess.run([USVIEW, "import-caffe", "--prototxt",
                        os.path.join(caffe, "mini_caffenet_deploy.prototxt"), "--weights",
                        os.path.join(caffe, "mini_caffenet.caffemodel"), "-o", p],
                       check=True, capture_output=True)
        out("model", "mini_caffenet.usvm", open(p, "rb").read())
        # .npy
        rng = np.random.default_rng(3)
        for name, arr in (("f32_3x4x4", rng.random((3, 4, 4), dtype=np.float32)),
                          ("f64_3x2x2", rng.random((3, 2, 2))),
                          ("f32_be", rng.random((2, 3)).astype(">f4")),
                          ("f32_fortran", np.asfortranarray(rng.random((2, 3), dtype=np.float32))),
                          ("f32_scalar", np.float32(1.5).reshape(())),
                          ("u8_vec", np.arange(5, dtype=np.uint8))):
            b = io.BytesIO()
            np.save(b, arr)
            out("npy", name + ".npy", b.getvalue())
        # images
        px = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
        im = Image.fromarray(px)
        for name, img, fmt, kw in (("rgb.png", im, "PNG", {}), ("grey.png", im.convert("L"), "PNG", {}),
                                   ("rgba.png", im.convert("RGBA"), "PNG", {}),
                                   ("pal.png", im.convert("P"), "PNG", {}),
                                   ("grey16.png", Image.fromarray(px[:, :, 0].astype(np.uint16) * 257), "PNG", {}),
                                   ("rgb.jpg", im, "JPEG", {"quality": 80}),
                                   ("grey.jpg", im.convert("L"), "JPEG", {}),
                                   ("prog.jpg", im, "JPEG", {"progressive": True}),
                                   ("rgb24.bmp", im, "BMP", {}), ("rgba32.bmp", im.convert("RGBA"), "BMP", {}),
                                   ("grey8.bmp", im.convert("L"), "BMP", {})):
            b = io.BytesIO()
            img.save(b, fmt, **kw)
            out("image", name, b.getvalue())
        # dataset CSVs (fuzz_csv.c provides a.png and b/c.png)
        out("csv", "header.csv", b"path,label,group,manufacturer\na.png,cat,p1,Acme\nb/c.png,dog,p2,\n")
        out("csv", "plain.csv", b"a.png,x\n# comment\n\nb/c.png,y\r\n")
        out("csv", "quoted.csv", b'"a.png","la""bel",g_1\n"b/c.png",other,g_2,"M, Inc"\n')


main()
