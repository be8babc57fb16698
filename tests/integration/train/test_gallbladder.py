#!/usr/bin/env python3
"""Real data: paediatric gallbladder ultrasound (biliary atresia or not).
usview train --preset mobilenet on shared/.../training_data (3,705 images,
grouped by patient = file name before '_'), usview eval on the external
test_data (841). Asserts a ROC AUC well above chance and an accuracy above
the majority-class rate (605/841 = 0.719). The images are 60x60 JPEG copies;
one view per image (no mirror) keeps the feature pass short."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
DATA = os.path.join(SHARED, "data/images/gallbladder-ba")
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def main():
    tmp = tempfile.mkdtemp(prefix="usv-gb-")
    try:
        t0 = time.time()
        bb = os.path.join(tmp, "mn.usvm")
        subprocess.run([USVIEW, "import-tflite", EXTRACTOR, "-o", bb], check=True,
                       stdout=subprocess.DEVNULL)
        model = os.path.join(tmp, "gb.usvm")
        out = subprocess.run([USVIEW, "train", "--preset", "mobilenet", "--backbone", bb,
                              "--data", os.path.join(DATA, "training_data/label.csv"),
                              "--group-sep", "_", "--views", "1", "--seed", "1",
                              "--cache", os.path.join(tmp, "cache"), "-o", model],
                             check=True, capture_output=True, text=True).stdout
        assert "3705" in out, out  # the dataset table's total
        t1 = time.time()
        m = json.loads(subprocess.run(
            [USVIEW, "eval", "-m", model, "--data", os.path.join(DATA, "test_data/label.csv"),
             "--group-sep", "_", "--json"], check=True, capture_output=True, text=True).stdout)
        t2 = time.time()
        print(f"gallbladder: n {m['n']} top1 {m['top1']:.4f} AUC {m['auc']:.4f} "
              f"(train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s)")
        assert m["n"] == 841
        assert m["auc"] > 0.75, m["auc"]
        assert m["top1"] > 0.75, m["top1"]
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
