#!/usr/bin/env python3
"""usview train --preset mobilenet cuts a whole backbone at its feature layer,
not at its class probabilities. Real files from shared/models/mobilenet,
imported with usview import-tflite, trained for a few iterations on 64 real
gallbladder images (8 patients):

- mobilenet_v2_1.0_224_quant imported whole (1x1 convolution to 1001 classes
  and softmax included): the default cut is MobilenetV2/Logits/AvgPool with
  1280 features, printed ("features: layer '...' (1280)") and recorded in the
  provenance; the output model has no 1001-class layer; the head's first
  layer takes 1280 inputs.
- mobilenet_v1_0.25_128_quant whole (softmax named Predictions/Reshape_1):
  MobilenetV1/Logits/AvgPool_1a/AvgPool, 256 features.
- the MobileNet v1 embedding extractor (ends at its global pooling): cut at
  its last layer, 1024 features, as before.
- --cut of the v2 softmax: accepted because it is named, with a warning,
  1001 features and the softmax recorded in the provenance.
- a v2 file with a layer after its softmax (so that the feature layer found
  from the structure is after it): refused, exit 1, a message naming the
  softmax and --cut, no model written; the same layer named by --cut is
  accepted."""
import json
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import usvtest  # noqa: E402

USVIEW = os.environ["USVIEW"]
SHARED = usvtest.shared_dir()
MN = os.path.join(SHARED, "models/mobilenet")
DATA = os.path.abspath(os.path.join(SHARED, "data/images/gallbladder-ba/training_data"))


def run(*args, ok=True):
    p = subprocess.run([USVIEW, *args], capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"usview {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p


def read_model(path):
    """(header JSON, usview JSON with layers and meta, provenance)"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    u = json.loads(hdr["__metadata__"]["usview"])
    prov = u["meta"].get("provenance")
    if isinstance(prov, str):
        prov = json.loads(prov)
    return hdr, u, prov


def append_layer_after_softmax(src, dst, softmax):
    """src with a ReLU layer fed by its softmax appended (the softmax's
    output goes on through a non-classifier layer)."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    u = json.loads(hdr["__metadata__"]["usview"])
    last = dict(u["layers"][-1])
    assert last["name"] == softmax and last["type"] == "softmax", last
    last.update(name="post_softmax_relu", type="relu", inputs=[softmax])
    u["layers"].append(last)
    u["meta"]["output_layer"] = "post_softmax_relu"
    hdr["__metadata__"]["usview"] = json.dumps(u)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(data)


def subset_csv(path):
    """64 images of 8 patients (4 per class), absolute paths."""
    groups = {}
    with open(os.path.join(DATA, "label.csv")) as f:
        for line in f:
            name, label = line.strip().split(",")
            groups.setdefault((label, name.split("_")[0]), []).append(name)
    rows = []
    for label in ("0", "1"):
        picked = [g for g in sorted(groups) if g[0] == label and len(groups[g]) >= 8][:4]
        assert len(picked) == 4, label
        for g in picked:
            rows += [(os.path.join(DATA, n), label) for n in sorted(groups[g])[:8]]
    with open(path, "w") as f:
        f.writelines(f"{p},{y}\n" for p, y in rows)
    return len(rows)


def main():
    for f in ("mobilenet_v2_1.0_224_quant.tflite", "mobilenet_v1_0.25_128_quant.tflite",
              "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"):
        if not os.path.exists(os.path.join(MN, f)):
            print(f"skip: {f} is missing in {MN}")
            return 77
    tmp = usvtest.tempdir("usv-presetcut-")
    csv = os.path.join(tmp, "train.csv")
    assert subset_csv(csv) == 64
    models = {}
    for key, f in (("v2", "mobilenet_v2_1.0_224_quant"), ("v1q", "mobilenet_v1_0.25_128_quant"),
                   ("emb", "mobilenet_v1_1.0_224_quant_embedding_extractor")):
        models[key] = os.path.join(tmp, key + ".usvm")
        run("import-tflite", os.path.join(MN, f + ".tflite"), "-o", models[key])
    # the imported v2 file is the whole classifier: its output is the softmax
    _, u, _ = read_model(models["v2"])
    assert u["layers"][-1]["type"] == "softmax", u["layers"][-1]
    assert u["layers"][-2]["num_output"] == 1001, u["layers"][-2]

    def train(name, backbone, *extra, ok=True):
        out = os.path.join(tmp, "head-" + name + ".usvm")
        p = run("train", "--preset", "mobilenet", "--backbone", backbone, "--data", csv,
                "--group-sep", "_", "--views", "1", "--iterations", "20", "--seed", "3",
                "--cache", os.path.join(tmp, "cache"), "-o", out, *extra, ok=ok)
        return p, out

    # 1. whole MobileNet v2: the global pooling before the classifier
    p, out = train("v2", models["v2"])
    assert "features: layer 'MobilenetV2/Logits/AvgPool' (1280)" in p.stdout, p.stdout
    _, u, prov = read_model(out)
    bb = prov["backbone"]
    assert bb["cut"] == "MobilenetV2/Logits/AvgPool", bb
    assert bb["cut_size"] == 1280, bb
    assert bb["cut_rule"] == "before the backbone's classifier", bb
    assert bb["classifier"] == {"layer": "MobilenetV2/Logits/Conv2d_1c_1x1/biases1",
                                "classes": 1001}, bb
    assert "cut_after_softmax" not in bb, bb
    assert prov["solver"]["layers"][0]["in"] == 1280, prov["solver"]["layers"]
    names = [layer["name"] for layer in u["layers"]]
    i = names.index("MobilenetV2/Logits/AvgPool")
    assert names[i + 1] == "head_fc1", names[i:]
    assert all(layer.get("num_output") != 1001 for layer in u["layers"]), "1001-class layer kept"
    assert sum(layer["type"] == "softmax" for layer in u["layers"]) == 1  # the head's "prob"
    assert u["meta"]["output_layer"] == "prob"
    # the written model classifies: two labels, probabilities from the new head
    cls = run("eval", "-m", out, "--data", csv, "--group-sep", "_", "--json")
    m = json.loads(cls.stdout)
    assert m["n"] == 64 and m["labels"] == ["0", "1"], m

    # 2. whole MobileNet v1 0.25/128: its Reshape_1 softmax and 1x1 classifier skipped
    p, out = train("v1q", models["v1q"])
    assert "features: layer 'MobilenetV1/Logits/AvgPool_1a/AvgPool' (256)" in p.stdout, p.stdout
    assert read_model(out)[2]["backbone"]["cut_size"] == 256

    # 3. the embedding extractor: its last layer, as before
    p, out = train("emb", models["emb"])
    assert "features: layer 'MobilenetV1/Logits/AvgPool_1a/AvgPool' (1024)" in p.stdout, p.stdout
    bb = read_model(out)[2]["backbone"]
    assert bb["cut"] == "MobilenetV1/Logits/AvgPool_1a/AvgPool" and bb["cut_size"] == 1024, bb
    assert bb["cut_rule"] == "last layer" and "classifier" not in bb, bb

    # 4. the softmax named by --cut: accepted, with a warning, and recorded
    sm = "MobilenetV2/Predictions/Softmax"
    p, out = train("v2sm", models["v2"], "--cut", sm)
    assert f"features: layer '{sm}' (1001)" in p.stdout, p.stdout
    assert "warning" in p.stderr and "softmax" in p.stderr, p.stderr
    bb = read_model(out)[2]["backbone"]
    assert bb["cut"] == sm and bb["cut_rule"] == "--cut" and bb["cut_after_softmax"] == sm, bb

    # 5. a feature layer after the softmax is refused unless --cut names it
    post = os.path.join(tmp, "v2post.usvm")
    append_layer_after_softmax(models["v2"], post, sm)
    p, out = train("v2post", post, ok=False)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "post_softmax_relu" in p.stderr and sm in p.stderr and "--cut" in p.stderr, p.stderr
    assert not os.path.exists(out)
    p, out = train("v2post_named", post, "--cut", "post_softmax_relu")
    assert "features: layer 'post_softmax_relu' (1001)" in p.stdout, p.stdout
    assert read_model(out)[2]["backbone"]["cut_after_softmax"] == sm
    print("preset cut: v2 -> AvgPool (1280), v1 0.25 -> AvgPool_1a (256), extractor -> "
          "AvgPool_1a (1024); softmax only when named")
    return 0


if __name__ == "__main__":
    sys.exit(main())
