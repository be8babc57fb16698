#!/usr/bin/env python3
"""peers.py - usview's CNN engine against PyTorch, OpenCV DNN and ONNX Runtime.

For CaffeNet and VGG16 (fc8 = 11 classes, random weights) at batch 1 and 16 and 1 and 2
threads, every engine runs in its own process: W warm-up forwards, then N timed ones; the
median ms per image is printed with the ratio usview / peer (< 1: usview is faster), plus
the process CPU time per image (a check on a machine shared with other work: wall times
are only meaningful when the CPU time of a 1-thread run is close to its wall time).

  usview       : `usview bench --arch A --batch B --threads T --json` (--kernels K)
  usview_bf16  : the same with --kernels bf16 (model.precision: bf16)
  usview_bf16all: --kernels bf16-all (convolutions in BF16 too; not a daemon setting)
  torch        : the same network built with torch.nn (LRN 5/1e-4/0.75, ceil-mode pooling,
                 grouped convolutions), torch.set_num_threads(T), inference mode, fp32
  torch_bf16cl : that network and its input in torch.bfloat16, channels-last memory format
                 (LRN computed in fp32: PyTorch has no bf16 kernel for it)
  opencv       : cv2.dnn.readNetFromCaffe on the BVLC CaffeNet deploy.prototxt (shared data) or
                 bench/vgg16_deploy.prototxt with a random-weight .caffemodel, cv2.setNumThreads(T)
  ort          : ONNX Runtime (npm onnxruntime-node, run by bench/ort_bench.js under Node.js)
                 on the torch network exported to ONNX (fixed batch), optimisation level all,
                 intra-op threads T; needs --ort-dir DIR holding node_modules/onnxruntime-node
                 (npm install --prefix DIR --ignore-scripts onnxruntime-node@1.30.0); without
                 it the engine is reported as not installed

usage: peers.py [--usview PATH] [--archs caffenet,vgg16] [--batches 1,16] [--threads 1,2]
                [--iters N] [--rounds R] [--engines usview,torch,opencv]
                [--kernels default|portable|bf16]
                [--ort-dir DIR] [--json-out FILE]
Needs python3-torch and python3-opencv (Debian). Keep runs short on a shared machine.
--json-out writes the rows ({arch, batch, threads, ENGINE: {ms_per_image, peak_rss_mb,
cpu_ms_per_image}}; NaN where an engine failed) as JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
SHARED = os.environ.get('USV_SHARED_DIR', os.path.join(SRC, '..', 'shared'))
NCLASS = 11

# (name, kind, args): conv (out, in, k, stride, pad, group) / relu / maxpool (k, s) /
# lrn / fc (out, in) / dropout / softmax
CAFFENET = [
    ('conv1', 'conv', (96, 3, 11, 4, 0, 1)), ('relu1', 'relu', ()), ('pool1', 'maxpool', (3, 2)),
    ('norm1', 'lrn', ()),
    ('conv2', 'conv', (256, 96, 5, 1, 2, 2)), ('relu2', 'relu', ()), ('pool2', 'maxpool', (3, 2)),
    ('norm2', 'lrn', ()),
    ('conv3', 'conv', (384, 256, 3, 1, 1, 1)), ('relu3', 'relu', ()),
    ('conv4', 'conv', (384, 384, 3, 1, 1, 2)), ('relu4', 'relu', ()),
    ('conv5', 'conv', (256, 384, 3, 1, 1, 2)), ('relu5', 'relu', ()), ('pool5', 'maxpool', (3, 2)),
    ('fc6', 'fc', (4096, 9216)), ('relu6', 'relu', ()), ('drop6', 'dropout', ()),
    ('fc7', 'fc', (4096, 4096)), ('relu7', 'relu', ()), ('drop7', 'dropout', ()),
    ('fc8', 'fc', (NCLASS, 4096)), ('prob', 'softmax', ()),
]


def vgg16_spec():
    spec, cin = [], 3
    for s, (reps, width) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
        for r in range(1, reps + 1):
            spec.append((f'conv{s}_{r}', 'conv', (width, cin, 3, 1, 1, 1)))
            spec.append((f'relu{s}_{r}', 'relu', ()))
            cin = width
        spec.append((f'pool{s}', 'maxpool', (2, 2)))
    spec += [('fc6', 'fc', (4096, 25088)), ('relu6', 'relu', ()), ('drop6', 'dropout', ()),
             ('fc7', 'fc', (4096, 4096)), ('relu7', 'relu', ()), ('drop7', 'dropout', ()),
             ('fc8', 'fc', (NCLASS, 4096)), ('prob', 'softmax', ())]
    return spec


NETS = {'caffenet': (CAFFENET, 227), 'vgg16': (vgg16_spec(), 224)}


def vgg16_prototxt(spec):
    out = ['name: "VGG_ILSVRC_16_layers"', 'input: "data"',
           'input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }']
    prev = 'data'
    for name, kind, a in spec:
        if kind == 'conv':
            out.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "{prev}" top: "{name}"'
                       f' convolution_param {{ num_output: {a[0]} kernel_size: {a[2]} pad: {a[4]} }} }}')
            prev = name
        elif kind == 'relu':
            out.append(f'layer {{ name: "{name}" type: "ReLU" bottom: "{prev}" top: "{prev}" }}')
        elif kind == 'maxpool':
            out.append(f'layer {{ name: "{name}" type: "Pooling" bottom: "{prev}" top: "{name}"'
                       f' pooling_param {{ pool: MAX kernel_size: {a[0]} stride: {a[1]} }} }}')
            prev = name
        elif kind == 'fc':
            out.append(f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{prev}" top: "{name}"'
                       f' inner_product_param {{ num_output: {a[0]} }} }}')
            prev = name
        elif kind == 'dropout':
            out.append(f'layer {{ name: "{name}" type: "Dropout" bottom: "{prev}" top: "{prev}"'
                       f' dropout_param {{ dropout_ratio: 0.5 }} }}')
        elif kind == 'softmax':
            out.append(f'layer {{ name: "{name}" type: "Softmax" bottom: "{prev}" top: "{name}" }}')
    return '\n'.join(out) + '\n'


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def time_fn(fn, warmup, iters):
    """(median wall ms, process CPU ms per call) over `iters` calls after warm-up."""
    for _ in range(warmup):
        fn()
    ts = []
    c0 = time.process_time()
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return median(ts), (time.process_time() - c0) * 1e3 / iters


def rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def torch_net(arch, bf16=False):
    """The network in torch.nn (fp32; bf16: LRN wrapped to compute in fp32)."""
    import torch
    import torch.nn as nn

    class Lrn32(nn.Module):
        def __init__(self):
            super().__init__()
            self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        def forward(self, x):
            y = self.lrn(x.float()).to(x.dtype)
            return y.contiguous(memory_format=torch.channels_last)

    spec, _ = NETS[arch]
    mods = []
    for name, kind, a in spec:
        if kind == 'conv':
            mods.append(nn.Conv2d(a[1], a[0], a[2], a[3], a[4], groups=a[5]))
        elif kind == 'relu':
            mods.append(nn.ReLU(inplace=True))
        elif kind == 'maxpool':
            mods.append(nn.MaxPool2d(a[0], a[1], ceil_mode=True))
        elif kind == 'lrn':
            mods.append(Lrn32() if bf16 else nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))
        elif kind == 'fc':
            if not any(isinstance(m, nn.Flatten) for m in mods):
                mods.append(nn.Flatten())
            mods.append(nn.Linear(a[1], a[0]))
        elif kind == 'dropout':
            mods.append(nn.Dropout(0.5))
        elif kind == 'softmax':
            mods.append(nn.Softmax(dim=1))
    return nn.Sequential(*mods).eval()


def run_torch(arch, batch, threads, warmup, iters):
    import torch
    torch.set_num_threads(threads)
    net = torch_net(arch)
    size = NETS[arch][1]
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        ms, cpu = time_fn(lambda: net(x), warmup, iters)
    return ms / batch, rss_mb(), cpu / batch


def run_torch_bf16cl(arch, batch, threads, warmup, iters):
    import torch
    torch.set_num_threads(threads)
    cl = torch.channels_last
    net = torch_net(arch, bf16=True).to(dtype=torch.bfloat16, memory_format=cl)
    size = NETS[arch][1]
    x = torch.randn(batch, 3, size, size).to(dtype=torch.bfloat16, memory_format=cl)
    with torch.inference_mode():
        ms, cpu = time_fn(lambda: net(x), warmup, iters)
    return ms / batch, rss_mb(), cpu / batch


def ort_dir(d):
    """DIR if DIR/node_modules/onnxruntime-node exists (npm install --prefix DIR)."""
    if d and os.path.isdir(os.path.join(d, 'node_modules', 'onnxruntime-node')):
        return d
    return None


def run_ort(arch, batch, threads, warmup, iters, ortdir):
    import torch
    torch.set_num_threads(threads)
    size = NETS[arch][1]
    with tempfile.TemporaryDirectory() as tmp:
        onnx = os.path.join(tmp, arch + '.onnx')
        with torch.no_grad():
            torch.onnx.export(torch_net(arch), torch.randn(batch, 3, size, size), onnx,
                              input_names=['data'], output_names=['prob'], opset_version=13)
        env = dict(os.environ, NODE_PATH=os.path.join(ortdir, 'node_modules'))
        r = subprocess.run(['node', os.path.join(HERE, 'ort_bench.js'), onnx, str(batch),
                            str(size), str(threads), str(warmup), str(iters)],
                           capture_output=True, text=True, check=True, env=env)
    j = json.loads(r.stdout.strip().splitlines()[-1])
    return j['ms_per_image'], j['peak_rss_mb'], j['cpu_ms_per_image']


def run_opencv(arch, batch, threads, warmup, iters):
    import cv2
    import numpy as np
    sys.path.insert(0, HERE)
    import usv_models
    cv2.setNumThreads(threads)
    spec, size = NETS[arch]
    if arch == 'caffenet':
        proto = os.path.join(SHARED, 'models', 'caffe', 'bvlc_reference_caffenet_deploy.prototxt')
        # the shared deploy file has fc8 = 1000; use it as is (fc8 is negligible)
        spec = [(n, k, (1000, 4096) if n == 'fc8' else a) for n, k, a in spec]
    else:
        proto = os.path.join(HERE, 'vgg16_deploy.prototxt')
    rng = np.random.default_rng(1)
    blobs = {}
    for name, kind, a in spec:
        if kind == 'conv':
            w = rng.standard_normal((a[0], a[1] // a[5], a[2], a[2]), dtype=np.float32)
            blobs[name] = [w * np.float32((2.0 / (a[1] // a[5] * a[2] * a[2])) ** 0.5),
                           np.zeros(a[0], np.float32)]
        elif kind == 'fc':
            w = rng.standard_normal((a[0], a[1]), dtype=np.float32)
            blobs[name] = [w * np.float32((2.0 / a[1]) ** 0.5), np.zeros(a[0], np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        cm = os.path.join(tmp, 'w.caffemodel')
        usv_models.write_caffemodel(cm, blobs)
        del blobs
        net = cv2.dnn.readNetFromCaffe(proto, cm)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)

    def fwd():
        net.setInput(x)
        net.forward()
    ms, cpu = time_fn(fwd, warmup, iters)
    return ms / batch, rss_mb(), cpu / batch


def run_usview(usview, arch, batch, threads, warmup, iters, kernels):
    r = subprocess.run([usview, 'bench', '--arch', arch, '--batch', str(batch), '--threads',
                        str(threads), '--iters', str(iters), '--warmup', str(warmup),
                        '--classes', str(NCLASS), '--kernels', kernels, '--json'],
                       capture_output=True, text=True, check=True)
    j = json.loads(r.stdout)
    return j['ms_per_image'], j['peak_rss_mb'], j['cpu_ms_per_image']


def child(engine, arch, batch, threads, warmup, iters, ortdir):
    if engine == 'ort':
        ms, rss, cpu = run_ort(arch, batch, threads, warmup, iters, ortdir)
    else:
        fn = {'torch': run_torch, 'torch_bf16cl': run_torch_bf16cl, 'opencv': run_opencv}[engine]
        ms, rss, cpu = fn(arch, batch, threads, warmup, iters)
    print(json.dumps({'ms_per_image': ms, 'peak_rss_mb': rss, 'cpu_ms_per_image': cpu}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--usview', default=os.environ.get('USVIEW', os.path.join(SRC, 'build', 'cli', 'usview')))
    ap.add_argument('--archs', default='caffenet,vgg16')
    ap.add_argument('--batches', default='1,16')
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--iters', type=int, default=0, help='timed runs (default: 5 CaffeNet, 2 VGG16)')
    ap.add_argument('--rounds', type=int, default=1,
                    help='run every engine this many times, interleaved, and keep each '
                         "engine's fastest round (a burst of load from elsewhere on a shared "
                         'host then spoils one round, not the row)')
    ap.add_argument('--engines', default='usview,torch,opencv')
    ap.add_argument('--kernels', default='default', help='usview bench --kernels')
    ap.add_argument('--ort-dir', default=os.environ.get('USV_ORT_DIR', ''),
                    help='folder with node_modules/onnxruntime-node')
    ap.add_argument('--json-out', help='write the rows as JSON to this file')
    ap.add_argument('--child', nargs=6, help=argparse.SUPPRESS)
    ap.add_argument('--write-vgg-prototxt', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        e, arch, b, t, w, n = a.child
        child(e, arch, int(b), int(t), int(w), int(n), a.ort_dir)
        return
    if a.write_vgg_prototxt:
        with open(os.path.join(HERE, 'vgg16_deploy.prototxt'), 'w') as f:
            f.write(vgg16_prototxt(NETS['vgg16'][0]))
        return
    engines = a.engines.split(',')
    if 'ort' in engines and not ort_dir(a.ort_dir):
        print('ort: ONNX Runtime not installed (needs --ort-dir DIR with '
              'node_modules/onnxruntime-node: npm install --prefix DIR --ignore-scripts '
              'onnxruntime-node@1.30.0); left out', file=sys.stderr)
        engines.remove('ort')
    rows = []
    print(f'{"arch":9} {"batch":>5} {"thr":>3} | ' +
          ' | '.join(f'{e:>8} ms   cpu ms  RSS MiB' for e in engines) + ' | ratios usview/peer',
          flush=True)
    for arch in a.archs.split(','):
        for b in map(int, a.batches.split(',')):
            for t in map(int, a.threads.split(',')):
                iters = a.iters or (5 if arch == 'caffenet' else 2)
                warm = 1 if arch == 'vgg16' else 2
                res = {}
                for e in [e for _ in range(max(a.rounds, 1)) for e in engines]:
                    try:
                        if e in ('usview', 'usview_bf16', 'usview_bf16all'):
                            k = {'usview_bf16': 'bf16',
                                 'usview_bf16all': 'bf16-all'}.get(e, a.kernels)
                            got = run_usview(a.usview, arch, b, t, warm, iters, k)
                        else:
                            r = subprocess.run([sys.executable, __file__, '--ort-dir',
                                                a.ort_dir, '--child', e, arch, str(b), str(t),
                                                str(warm), str(iters)],
                                               capture_output=True, text=True, check=True)
                            got = tuple(json.loads(r.stdout.strip().splitlines()[-1]).values())
                    except (subprocess.CalledProcessError, OSError, ValueError) as ex:
                        err = getattr(ex, 'stderr', '') or str(ex)
                        print(f'  {e} failed: {err.strip().splitlines()[-1] if err.strip() else ex}',
                              file=sys.stderr)
                        got = (float('nan'),) * 3
                    # the fastest round (NaN: a failed one, kept only if all failed)
                    if e not in res or not res[e][0] == res[e][0] or got[0] < res[e][0]:
                        res[e] = got
                ratios = []
                if 'usview' in res:
                    for e in engines:
                        if not e.startswith('usview'):
                            ratios.append(f'{e} {res["usview"][0] / res[e][0]:.2f}')
                print(f'{arch:9} {b:5} {t:3} | ' +
                      ' | '.join(f'{res[e][0]:11.2f} {res[e][2]:8.2f} {res[e][1]:8.0f}'
                                 for e in engines) +
                      ' | ' + ', '.join(ratios), flush=True)
                rows.append({'arch': arch, 'batch': b, 'threads': t,
                             **{e: {'ms_per_image': res[e][0], 'peak_rss_mb': res[e][1],
                                    'cpu_ms_per_image': res[e][2]} for e in engines}})
    print(json.dumps(rows))
    if a.json_out:
        with open(a.json_out, 'w') as f:
            json.dump(rows, f)


if __name__ == '__main__':
    main()
