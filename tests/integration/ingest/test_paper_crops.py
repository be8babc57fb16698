#!/usr/bin/env python3
"""Synthetic Toshiba Aplio XG (716x537) and Philips EPIQ (1024x768) instances,
written by pydicom, come out of `usview preview` with the paper's crop boxes:
Toshiba central 372x372 at (172, 82), Philips central 600x600 at (212, 84).
The Philips instance also carries a Sequence of Ultrasound Regions whose 2-D
region differs from the rule box, to show that the rule wins; a third image
(unknown vendor, region only) must be cropped to its 2-D region, and a fourth
(no rule, no region) to the largest centred square. The 256x256 output is
compared with numpy cropping + OpenCV INTER_AREA."""
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

USVIEW = os.environ["USVIEW"]


def make(path, manufacturer, model, cols, rows, regions=(), seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(rows, cols), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    seq = []
    for (x0, y0, x1, y1, fmt) in regions:
        it = Dataset()
        it.RegionSpatialFormat = fmt
        it.RegionDataType = 1
        it.RegionFlags = 0
        it.RegionLocationMinX0, it.RegionLocationMinY0 = x0, y0
        it.RegionLocationMaxX1, it.RegionLocationMaxY1 = x1, y1
        seq.append(it)
    if seq:
        ds.SequenceOfUltrasoundRegions = seq
    ds.PixelData = img.tobytes()
    ds.save_as(path, write_like_original=False)
    return img


CASES = [
    # name, manufacturer, model, cols, rows, regions, expected box, source
    ("toshiba", "TOSHIBA_MEC_US", "Aplio XG", 716, 537, [], [172, 82, 372, 372], "rule"),
    ("philips", "Philips Medical Systems", "EPIQ 7G", 1024, 768,
     [(100, 50, 900, 700, 1), (0, 700, 1023, 767, 3)], [212, 84, 600, 600], "rule"),
    ("regions", "ACME", "X1", 800, 600,
     [(10, 20, 409, 319, 1), (0, 0, 799, 599, 5), (500, 100, 900, 700, 1)],
     [500, 100, 300, 500], "region"),
    ("centre", "ACME", "X1", 640, 480, [], [80, 0, 480, 480], "centre"),
]


def main():
    tmp = tempfile.mkdtemp(prefix="usv-crops-")
    bad = 0
    for i, (name, man, model, cols, rows, regions, box, src) in enumerate(CASES):
        path = os.path.join(tmp, name + ".dcm")
        img = make(path, man, model, cols, rows, regions, seed=i)
        png = os.path.join(tmp, name + ".png")
        r = subprocess.run([USVIEW, "preview", path, "--info", "-o", png],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: {r.stderr.strip()}")
            bad += 1
            continue
        j = json.loads(r.stdout)
        x, y, w, h = box
        want = cv2.resize(np.stack([img[y:y + h, x:x + w]] * 3, -1), (256, 256),
                          interpolation=cv2.INTER_AREA)
        got = cv2.cvtColor(cv2.imread(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        d = int(np.abs(got.astype(int) - want.astype(int)).max())
        ok = j["crop"] == box and j["crop_source"] == src and got.shape == (256, 256, 3) and d <= 1
        print(f"{'ok  ' if ok else 'FAIL'} {name}: crop {j['crop']} ({j['crop_source']}), "
              f"expected {box} ({src}); output vs OpenCV max diff {d}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
