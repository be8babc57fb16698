#!/usr/bin/env python3
"""usview train is bit-reproducible for a seed, data and --threads: a run
with a cold feature cache, one with a warm cache and one with a partly
filled cache write the same weights and the same metrics and curve; a
cache filled at another thread count is not replayed (the features' last
bits depend on the engine's thread count). (That the head does not depend
on the thread count for given features: tests/unit/train.)"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

USVIEW = os.environ["USVIEW"]
SHARED = os.environ.get("USV_SHARED_DIR", "../shared")
EXTRACTOR = os.path.join(SHARED, "models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def sh(*args):
    return subprocess.run([USVIEW, *args], check=True, capture_output=True, text=True).stdout


def read_model(path):
    """(sha256 of every tensor's bytes in name order, provenance)"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    h = hashlib.sha256()
    for name in sorted(k for k in hdr if k != "__metadata__"):
        a, b = hdr[name]["data_offsets"]
        h.update(name.encode() + b"\0" + data[a:b])
    meta = json.loads(hdr["__metadata__"]["usview"])["meta"]
    prov = meta["provenance"]
    return h.hexdigest(), (json.loads(prov) if isinstance(prov, str) else prov)


def cache_files(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="usv-trainrepro-")
    try:
        backbone = os.path.join(tmp, "mn.usvm")
        sh("import-tflite", EXTRACTOR, "-o", backbone)
        tr, va = os.path.join(tmp, "train"), os.path.join(tmp, "val")
        sh("phantom", "--out", tr, "--studies", "3", "--seed", "11")
        sh("phantom", "--out", va, "--studies", "1", "--seed", "11", "--first-study", "900")

        def train(name, cache, threads):
            out = os.path.join(tmp, name + ".usvm")
            sh("train", "--preset", "mobilenet", "--backbone", backbone,
               "--data", os.path.join(tr, "labels.csv"), "--val", os.path.join(va, "labels.csv"),
               "-o", out, "--iterations", "60", "--eval-every", "20", "--seed", "9",
               "--cache", os.path.join(tmp, cache), "--threads", str(threads), "--quiet")
            return read_model(out)

        def same(a, b, what):
            # weights byte for byte, then everything computed from them
            assert a[0] == b[0], f"{what}: the weights differ"
            for k in ("metrics", "curve"):
                assert a[1][k] == b[1][k], (what, k, a[1][k], b[1][k])

        cold = train("cold", "c2", 2)
        n_entries = len(os.listdir(os.path.join(tmp, "c2")))
        assert n_entries == 33 + 11, n_entries  # train (2 views) and val (1 view) entries
        entries = cache_files(os.path.join(tmp, "c2"))

        warm = train("warm", "c2", 2)
        assert warm[1]["time_s"]["features"] < cold[1]["time_s"]["features"]
        same(cold, warm, "warm cache")

        # a partly filled cache: the missing images run in other batches
        for i, name in enumerate(sorted(entries)):
            if i % 3 == 0:
                os.unlink(os.path.join(tmp, "c2", name))
        part = train("part", "c2", 2)
        same(cold, part, "partly filled cache")
        assert cache_files(os.path.join(tmp, "c2")) == entries, "recomputed features differ"

        # a cache filled at one thread: its entries are not replayed at two
        one = train("one", "c1", 1)
        assert len(os.listdir(os.path.join(tmp, "c1"))) == n_entries
        two = train("two", "c1", 2)
        assert len(os.listdir(os.path.join(tmp, "c1"))) == 2 * n_entries
        same(cold, two, "cache of another thread count")
        one_warm = train("one_warm", "c1", 1)
        same(one, one_warm, "warm cache, one thread")
        print(f"train reproducible: cold {cold[1]['time_s']['features']:.1f}s, "
              f"warm {warm[1]['time_s']['features']:.2f}s, weights {cold[0][:12]}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
