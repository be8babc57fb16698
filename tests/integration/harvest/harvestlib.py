"""harvestlib - usview harvest's output against the phantom's truth.

read_csv(path)             rows of a CSV as dicts
truth(phantom_dir)         {absolute path: row of annotations.csv}
details(path, csv_dir)     {absolute path: row of harvest --details}
score(truth, out_csv, details_csv)
                           correct / wrong / missed labels, measurement
                           exclusion precision and recall, sources, and the
                           lists behind them (see the function)
"""

import csv
import os


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _abs(base, p):
    return os.path.realpath(p if os.path.isabs(p) else os.path.join(base, p))


def truth(phantom_dir):
    out = {}
    for r in read_csv(os.path.join(phantom_dir, "annotations.csv")):
        out[_abs(phantom_dir, r["path"])] = r
    return out


def details(path):
    base = os.path.dirname(os.path.abspath(path))
    return {_abs(base, r["path"]): r for r in read_csv(path)}


def harvested(out_csv):
    base = os.path.dirname(os.path.abspath(out_csv))
    return {_abs(base, r["path"]): r for r in read_csv(out_csv)}


def score(tr, out_csv, details_csv):
    """tr: truth(); the CSV written by harvest and its --details.

    An image "should be in the CSV" when annotations.csv gives it an
    expected label and no measurement. correct: in the CSV with that
    label; wrong: in the CSV with another label, or in the CSV although it
    should not be (no expected label, or a measurement); missed: should be
    in the CSV and is not. Measurement exclusion: predicted = details say
    "measurement"; actual = annotations.csv measurement 1."""
    rows = harvested(out_csv)
    det = details(details_csv)
    s = {"correct": 0, "wrong": 0, "missed": 0, "expected": 0, "source_ok": 0,
         "wrong_list": [], "missed_list": [], "tp": 0, "fp": 0, "fn": 0,
         "fp_list": [], "fn_list": [], "not_in_truth": 0, "unexpected_rows": []}
    for p, r in rows.items():
        if p not in tr:
            s["not_in_truth"] += 1
            continue
    for p, t in tr.items():
        want = t["expected_label"]
        meas = t["measurement"] == "1"
        got = rows.get(p)
        d = det.get(p, {})
        excl_meas = d.get("exclusion") == "measurement"
        if meas and excl_meas:
            s["tp"] += 1
        elif meas:
            s["fn"] += 1
            s["fn_list"].append((p, d.get("reason", "")))
        elif excl_meas:
            s["fp"] += 1
            s["fp_list"].append((p, d.get("reason", "")))
        if want and not meas:
            s["expected"] += 1
            if got is None:
                s["missed"] += 1
                s["missed_list"].append((p, want, d.get("label", ""), d.get("exclusion", ""),
                                         d.get("reason", "")))
            elif got["label"] == want:
                s["correct"] += 1
                if got["source"] == t["expected_source"]:
                    s["source_ok"] += 1
            else:
                s["wrong"] += 1
                s["wrong_list"].append((p, want, got["label"], got["source"]))
        elif got is not None:
            s["wrong"] += 1
            s["unexpected_rows"].append((p, want, got["label"], got["source"]))
    s["precision"] = s["tp"] / (s["tp"] + s["fp"]) if s["tp"] + s["fp"] else 1.0
    s["recall"] = s["tp"] / (s["tp"] + s["fn"]) if s["tp"] + s["fn"] else 1.0
    s["accuracy"] = s["correct"] / s["expected"] if s["expected"] else 1.0
    return s


def summary_line(s):
    return ("labels: %d/%d correct (%.1f%%), %d wrong, %d missed; sources as expected %d; "
            "measurement exclusion precision %.3f recall %.3f (tp %d fp %d fn %d)"
            % (s["correct"], s["expected"], 100 * s["accuracy"], s["wrong"], s["missed"],
               s["source_ok"], s["precision"], s["recall"], s["tp"], s["fp"], s["fn"]))
