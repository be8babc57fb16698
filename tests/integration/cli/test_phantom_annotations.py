#!/usr/bin/env python3
"""usview phantom's typed view text, calipers and label attributes against its
truth file annotations.csv: the typed and stored texts name the view drawn
(checked with a small synonym matcher written here from the synonym lists, not
with the reader under test), unmappable texts name none, label attributes are
present exactly where expected_source says, measurement images (and only they)
carry 255-valued '+' / 'x' caliper marks inside the crop box, the typed text
lies outside the crop box and below the top banner (found as the difference to
a run with --unannotated 1: nothing else changes, the crop box least of all),
runs are deterministic, dciodvfy finds no errors, and bad shares are refused."""
import csv
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pydicom

USVIEW = os.environ["USVIEW"]
VENDOR = {"philips": (212, 84, 600), "toshiba": (172, 82, 372)}
SYNTHETIC = "Synthetic image made by usview phantom; not a patient"

# word -> concept, from the synonym lists the phantom must draw from
WORDS = {}
for concept, words in {
        "left": "LT LEFT L", "right": "RT RIGHT R",
        "long": "LONG LONGITUDINAL SAG SAGITTAL",
        "trans": "TRANS TRANSVERSE TRV TRX AX AXIAL",
        "liver": "LIVER LIV", "kidney": "KIDNEY KID RENAL", "spleen": "SPLEEN SPL",
        "pancreas": "PANCREAS PANC", "gallbladder": "GALLBLADDER GB"}.items():
    for w in words.split():
        WORDS[w] = concept
ORIENT = {"long", "trans"}


def view_of(text):
    """The view a text names, None when it names none (or is not a plain
    combination of the synonyms)."""
    t = re.sub(r"GALL BLADDER", "GALLBLADDER", text.upper())
    words = t.split()
    if not words or any(w not in WORDS for w in words):
        return None
    c = [WORDS[w] for w in words]
    if len(set(c)) != len(c):
        return None
    organs = [x for x in c if x in ("liver", "kidney", "spleen", "pancreas", "gallbladder")]
    sides = [x for x in c if x in ("left", "right")]
    orients = [x for x in c if x in ORIENT]
    if len(organs) != 1 or len(orients) > 1:
        return None
    o = organs[0]
    if o in ("liver", "kidney"):
        if len(sides) != 1 or len(orients) != 1:
            return None
        # one-letter sides only before the organ
        if "L" in words or "R" in words:
            i = words.index("L" if "L" in words else "R")
            if i + 1 >= len(words) or WORDS[words[i + 1]] != o:
                return None
        return f"{o}_{sides[0]}_{orients[0]}"
    if sides:
        return None
    return o


def run(out, *extra, check=True):
    return subprocess.run([USVIEW, "phantom", "--out", out, *extra], check=check,
                          capture_output=True, text=True)


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def crosses(img):
    """Centres of isolated 255-valued '+' or 'x' marks with arms of 3 or more:
    nothing else of 255 in the 9 x 9 window around them."""
    b = np.pad(img == 255, 4)
    h, w = img.shape

    def at(dy, dx):
        return b[4 + dy:4 + dy + h, 4 + dx:4 + dx + w]

    plus = at(0, 0).copy()
    ex = at(0, 0).copy()
    for d in (1, 2, 3):
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            plus &= at(d * dy, d * dx)
        for dy, dx in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            ex &= at(d * dy, d * dx)
    found = []
    for kind, m in (("+", plus), ("x", ex)):
        for y, x in zip(*np.nonzero(m)):
            win = b[y:y + 9, x:x + 9].copy()
            for d in range(-4, 5):
                if kind == "+":
                    win[4 + d, 4] = win[4, 4 + d] = False
                else:
                    win[4 + d, 4 + d] = win[4 + d, 4 - d] = False
            if not win.any():
                found.append((int(y), int(x)))
    return found


def main():
    tmp = tempfile.mkdtemp(prefix="usv-phantom-annot-")
    try:
        shares = ["--unannotated", "0.2", "--unmappable", "0.2", "--measurements", "0.4",
                  "--attr-labels", "0.45"]
        base = ["--studies", "2", "--per-view", "3", "--seed", "5"]
        a = os.path.join(tmp, "a")
        run(a, *base, *shares)
        labels = rows_of(os.path.join(a, "labels.csv"))
        ann = rows_of(os.path.join(a, "annotations.csv"))
        with open(os.path.join(a, "annotations.csv")) as f:
            assert f.readline().strip() == \
                "path,view,annotation,expected_label,expected_source,measurement"
        assert len(ann) == len(labels) == 66, (len(ann), len(labels))
        assert [r["path"] for r in ann] == [r["path"] for r in labels]
        assert all(r["view"] == l["label"] for r, l in zip(ann, labels))

        # same seed, same bytes
        b = os.path.join(tmp, "b")
        run(b, *base, *shares)
        for name in ["labels.csv", "annotations.csv"] + [r["path"] for r in ann]:
            assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False), name

        # the same images without typed text: only the text pixels differ
        n = os.path.join(tmp, "n")
        run(n, *base, *shares[4:], "--unannotated", "1")
        ann_n = rows_of(os.path.join(n, "annotations.csv"))

        seen = {"ocr": 0, "dicom:ImageComments": 0, "dicom:ProtocolName": 0,
                "dicom:ViewCodeSequence": 0, "": 0}
        kinds = {"mapped": 0, "unmapped": 0, "none": 0}
        nmeas = 0
        for r, l, rn in zip(ann, labels, ann_n):
            ds = pydicom.dcmread(os.path.join(a, r["path"]))
            cx, cy, side = VENDOR[l["manufacturer"]]
            banner = max(48, -(-ds.Rows * 12 // 100))
            src, text, view = r["expected_source"], r["annotation"], r["view"]
            seen[src] += 1
            # the typed text names the view, or none
            if text:
                v = view_of(text)
                kinds["mapped" if v else "unmapped"] += 1
                assert v in (None, view), (r, v)
                if v is None:
                    assert text in ("RUQ", "AORTA", "LYMPH NODE", "IVC", "BLADDER",
                                    "LT UPPER QUAD"), r
            else:
                kinds["none"] += 1
            # the attributes that carry the view: exactly the one named
            ic = str(ds.get("ImageComments", ""))
            pn = str(ds.get("ProtocolName", ""))
            vcs = ds.get("ViewCodeSequence")
            assert (ic != SYNTHETIC) == (src == "dicom:ImageComments"), (r, ic)
            assert ("ProtocolName" in ds) == (src == "dicom:ProtocolName"), r
            assert (vcs is not None) == (src == "dicom:ViewCodeSequence"), r
            attr = None
            if src == "dicom:ImageComments":
                attr = ic
            elif src == "dicom:ProtocolName":
                attr = pn
            elif src == "dicom:ViewCodeSequence":
                assert len(vcs) == 1 and vcs[0].CodingSchemeDesignator == "99USVIEW"
                assert vcs[0].CodeValue, r
                attr = str(vcs[0].CodeMeaning)
            if attr is not None:
                assert view_of(attr) == view, (r, attr)
                assert r["expected_label"] == view
            elif text and view_of(text):
                assert src == "ocr" and r["expected_label"] == view, r
            else:
                assert src == "" and r["expected_label"] == "", r
            # calipers inside the crop box exactly on measurement images
            px = ds.pixel_array
            crop = px[cy:cy + side, cx:cx + side]
            marks = crosses(crop)
            assert r["measurement"] in ("0", "1")
            if r["measurement"] == "1":
                nmeas += 1
                assert 1 <= len(marks) <= 3, (r, marks)
            else:
                assert not marks, (r, marks)
            # the typed text: the difference to the run without it
            assert rn["annotation"] == "" and rn["measurement"] == r["measurement"]
            pn_px = pydicom.dcmread(os.path.join(n, r["path"])).pixel_array
            assert np.array_equal(crop, pn_px[cy:cy + side, cx:cx + side]), r
            diff = px != pn_px
            if text:
                ys, xs = np.nonzero(diff)
                assert len(ys) > 30, r
                assert ys.min() >= banner, (r, ys.min())
                inside = (ys >= cy) & (ys < cy + side) & (xs >= cx) & (xs < cx + side)
                assert not inside.any(), r
                vals = px[diff]
                assert vals.min() >= 200 and vals.max() <= 255 and len(set(vals)) == 1, r
                # lower left: beside the image in its lower part, or below it
                assert xs.min() < cx and ys.min() > cy + side // 2, (r, xs.min(), ys.min())
            else:
                assert not diff.any(), r
        assert all(seen.values()), seen
        assert all(kinds.values()), kinds
        assert 0 < nmeas < len(ann)

        # DICOM IOD check with dicom3tools: the label attributes add no errors
        if shutil.which("dciodvfy"):
            done = set()
            for r in ann:
                if r["expected_source"] in done:
                    continue
                done.add(r["expected_source"])
                out = subprocess.run(["dciodvfy", os.path.join(a, r["path"])],
                                     capture_output=True, text=True)
                errs = [x for x in (out.stdout + out.stderr).splitlines()
                        if x.startswith("Error")]
                assert not errs, (r["path"], errs)

        # defaults: every image typed, read from the pixels, no measurements
        d = os.path.join(tmp, "d")
        run(d, "--studies", "2", "--seed", "9")
        for r in rows_of(os.path.join(d, "annotations.csv")):
            assert view_of(r["annotation"]) == r["view"], r
            assert r["expected_source"] == "ocr" and r["expected_label"] == r["view"], r
            assert r["measurement"] == "0", r

        # shares out of range or adding up to more than 1
        for bad in (["--unannotated", "0.7", "--unmappable", "0.5"],
                    ["--measurements", "1.5"], ["--attr-labels", "-0.1"]):
            p = run(os.path.join(tmp, "x"), "--studies", "1", *bad, check=False)
            assert p.returncode == 2 and "usview phantom: --" in p.stderr, (bad, p.stderr)
            assert not os.path.exists(os.path.join(tmp, "x")), bad
        print(f"phantom annotations ok: {len(ann)} images, sources {seen}, texts {kinds}, "
              f"{nmeas} with measurements")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
