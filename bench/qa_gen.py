#!/usr/bin/env python3
"""qa_gen.py - a synthetic results.jsonl for the /qa benchmark (qa_page.sh).

Writes N instance lines in the format of daemon/results_index.h (about the
size the worker writes: top-5, one result per frame, outputs, timings) over
N/5 studies on 12 stations, classified over the last 60 days, with a
technologist's label on 80 % of them, ~6 % disagreements, ~4 % uncertain,
1 % re-processed instances (a second line), a failed instance every 500,
and one study record per study (revision 2 for a third of them, after a
revision 1). Deterministic (seeded).

usage: qa_gen.py OUT_FILE [N_INSTANCES] [--rotate-at BYTES]
  --rotate-at: start a new file every BYTES, as spool.index_max_mb does
               (OUT_FILE.1, .2 ... oldest last), to include rotated files.
"""

import argparse
import datetime
import json
import random

VIEWS = ["liver_left_long", "liver_left_trans", "liver_right_long", "liver_right_trans",
         "spleen", "pancreas", "kidney_left_long", "kidney_left_trans",
         "kidney_right_long", "kidney_right_trans", "gallbladder"]


def main():
    ap = argparse.ArgumentParser(description="synthetic results.jsonl for bench/qa_page.sh")
    ap.add_argument("out")
    ap.add_argument("n", nargs="?", type=int, default=100000)
    ap.add_argument("--rotate-at", type=int, default=0)
    a = ap.parse_args()
    out, n, rotate_at = a.out, a.n, a.rotate_at
    rnd = random.Random(20261205)
    now = datetime.datetime.now(datetime.timezone.utc)
    stations = ["US-ROOM-%d" % i for i in range(1, 11)] + ["ER-US-1", "WARD-PORTABLE"]
    model = {"name": "usview-vgg16", "sha256": "5e" * 32, "arch": "vgg16"}
    files, cur, size = [], [], 0

    def emit(rec):
        nonlocal cur, size
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        cur.append(line)
        size += len(line)
        if rotate_at and size >= rotate_at:
            files.append(cur)
            cur, size = [], 0

    nstudies = max(1, n // 5)
    inst_no, t0 = 0, now - datetime.timedelta(days=60)
    step = (now - t0) / nstudies
    for s in range(nstudies):
        study = "1.2.826.0.1.3680043.10.%d" % (s + 1)
        station = stations[s % len(stations)] if rnd.random() < 0.9 else rnd.choice(stations)
        when = t0 + step * s
        date = when.strftime("%Y%m%d")
        acc = "%016x" % rnd.getrandbits(64)
        k = 5 if s < nstudies - 1 else max(1, n - inst_no)
        present = {}
        dis = unc = 0
        for j in range(k):
            if inst_no >= n:
                break
            inst_no += 1
            t = when + datetime.timedelta(seconds=20 * j)
            sop = study + ".1.%d" % (j + 1)
            sid = "%016x-%08x" % (int(t.timestamp() * 1e6), inst_no)
            if inst_no % 500 == 0:
                emit({"time": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                      "spool_id": sid, "outcome": "failed", "reason": "cannot decode",
                      "sop_instance_uid": sop, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.6.1",
                      "series_uid": study + ".1", "study_uid": study, "manufacturer": "ACME",
                      "manufacturer_model": "X1", "frames_total": 1, "results": [],
                      "outputs": [], "model": model,
                      "timings_ms": {"decode": 1.0, "infer": 0, "total": 1.2, "batch": 1},
                      "kind": "instance", "station_name": station, "study_date": date,
                      "study_description": "US ABDOMEN", "accession_hash": acc,
                      "technologist_label": None, "label_source": None, "agrees": None,
                      "uncertain": False})
                continue
            truth = VIEWS[(s + j * 3) % len(VIEWS)]
            top = truth if rnd.random() > 0.07 else rnd.choice(VIEWS)
            prob = rnd.uniform(0.3, 0.999)
            uncertain = prob < 0.33 or rnd.random() < 0.03
            others = rnd.sample([v for v in VIEWS if v != top], 4)
            rest = 1 - prob
            topk = [{"label": top, "prob": round(prob, 6)}] + [
                {"label": o, "prob": round(rest * w, 6)}
                for o, w in zip(others, (0.4, 0.3, 0.2, 0.1))]
            tech = truth if rnd.random() < 0.8 else None
            agrees = None if tech is None else tech == top
            present[top] = present.get(top, 0) + 1
            dis += agrees is False
            unc += uncertain
            rec = {"time": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   "spool_id": sid, "outcome": "done", "sop_instance_uid": sop,
                   "sop_class_uid": "1.2.840.10008.5.1.4.1.1.6.1", "series_uid": study + ".1",
                   "study_uid": study, "manufacturer": "Philips Medical Systems",
                   "manufacturer_model": "EPIQ 7G", "frames_total": 1, "frame": 0,
                   "label": "uncertain" if uncertain else top, "prob": round(prob, 6),
                   "topk": topk,
                   "results": [{"frame": 0, "label": "uncertain" if uncertain else top,
                                "prob": round(prob, 6), "topk": topk}],
                   "outputs": [{"destination": "pacs", "kind": "sr",
                                "sop_instance_uid": "2.25.%d" % rnd.getrandbits(120)}],
                   "model": model,
                   "timings_ms": {"decode": 4.2, "infer": 31.0, "total": 38.5, "batch": 8},
                   "kind": "instance", "station_name": station, "study_date": date,
                   "study_description": "US ABDOMEN COMPLETE", "accession_hash": acc,
                   "technologist_label": tech,
                   "label_source": "dicom:ImageComments" if tech else None,
                   "agrees": agrees, "uncertain": uncertain}
            emit(rec)
            if rnd.random() < 0.01:  # re-processed after a crash
                emit(rec)
        missing = [v for v in VIEWS if v not in present]
        revs = [1, 2] if s % 3 == 0 else [1]
        for rev in revs:
            emit({"kind": "study",
                  "time": (when + datetime.timedelta(minutes=10 + rev)).isoformat(
                      timespec="milliseconds").replace("+00:00", "Z"),
                  "study_uid": study, "revision": rev, "protocol": "abdomen",
                  "views_present": present, "missing": missing, "disagreements": dis,
                  "uncertain": unc, "instances": sum(present.values()),
                  "station_name": station, "study_date": date, "accession_hash": acc,
                  "outputs": [{"destination": "pacs", "kind": "study_sr",
                               "sop_instance_uid": "2.25.%d" % rnd.getrandbits(120)}]})
    files.append(cur)
    # the newest file is OUT_FILE, older ones OUT_FILE.1, .2 ...
    for i, lines in enumerate(reversed(files)):
        with open(out if i == 0 else "%s.%d" % (out, i), "w") as f:
            f.writelines(lines)
    print("%d instances, %d studies, %d files, %d lines" % (
        inst_no, nstudies, len(files), sum(len(x) for x in files)))


if __name__ == "__main__":
    main()
