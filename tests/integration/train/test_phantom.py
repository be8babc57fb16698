#!/usr/bin/env python3
"""usview phantom: headers (pydicom), IOD validity (dciodvfy), determinism,
geometry (image inside the vendor's crop box, annotations only outside),
and fully developed speckle (Rayleigh amplitude: mean/std = 1.91)."""
import csv
import filecmp
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pydicom

USVIEW = os.environ["USVIEW"]
VIEWS = {"liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans",
         "spleen", "pancreas", "kidney_left_long", "kidney_left_trans",
         "kidney_right_long", "kidney_right_trans", "gallbladder"}
VENDOR = {"philips": ("Philips", "EPIQ 7G", 1024, 768, 212, 84, 600),
          "toshiba": ("TOSHIBA_MEC", "Aplio XG", 716, 537, 172, 82, 372)}


def phantom(out, *extra):
    subprocess.run([USVIEW, "phantom", "--out", out, *extra], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "labels.csv")) as f:
        return list(csv.DictReader(f))


def main():
    tmp = tempfile.mkdtemp(prefix="usv-phantom-")
    try:
        a = os.path.join(tmp, "a")
        rows = phantom(a, "--studies", "2", "--seed", "7")
        assert len(rows) == 22, len(rows)
        assert {r["label"] for r in rows} == VIEWS
        assert {r["manufacturer"] for r in rows} == {"philips", "toshiba"}
        # same seed, same bytes; another seed, other UIDs
        b = os.path.join(tmp, "b")
        phantom(b, "--studies", "2", "--seed", "7")
        for r in rows:
            assert filecmp.cmp(os.path.join(a, r["path"]), os.path.join(b, r["path"]),
                               shallow=False), r["path"]
        c = os.path.join(tmp, "c")
        rows_c = phantom(c, "--studies", "1", "--seed", "8")

        sops, studies = set(), {}
        ratios = []
        for r in rows:
            p = os.path.join(a, r["path"])
            ds = pydicom.dcmread(p)
            manu, model, cols, nrows, cx, cy, side = VENDOR[r["manufacturer"]]
            assert ds.Modality == "US"
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert ds.Manufacturer == manu and ds.ManufacturerModelName == model
            assert (ds.Columns, ds.Rows) == (cols, nrows)
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert ds.BitsAllocated == 8 and ds.SamplesPerPixel == 1
            assert str(ds.PatientName).startswith("PHANTOM^")
            assert "SYNTHETIC" in ds.SeriesDescription and "SYNTHETIC" in ds.StudyDescription
            reg = ds.SequenceOfUltrasoundRegions[0]
            assert reg.RegionSpatialFormat == 1
            assert (reg.RegionLocationMinX0, reg.RegionLocationMinY0) == (cx, cy)
            assert (reg.RegionLocationMaxX1, reg.RegionLocationMaxY1) == (cx + side - 1,
                                                                          cy + side - 1)
            assert ds.SOPInstanceUID not in sops
            sops.add(ds.SOPInstanceUID)
            studies.setdefault(r["group"], set()).add(ds.StudyInstanceUID)
            px = ds.pixel_array.astype(np.float64)
            assert px.shape == (nrows, cols)
            crop = px[cy:cy + side, cx:cx + side]
            outside = px.copy()
            outside[cy:cy + side, cx:cx + side] = 0
            # the sector fills a good part of the crop box, with texture
            assert (crop > 0).mean() > 0.45, (r, (crop > 0).mean())
            assert crop[crop > 0].std() > 10
            # annotations exist, and only outside the crop box: the band just
            # inside the box edges is black (the sector is well inside)
            assert (outside > 0).sum() > 200
            edge = np.concatenate([crop[:, :3].ravel(), crop[:, -3:].ravel(),
                                   crop[:3, :].ravel()])
            assert edge.max() == 0, r
            # the burned-in view label sits below the crop box
            assert (px[cy + side:, :cx] > 0).sum() > 50
            if r["label"] == "liver_right_long":
                # homogeneous liver patch: Rayleigh amplitude has mean/std 1.91
                y0, x0, h = int(0.3 * side), int(0.45 * side), int(0.1 * side)
                patch = crop[y0:y0 + h, x0:x0 + h]
                ratios.append(patch.mean() / patch.std())
        assert all(len(v) == 1 for v in studies.values()) and len(studies) == 2
        rayleigh = math.sqrt(math.pi / (4 - math.pi))
        for q in ratios:
            assert abs(q - rayleigh) < 0.35, (q, rayleigh)
        ds_c = pydicom.dcmread(os.path.join(c, rows_c[0]["path"]))
        assert ds_c.SOPInstanceUID not in sops

        # DICOM IOD check with dicom3tools (independent of DCMTK)
        if shutil.which("dciodvfy"):
            for r in rows[::5]:
                out = subprocess.run(["dciodvfy", os.path.join(a, r["path"])],
                                     capture_output=True, text=True)
                errs = [l for l in (out.stdout + out.stderr).splitlines()
                        if l.startswith("Error")]
                assert not errs, (r["path"], errs)
        print(f"phantom ok: 22 instances, speckle mean/std {ratios}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
