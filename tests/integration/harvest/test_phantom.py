#!/usr/bin/env python3
"""usview harvest on a phantom archive (both vendors, typed view text,
unannotated and unmappable images, measurements, labels in attributes)
against the phantom's own truth (annotations.csv): at least 98 % of the
images that carry a label get the right one, none gets a wrong one, images
with measurements are excluded with precision and recall >= 95 %; the
unannotated and unmappable ones stay out of the CSV and their strings show
in the report (parsed, and rendered by headless Chromium); `usview train`
takes the CSV as it is; a rerun comes from the cache and writes the same
CSV; files added later are the only ones read; another OCR setting
invalidates the cache."""
import collections
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harvestlib  # noqa: E402
import htmlcheck  # noqa: E402
import usvtest  # noqa: E402

USVIEW = os.environ["USVIEW"]
SHARED = usvtest.shared_dir()
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
PHANTOM_OPTS = ["--unannotated", "0.08", "--unmappable", "0.08", "--measurements", "0.2",
                "--attr-labels", "0.3", "--seed", "5"]


def run(*args, check=True):
    r = subprocess.run([USVIEW, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit("usview %s failed (%d):\n%s%s" % (args[0], r.returncode, r.stdout,
                                                            r.stderr))
    return r


def cache_counts(out):
    m = re.search(r"(\d+) from cache, (\d+) read", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def norm(text):
    return " ".join(w for w in re.split(r"[^A-Za-z0-9]+", text.upper()) if w)


def main():
    ck = usvtest.Check("harvest_phantom")
    tmp = usvtest.tempdir("usv-harvest-")
    arch = os.path.join(tmp, "arch")
    run("phantom", "--out", arch, "--studies", "12", *PHANTOM_OPTS)
    tr = harvestlib.truth(arch)
    ck(len(tr) == 132, "132 phantom images, got %d" % len(tr))
    ck(len({p.split("/")[-2] for p in tr}) == 12, "12 studies")

    out = os.path.join(tmp, "out.csv")
    det = os.path.join(tmp, "details.csv")
    rep = os.path.join(tmp, "report.html")
    h = ["harvest", arch, "-o", out, "--details", det, "--report", rep, "--threads", "2"]
    r = run(*h, check=False)
    print(r.stdout.strip())
    ck(r.returncode == 0, "exit 0 on a clean archive, got %d: %s" % (r.returncode, r.stderr))
    ck(cache_counts(r.stdout) == (0, 132), "first run reads all 132: " + r.stdout)
    # the two CSV files of the phantom are no DICOM: skipped, named
    ck("labels.csv: not a DICOM file" in r.stderr, "non-DICOM file named: " + r.stderr)

    s = harvestlib.score(tr, out, det)
    print(harvestlib.summary_line(s))
    for k in ("wrong_list", "unexpected_rows", "missed_list", "fp_list", "fn_list"):
        for x in s[k]:
            print("  %s: %s" % (k, x))
    ck(s["expected"] >= 60, "enough labelled images in the truth (%d)" % s["expected"])
    ck(s["accuracy"] >= 0.98, "accuracy %.3f >= 0.98" % s["accuracy"])
    ck(s["wrong"] == 0, "no wrong label (%d)" % s["wrong"])
    ck(s["precision"] >= 0.95, "measurement precision %.3f" % s["precision"])
    ck(s["recall"] >= 0.95, "measurement recall %.3f" % s["recall"])
    ck(s["not_in_truth"] == 0, "every CSV row is a phantom image")
    rows = harvestlib.read_csv(out)
    ck(len({x["manufacturer"] for x in rows}) == 2, "both vendors in the CSV")
    ck(all(not os.path.isabs(x["path"]) and x["path"].startswith("arch/") for x in rows),
       "paths relative to the CSV's folder")
    with open(out) as f:
        ck(f.readline().strip() == "path,label,group,manufacturer,source", "CSV header")
    # the group is the study: one per phantom study folder
    groups = collections.defaultdict(set)
    for x in rows:
        groups[x["group"]].add(x["path"].split("/")[1])
    ck(all(len(v) == 1 for v in groups.values()), "one group per study")

    # the report: sections, counts that agree with --details, strings
    d = harvestlib.details(det)
    rp = htmlcheck.parse(rep)
    for sec in ("summary", "classes", "sources", "unmapped", "exclusions", "thumbnails",
                "unreadable"):
        ck(sec in rp.sections, "report section " + sec)
    ck(not rp.external, "no external resource: %s" % rp.external[:3])
    summ = {row[0]: int(row[1]) for row in rp.tables["t-summary"]}
    read = [x for x in d.values() if x["status"] == "read"]
    ck(summ["labelled (in the CSV)"] == len(rows), "labelled count %s" % summ)
    ck(summ["excluded"] == sum(1 for x in read if x["exclusion"]), "excluded count")
    ck(summ["unlabelled"] == sum(1 for x in read if not x["exclusion"] and not x["label"]),
       "unlabelled count")
    ck(summ["not DICOM (skipped)"] == 2, "2 non-DICOM files")
    per_class = collections.Counter(x["label"] for x in rows)
    for row in rp.tables["t-classes"][1:]:
        if row[0] != "total":
            ck(int(row[1]) == per_class.get(row[0], 0), "class count " + row[0])
    srcs = {row[0]: int(row[1]) for row in rp.tables["t-sources"][1:]}
    ck(srcs == dict(collections.Counter(x["source"] for x in rows)), "per-source counts")
    unm = {row[0]: int(row[3]) for row in rp.tables["t-unmapped"][1:]}
    # unmappable typed texts: out of the CSV, in the report
    unmappable = {norm(t["annotation"]) for t in tr.values()
                  if t["annotation"] and not t["expected_label"]}
    found = sum(1 for t in unmappable if t in unm)
    ck(unmappable and found >= 0.8 * len(unmappable),
       "unmappable strings in the report: %d of %d (%s)" % (found, len(unmappable),
                                                            sorted(unmappable)))
    # nothing from the banner (patient name and ID) nor descriptions
    ck(not any("PHANTOM" in k or re.search(r"\bPH\d+", k) for k in unm),
       "no banner text among the unmapped strings")
    ck("PHANTOM^" not in rp.text, "no patient name in the report")
    excl = {row[0]: int(row[1]) for row in rp.tables["t-exclusions"][1:]}
    ck(sum(excl.values()) == summ["excluded"], "exclusions add up")
    ck(any(k.startswith("measurement") for k in excl), "measurement reasons listed")
    ck(11 <= len(rp.imgs) <= 44 and all(i.startswith("data:image/png;base64,")
                                        for i in rp.imgs), "thumbnails %d" % len(rp.imgs))
    img = htmlcheck.render(rep, tmp)
    grey = img.mean(axis=2)
    ck(grey.std() > 20 and (grey < 128).mean() > 0.01, "the rendered report is not blank")
    head = (abs(img[:, :, 0].astype(int) - 121) < 12) & (abs(img[:, :, 2].astype(int) - 31) < 12)
    ck(head.sum() > 500, "table headers rendered (%d px)" % head.sum())

    # usview train reads the CSV as it is
    bb = os.path.join(tmp, "mn.usvm")
    run("import-tflite", EXTRACTOR, "-o", bb)
    model = os.path.join(tmp, "views.usvm")
    t = run("train", "--preset", "mobilenet", "--backbone", bb, "--data", out,
            "--val-fraction", "0.25", "-o", model, "--iterations", "20", "--no-cache",
            "--quiet", check=False)
    ck(t.returncode == 0 and os.path.exists(model), "train takes the CSV: " + t.stderr[-500:])

    # rerun: everything from the cache, the same CSV
    before = open(out, "rb").read()
    r2 = run(*h)
    ck(cache_counts(r2.stdout) == (132, 0), "rerun from the cache: " + r2.stdout)
    ck(open(out, "rb").read() == before, "rerun writes the same CSV")

    # a grown archive: only the new files are read
    run("phantom", "--out", os.path.join(arch, "later"), "--studies", "1", "--first-study",
        "40", *PHANTOM_OPTS)
    r3 = run(*h)
    ck(cache_counts(r3.stdout) == (132, 11), "only the 11 new files read: " + r3.stdout)
    after = harvestlib.read_csv(out)
    ck(set(tuple(x.items()) for x in rows) <= set(tuple(x.items()) for x in after),
       "old rows kept")
    ck(len(after) > len(rows), "new rows added")
    # one thread gives the same CSV as two
    two = open(out, "rb").read()
    r4 = run(*(h[:-1] + ["1"]), "--cache", os.path.join(tmp, "other.cache"))
    ck(cache_counts(r4.stdout)[0] == 0, "a fresh cache file")
    ck(open(out, "rb").read() == two,
       "1 thread writes the CSV of 2 threads")
    # another OCR setting: the cache does not apply
    r5 = run("harvest", arch, "-o", out, "--no-ocr", check=False)
    ck(cache_counts(r5.stdout) == (0, 143), "--no-ocr ignores the OCR cache: " + r5.stdout)
    ck("reading every file again" in r5.stderr, "stale cache said: " + r5.stderr)
    ck(all(x["source"] != "ocr" for x in harvestlib.read_csv(out)), "--no-ocr: no ocr rows")
    ck.done()


if __name__ == "__main__":
    main()
