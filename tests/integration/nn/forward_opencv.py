#!/usr/bin/env python3
"""Built-in CaffeNet (random weights) run by `usview forward` against OpenCV DNN.

1. `usview bench --arch caffenet --classes 1000 --save m.usvm` writes the model file.
2. `usview model-info` must list pool5 as 256x6x6 and fc7 as 4096x1x1.
3. The model file is read with an independent NumPy reader (bench/usv_models.py), its
   conv / fc tensors written into a .caffemodel, and OpenCV runs the BVLC
   deploy.prototxt from the shared data with those weights.
4. For a batch of 2 random images, the outputs of norm1, pool2, pool5, relu7 and prob
   from `usview forward --layer` must match OpenCV's within 1e-3 of max |reference|.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

src = os.environ.get('USV_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..', '..'))
sys.path.insert(0, os.path.join(src, 'bench'))
import usv_models  # noqa: E402

import cv2  # noqa: E402

usview = os.environ['USVIEW']
shared = os.environ.get('USV_SHARED_DIR', os.path.join(src, '..', 'shared'))
proto = os.path.join(shared, 'models', 'caffe', 'bvlc_reference_caffenet_deploy.prototxt')


def run(*args):
    r = subprocess.run([usview, *args], capture_output=True, text=True, timeout=240)
    if r.returncode != 0:
        sys.exit(f'FAIL: usview {" ".join(args)}: rc {r.returncode}: {r.stderr.strip()}')
    return r.stdout


with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, 'caffenet.usvm')
    run('bench', '--arch', 'caffenet', '--classes', '1000', '--iters', '1', '--warmup', '0',
        '--save', model)
    info = run('model-info', model)
    lines = {ln.split()[1]: ln.split() for ln in info.splitlines()
             if ln.startswith('  ') and len(ln.split()) > 4 and ln.split()[0].isdigit()}
    assert lines['pool5'][4] == '256x6x6', lines['pool5']
    assert lines['fc7'][4] == '4096x1x1', lines['fc7']
    assert 'arch:          caffenet' in info

    doc, tensors = usv_models.read_usvm(model)
    cm = os.path.join(tmp, 'caffenet.caffemodel')
    usv_models.write_caffemodel(cm, usv_models.caffe_blobs_from_usvm(doc, tensors))
    net = cv2.dnn.readNetFromCaffe(proto, cm)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2, 3, 227, 227)) * 40).astype(np.float32)
    xin = os.path.join(tmp, 'x.npy')
    np.save(xin, x)
    net.setInput(x)
    names = ['norm1', 'pool2', 'pool5', 'relu7', 'prob']
    refs = net.forward(names)
    for name, ref in zip(names, refs):
        out = os.path.join(tmp, name + '.npy')
        run('forward', '-m', model, '--in', xin, '--layer', name, '--out', out)
        got = np.load(out)
        ref = ref.reshape(got.shape)
        tol = 1e-3 * max(float(np.abs(ref).max()), 1e-6)
        err = float(np.abs(got - ref).max())
        print(f'{name}: shape {got.shape} max|ref| {np.abs(ref).max():.4g} max|diff| {err:.3g}')
        if not err <= tol:
            sys.exit(f'FAIL: {name} differs from OpenCV: {err} > {tol}')
    # the probabilities are a distribution per image
    p = np.load(os.path.join(tmp, 'prob.npy')).reshape(2, -1)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-4)
    # bad input shape is an error naming the file
    bad = os.path.join(tmp, 'bad.npy')
    np.save(bad, np.zeros((1, 3, 10, 10), np.float32))
    r = subprocess.run([usview, 'forward', '-m', model, '--in', bad, '--out', bad + '.o'],
                       capture_output=True, text=True)
    assert r.returncode == 1 and bad in r.stderr, r.stderr
    # bench --json: one object with the documented fields, sane values
    import json
    out = run('bench', '--arch', 'mobilenet_v1', '--batch', '2', '--threads', '2', '--iters', '2',
              '--warmup', '1', '--json')
    j = json.loads(out)
    for k in ('arch', 'batch', 'threads', 'ms_per_image', 'images_per_s', 'peak_rss_mb'):
        assert k in j, (k, j)
    assert j['arch'] == 'mobilenet_v1' and j['batch'] == 2 and j['threads'] == 2
    assert j['ms_per_image'] > 0 and abs(j['images_per_s'] * j['ms_per_image'] - 1000) < 1
    assert 5 < j['peak_rss_mb'] < 2000
    r = subprocess.run([usview, 'bench', '--arch', 'resnet'], capture_output=True, text=True)
    assert r.returncode == 2 and 'unknown architecture' in r.stderr, r.stderr
print('OK')
