#!/usr/bin/env python3
"""Decoding of encodings the shared files do not cover, written by pydicom
(and dcmconv for deflate), checked against the pixel values written:
MONOCHROME1 (inverted: 255 - v), RGB with planar configuration 1, 12-bit
MONOCHROME1/2 (stored range scaled to 8 bits: v >> 4; no VOI window even
when the file has one), deflated explicit VR little endian, and a
MONOCHROME2 file with a VOI window (ignored: identity for 8-bit data)."""
import os
import subprocess
import sys
import tempfile

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

USVIEW = os.environ["USVIEW"]
bad = 0


def write(path, arr, pi, bits=8, planar=None, extra=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel = 3 if arr.ndim == 3 else 1
    ds.PhotometricInterpretation = pi
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    data = arr
    if planar is not None:
        ds.PlanarConfiguration = planar
        if planar == 1:
            data = np.ascontiguousarray(arr.transpose(2, 0, 1))
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = data.astype("<u2" if bits > 8 else np.uint8).tobytes()
    ds.save_as(path, write_like_original=False)


def raw(path):
    out = path + ".npy"
    r = subprocess.run([USVIEW, "preview", path, "--raw", out], capture_output=True, text=True)
    if r.returncode:
        return None, r.stderr.strip()
    return np.load(out).astype(int), ""


def check(name, path, want, tol=0):
    global bad
    got, err = raw(path)
    if got is None or got.shape != want.shape:
        print(f"FAIL {name}: {err or got.shape}")
        bad += 1
        return
    d = int(np.abs(got - want.astype(int)).max())
    ok = d <= tol
    bad += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max diff {d} (tolerance {tol})")


def main():
    tmp = tempfile.mkdtemp(prefix="usv-synth-")
    rng = np.random.default_rng(5)
    g = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    c = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    w = rng.integers(0, 4096, (120, 160), dtype=np.uint16)

    p = os.path.join(tmp, "mono1.dcm")
    write(p, g, "MONOCHROME1")
    check("MONOCHROME1 is inverted", p, 255 - g.astype(int))

    p = os.path.join(tmp, "planar1.dcm")
    write(p, c, "RGB", planar=1)
    check("RGB planar configuration 1", p, c)

    p = os.path.join(tmp, "win.dcm")
    write(p, g, "MONOCHROME2", extra={"WindowCenter": 40, "WindowWidth": 80})
    check("8-bit MONOCHROME2 with a VOI window: identity", p, g)

    p = os.path.join(tmp, "w12.dcm")
    write(p, w, "MONOCHROME2", bits=12, extra={"WindowCenter": 100, "WindowWidth": 50})
    # the stored range scaled to 8 bits: floor(v * 256 / 4096) = v >> 4
    check("12-bit MONOCHROME2: v >> 4, VOI window ignored", p, w.astype(int) >> 4)
    p = os.path.join(tmp, "mono1-12.dcm")
    write(p, w, "MONOCHROME1", bits=12)
    check("12-bit MONOCHROME1: 255 - (v >> 4)", p, 255 - (w.astype(int) >> 4))

    src = os.path.join(tmp, "plain.dcm")
    write(src, c, "RGB", planar=0)
    p = os.path.join(tmp, "deflated.dcm")
    subprocess.run(["dcmconv", "+td", src, p], check=True)
    with open(p, "rb") as fh:
        assert b"1.2.840.10008.1.2.1.99" in fh.read(400)
    check("deflated explicit VR little endian", p, c)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
