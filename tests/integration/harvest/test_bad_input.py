#!/usr/bin/env python3
"""usview harvest and bad input: a dangling symbolic link, a truncated file,
a file with a wrong VR (Rows as text), an image without pixel data (both
made with pydicom) and a non-DICOM file among good ones: one line each on
stderr naming the file, exit 1, every good file harvested; a second copy of
an instance is kept once, at its first path. A DICOMDIR
(dcmmkdir) as input gives the files it lists; a DICOMDIR met while walking a
folder is not an error. Usage errors exit 2."""
import os
import shutil
import subprocess
import sys

import pydicom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harvestlib  # noqa: E402
import usvtest  # noqa: E402

USVIEW = os.environ["USVIEW"]


def usview(*args):
    return subprocess.run([USVIEW, *args], capture_output=True, text=True)


def main():
    ck = usvtest.Check("harvest_bad_input")
    tmp = usvtest.tempdir("usv-harvest-bad-")
    src = os.path.join(tmp, "src")
    r = usview("phantom", "--out", src, "--studies", "1", "--attr-labels", "1", "--seed", "9")
    assert r.returncode == 0, r.stderr
    tr = harvestlib.truth(src)
    good = sorted(p for p in tr)
    inp = os.path.join(tmp, "in")
    os.makedirs(os.path.join(inp, "study"))
    for p in good:
        shutil.copy(p, os.path.join(inp, "study", os.path.basename(p)))
    bad = {}
    bad["dangling.dcm"] = os.path.join(inp, "dangling.dcm")
    os.symlink(os.path.join(tmp, "gone.dcm"), bad["dangling.dcm"])
    bad["truncated.dcm"] = os.path.join(inp, "truncated.dcm")
    with open(good[0], "rb") as f, open(bad["truncated.dcm"], "wb") as g:
        g.write(f.read(700))
    ds = pydicom.dcmread(good[1])
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".1"
    del ds.PixelData
    bad["nopixels.dcm"] = os.path.join(inp, "nopixels.dcm")
    ds.save_as(bad["nopixels.dcm"], write_like_original=False)
    ds = pydicom.dcmread(good[2])
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
    ds.add_new(0x00280010, "LO", "many")  # Rows with a text VR
    bad["wrongvr.dcm"] = os.path.join(inp, "wrongvr.dcm")
    ds.save_as(bad["wrongvr.dcm"], write_like_original=False)
    # the same instance under a second path (sorted after the first): kept once
    shutil.copy(good[3], os.path.join(inp, "zcopy.dcm"))
    with open(os.path.join(inp, "notes.txt"), "w") as f:
        f.write("a text file in the archive\n")

    out = os.path.join(tmp, "out.csv")
    det = os.path.join(tmp, "details.csv")
    r = usview("harvest", inp, "-o", out, "--details", det, "--no-ocr")
    print(r.stdout.strip())
    print(r.stderr.strip())
    ck(r.returncode == 1, "exit 1 with unreadable files (%d)" % r.returncode)
    lines = r.stderr.splitlines()
    for name in bad:
        mine = [ln for ln in lines if name in ln]
        ck(len(mine) == 1, "one line names %s: %s" % (name, mine))
    notes = [ln for ln in lines if "notes.txt" in ln]
    ck(len(notes) == 1 and "not a DICOM file" in notes[0], "the text file is named once")
    ck(any("no such file" in ln for ln in lines if "dangling" in ln), "dangling link says so")
    ck(any("no pixel data" in ln for ln in lines if "nopixels" in ln), "no pixel data said")
    rows = harvestlib.read_csv(out)
    ck(len(rows) == len(good), "every good file harvested: %d of %d" % (len(rows), len(good)))
    want = {os.path.basename(p): tr[p]["expected_label"] for p in good}
    got = {os.path.basename(x["path"]): x["label"] for x in rows}
    ck(got == want, "labels from the attributes: %s" % (set(got.items()) ^ set(want.items())))
    ck(all(x["source"].startswith("dicom:") for x in rows), "sources are attributes")
    d = harvestlib.details(det)
    ck(sum(1 for x in d.values() if x["status"] == "failed") == 4, "4 failed in --details")
    ck("4 unreadable" in r.stdout, "summary counts 4 unreadable: " + r.stdout)
    ck("1 duplicates" in r.stdout, "summary counts 1 duplicate: " + r.stdout)
    ck(not any(x["path"].endswith("zcopy.dcm") for x in rows), "the first path is kept")
    ck(d[os.path.realpath(os.path.join(inp, "zcopy.dcm"))]["duplicate"] == "1",
       "--details marks the duplicate")

    # a DICOMDIR as input
    dd = os.path.join(tmp, "media")
    os.makedirs(os.path.join(dd, "IMAGES"))
    for i, p in enumerate(good):
        shutil.copy(p, os.path.join(dd, "IMAGES", "IM%06d" % (i + 1)))
    mk = subprocess.run(["dcmmkdir", "+r", "+I", "IMAGES"], cwd=dd, capture_output=True,
                        text=True)
    ck(mk.returncode == 0 and os.path.exists(os.path.join(dd, "DICOMDIR")),
       "dcmmkdir: " + mk.stderr[-300:])
    out2 = os.path.join(tmp, "dd.csv")
    r = usview("harvest", os.path.join(dd, "DICOMDIR"), "-o", out2, "--no-ocr")
    print(r.stdout.strip())
    ck(r.returncode == 0, "DICOMDIR harvested: " + r.stderr)
    rows2 = harvestlib.read_csv(out2)
    ck(sorted((x["label"], x["group"]) for x in rows2) ==
       sorted((x["label"], x["group"]) for x in rows), "the DICOMDIR gives the same labels")
    ck(all(x["path"].startswith("media/IMAGES/IM") for x in rows2), "paths of its files")
    # the same folder walked: the DICOMDIR file itself is no error
    r = usview("harvest", dd, "-o", os.path.join(tmp, "dd2.csv"), "--no-ocr")
    ck(r.returncode == 0 and "DICOMDIR" not in r.stderr, "walked DICOMDIR: " + r.stderr)
    ck(len(harvestlib.read_csv(os.path.join(tmp, "dd2.csv"))) == len(good), "walked rows")

    # usage errors
    for args in (["harvest", inp], ["harvest", inp, "-o", out, "--threads", "2x"],
                 ["harvest", "-o", out], ["harvest", inp, "-o", out, "--bogus"],
                 ["harvest", "-o", out, "--from", "PACS@host"],
                 ["harvest", "-o", out, "--from", "PACS@127.0.0.1:104"]):
        r = usview(*args)
        ck(r.returncode == 2 and r.stderr.startswith("usview harvest: "),
           "usage error %s: %d %s" % (args[1:], r.returncode, r.stderr))
    ck(usview("harvest", "--help").returncode == 0, "--help")
    ck.done()


if __name__ == "__main__":
    main()
