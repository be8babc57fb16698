#!/usr/bin/python3
"""table.py - every row of the performance issue's table, peers measured in the same run.

  python3 bench/table.py [--quick] [--build DIR] [--ort-dir DIR] [--train LIST]
                         [--e2e-n N] [--results DIR] [--out FILE] [--rows LIST]

Rows (2 threads, ms per image unless stated; each engine in its own process):
  CaffeNet b1, CaffeNet b16, VGG16 b1, VGG16 b16
      bench/peers.py: usview fp32 (`usview bench`, default kernels) and bf16
      (`--kernels bf16`), PyTorch fp32, PyTorch bf16 channels-last, OpenCV DNN, ONNX
      Runtime (npm onnxruntime-node under Node.js, when --ort-dir holds it)
  daemon peak RSS, VGG16
      usviewd (the default configuration: 2 workers) with a random-weight VGG16 model
      (`usview bench --arch vgg16 --save`), one phantom instance sent with storescu and
      classified, VmHWM from /proc; model.precision fp32 and bf16. Peers: the peak RSS of
      their VGG16 batch-1 benchmark processes from the rows above.
  paper protocol training, CaffeNet and VGG16
      `usview train --preset caffenet|vgg16` (CaffeNet 1000 x 256, VGG16 8000 x 32, 10
      views, features included) on 4,103 phantom images (373 studies) with a random-weight
      backbone, wall time of the whole command. CaffeNet takes about 15 min, VGG16 hours, so
      they run only when named in --train (e.g. --train caffenet,vgg16); each run writes
      RESULTS/train-PRESET-PRECISION.json and the table otherwise prints the last such file (date and
      commit included), or "not measured".
  C-STORE -> SR throughput
      bench/e2e.sh (500 instances; --quick 60) on the demo model: usviewd images/s over
      `usview bench` images/s at the same batch and threads (classified; SR delivered).

Columns: usview fp32, usview bf16, each peer, ratio of the best usview value to the best
peer value (< 1: usview is ahead for times and memory), goal. --quick: 1 timed run per
engine (smoke test; numbers are not meaningful). The markdown table goes to stdout and to
--out; progress to stderr. Defaults: --build build, --results BUILD/bench-results,
--ort-dir $USV_ORT_DIR or BUILD/ort (npm install --prefix BUILD/ort --ignore-scripts
onnxruntime-node@1.30.0). Needs python3-torch, python3-opencv, DCMTK tools, a built tree.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
PY = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable

PEERS = [('torch', 'PyTorch fp32'), ('torch_bf16cl', 'PyTorch bf16 CL'),
         ('opencv', 'OpenCV DNN'), ('ort', 'ONNX Runtime')]
SPEED_ROWS = [('caffenet', 1, 'CaffeNet b1 (ms/image)', 6.0),
              ('caffenet', 16, 'CaffeNet b16 (ms/image)', 3.0),
              ('vgg16', 1, 'VGG16 b1 (ms/image)', 60.0),
              ('vgg16', 16, 'VGG16 b16 (ms/image)', 50.0)]
TRAIN_GOAL_MIN = {'caffenet': 5.0, 'vgg16': 15.0}
PAPER_H = {'caffenet': 2.5, 'vgg16': 27.5}
RSS_GOAL_MB = 600.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fmt(v, nd=1):
    if v is None or v != v:
        return '-'
    return f'{v:.{nd}f}' if v < 1000 else f'{v:.0f}'


def git_rev():
    r = subprocess.run(['git', '-C', SRC, 'rev-parse', '--short', 'HEAD'], capture_output=True,
                       text=True)
    dirty = subprocess.run(['git', '-C', SRC, 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + ('+changes' if dirty else '')


def cpu_name():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return '?'


# ---- speed rows -------------------------------------------------------------------------

def peers(a, work):
    out = os.path.join(work, 'peers.json')
    engines = 'usview,usview_bf16,usview_bf16all,torch,torch_bf16cl,opencv,ort'
    cmd = [PY, os.path.join(HERE, 'peers.py'), '--usview', a.usview, '--archs', 'caffenet,vgg16',
           '--batches', '1,16', '--threads', '2', '--engines', engines, '--json-out', out,
           '--ort-dir', a.ort_dir or '']
    if a.quick:
        cmd += ['--iters', '1']
    else:
        cmd += ['--rounds', str(a.rounds)]
        if a.iters:
            cmd += ['--iters', str(a.iters)]
    log('peers:', ' '.join(cmd[1:]))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if not line.startswith('['):  # the last line repeats the rows as JSON
            log('  ' + line.rstrip())
    if p.wait() != 0 or not os.path.exists(out):
        log('peers.py failed')
        return {}
    with open(out) as f:
        rows = json.load(f)
    return {(r['arch'], r['batch']): r for r in rows}


def cpu_note(res):
    """CPU time / wall time of each engine per speed row: about 2 when the engine had both
    cores; much less means other load took them and its times are inflated."""
    out = []
    for arch, batch, title, _ in SPEED_ROWS:
        r = res.get((arch, batch), {})
        parts = []
        for e in ['usview', 'usview_bf16', 'usview_bf16all'] + [e for e, _ in PEERS]:
            v = r.get(e, {})
            if v.get('ms_per_image') and v.get('cpu_ms_per_image') is not None and \
                    v['ms_per_image'] == v['ms_per_image']:
                parts.append(f'{e} {v["cpu_ms_per_image"] / v["ms_per_image"]:.2f}')
        if parts:
            out.append(f'- {title.split(" (")[0]}: ' + ', '.join(parts))
    return out


def speed_row(res, arch, batch, title, goal):
    r = res.get((arch, batch), {})

    def ms(e):
        v = r.get(e, {}).get('ms_per_image')
        return v if v is not None and v == v else None
    u = [ms('usview'), ms('usview_bf16')]
    p = [ms(e) for e, _ in PEERS]
    # the ratio and the goal use the daemon's settings (fp32, bf16); bf16-all is shown
    ub = min((v for v in u if v), default=None)
    u.append(ms('usview_bf16all'))
    pb = min((v for v in p if v), default=None)
    ratio = f'{ub / pb:.2f}' if ub and pb else '-'
    met = '' if ub is None else (' met' if ub <= goal else ' not met')
    return [title] + [fmt(v) for v in u] + [fmt(v) for v in p] + [ratio, f'<= {goal:g}{met}']


# ---- daemon RSS -------------------------------------------------------------------------

def daemon_rss(a, work, model, dcm, precision):
    port = free_port()
    spool = os.path.join(work, 'spool-' + precision)
    logf = open(os.path.join(work, f'usviewd-{precision}.log'), 'w')
    d = subprocess.Popen([a.usviewd, '-c', os.path.join(SRC, 'config', 'usviewd.yaml'),
                          '--bind', '127.0.0.1', '--port', str(port), '--spool', spool,
                          '--model', model, '--set', 'spool.min_free_mb=0',
                          '--set', 'log.journald=false', '--set', 'http.enabled=false',
                          '--set', 'log.level=warning', '--set', f'model.precision={precision}'],
                         stdout=subprocess.DEVNULL, stderr=logf)
    try:
        deadline = time.time() + 300
        while subprocess.run(['echoscu', '-aec', 'USVIEW', '127.0.0.1', str(port)],
                             capture_output=True).returncode != 0:
            if d.poll() is not None or time.time() > deadline:
                raise RuntimeError(f'usviewd did not start (see {logf.name})')
            time.sleep(0.2)
        subprocess.run(['storescu', '-aec', 'USVIEW', '127.0.0.1', str(port), dcm], check=True,
                       capture_output=True)
        idx = os.path.join(spool, 'results.jsonl')
        while not (os.path.exists(idx) and os.path.getsize(idx) > 0):
            if d.poll() is not None or time.time() > deadline:
                raise RuntimeError('no result from usviewd')
            time.sleep(0.1)
        with open(idx) as f:
            outcome = json.loads(f.readline()).get('outcome')
        with open(f'/proc/{d.pid}/status') as f:
            hwm = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
        return hwm / 1024.0, outcome
    finally:
        d.terminate()
        try:
            d.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
        logf.close()


def rss_row(a, work, res):
    model = os.path.join(work, 'vgg16.usvm')
    subprocess.run([a.usview, 'bench', '--arch', 'vgg16', '--iters', '1', '--warmup', '0',
                    '--save', model], check=True, capture_output=True)
    ph = os.path.join(work, 'phantom1')
    subprocess.run([a.usview, 'phantom', '--out', ph, '--studies', '1', '--seed', '3'],
                   check=True, capture_output=True)
    dcm = os.path.join(ph, 'S00000', 'I0001.dcm')
    u = []
    for prec in ('fp32', 'bf16'):
        try:
            mb, outcome = daemon_rss(a, work, model, dcm, prec)
            log(f'usviewd VGG16 {prec}: VmHWM {mb:.0f} MiB (instance {outcome})')
            u.append(mb)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
            log(f'usviewd VGG16 {prec}: {e}')
            u.append(None)
    os.remove(model)
    r = res.get(('vgg16', 1), {})
    p = [r.get(e, {}).get('peak_rss_mb') for e, _ in PEERS]
    p = [v if v is not None and v == v else None for v in p]
    ub = min((v for v in u if v), default=None)
    pb = min((v for v in p if v), default=None)
    ratio = f'{ub / pb:.2f}' if ub and pb else '-'
    met = '' if ub is None else (' met' if ub <= RSS_GOAL_MB else ' not met')
    return (['Daemon peak RSS, VGG16 (MiB; peers: bench process b1)'] +
            [fmt(v, 0) for v in u] + ['-'] + [fmt(v, 0) for v in p] +
            [ratio, f'<= {RSS_GOAL_MB:.0f}{met}'])


# ---- training ---------------------------------------------------------------------------

def model_times(path):
    import struct
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
    meta = json.loads(hdr['__metadata__']['usview'])['meta']
    prov = meta.get('provenance')
    prov = json.loads(prov) if isinstance(prov, str) else (prov or {})
    return prov.get('time_s', {})


# The backbone has random weights (the ImageNet caffemodels are not shipped): its pool5
# features are orders of magnitude larger than ImageNet ones, and at the paper's rates SGD
# diverges (loss about 1e5 after 5 iterations, not finite after 20-50). The timing runs use
# the presets' rates / 100; the work per iteration is the same.
RANDOM_BACKBONE_LR = {'caffenet': '0.00001,0.00001,0.0001',
                      'vgg16': '0.00000125,0.00000125,0.0000125'}


def train_run(a, work, preset, precision):
    """Times one training run; with --quick a smoke run (8 studies, 5 iterations) that
    writes no results file."""
    studies = 8 if a.quick else 373
    ph = os.path.join(work, 'phantom-train')
    if not os.path.isdir(ph):
        log(f'training: writing {studies} phantom studies ({studies * 11} images)')
        subprocess.run([a.usview, 'phantom', '--out', ph, '--studies', str(studies), '--seed',
                        '11'], check=True, capture_output=True)
    bb = os.path.join(work, preset + '-backbone.usvm')
    subprocess.run([a.usview, 'bench', '--arch', preset, '--iters', '1', '--warmup', '0',
                    '--save', bb], check=True, capture_output=True)
    out = os.path.join(work, preset + '-trained.usvm')
    cmd = [a.usview, 'train', '--preset', preset, '--backbone', bb, '--data',
           os.path.join(ph, 'labels.csv'), '--threads', '2', '--cache',
           os.path.join(work, 'cache-' + preset), '-o', out, '--quiet', '--precision',
           precision, '--lr', RANDOM_BACKBONE_LR[preset]]
    if a.quick:
        cmd += ['--iterations', '5']
    log('training:', ' '.join(cmd[1:]))
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    rec = {'preset': preset, 'precision': precision, 'images': studies * 11,
           'wall_s': round(wall, 1),
           'phases_s': model_times(out), 'date': datetime.datetime.utcnow().isoformat() + 'Z',
           'commit': git_rev(), 'cpu': cpu_name(), 'threads': 2}
    if not a.quick:
        os.makedirs(a.results, exist_ok=True)
        with open(os.path.join(a.results, f'train-{preset}-{precision}.json'), 'w') as f:
            json.dump(rec, f, indent=1)
    for p in (bb, out):
        os.remove(p)
    return rec


def train_cell(a, work, preset, precision):
    """(cell text, minutes or None, images) of one precision: trained now when the preset is
    in --train, else the last measured results file."""
    rec, note = None, ''
    if preset in a.train and precision in a.precisions.split(','):
        try:
            rec = train_run(a, work, preset, precision)
            note = ('quick smoke run: 88 images, 5 iterations, not the protocol' if a.quick
                    else 'this run')
        except (subprocess.CalledProcessError, OSError) as e:
            log(f'training {preset} {precision} failed: {e}')
    if rec is None:
        path = os.path.join(a.results, f'train-{preset}-{precision}.json')
        if os.path.exists(path):
            with open(path) as f:
                rec = json.load(f)
            note = f'last measured {rec.get("date", "?")[:16]}, {rec.get("commit", "?")}'
    if rec is None:
        return f'not measured (--train {preset})', None, 0
    m = rec['wall_s'] / 60
    ph = rec.get('phases_s', {})
    keys = [k for k in ('mean_image', 'features', 'train') if k in ph] or list(ph)
    detail = ', '.join(f'{k.replace("_", " ")} {ph[k] / 60:.1f}' for k in keys)
    cell = f'{m:.1f} ({note}; {detail})' if detail else f'{m:.1f} ({note})'
    return cell, m, rec.get('images')


def train_row(a, work, preset):
    """usview train --precision fp32 and bf16 (BF16 GEMMs, FP32 master weights; the frozen
    convolutions in BF16 too) in the fp32 and bf16 columns."""
    goal = TRAIN_GOAL_MIN[preset]
    title = (f'Paper protocol training, {"CaffeNet (1000 x 256)" if preset == "caffenet" else "VGG16 (8000 x 32)"}'
             ' on 4,103 images (min)')
    cells = [train_cell(a, work, preset, p) for p in ('fp32', 'bf16')]
    full = [m for _, m, n in cells if m is not None and n == 4103]
    if not full:  # nothing measured, or a --quick smoke run: no comparison
        return [title, cells[0][0], cells[1][0], '-'] + ['-'] * len(PEERS) + [
            f'paper {PAPER_H[preset]:g} h', f'<= {goal:g}']
    m = min(full)
    ratio = f'{m / (PAPER_H[preset] * 60):.3f} of paper {PAPER_H[preset]:g} h'
    return [title, cells[0][0], cells[1][0], '-'] + ['-'] * len(PEERS) + [
        ratio, f'<= {goal:g}{" met" if m <= goal else " not met"}']


# ---- end to end -------------------------------------------------------------------------

def e2e_row(a, work):
    model = os.path.join(a.build, 'demo-views.usvm')
    title = 'C-STORE -> SR throughput, usviewd / bare engine'
    empty = [title, '-', '-', '-'] + ['-'] * len(PEERS)
    if not os.path.exists(model):
        log('e2e: building the demo model (scripts/make-demo-model.sh)')
        r = subprocess.run(['sh', os.path.join(SRC, 'scripts', 'make-demo-model.sh'), '-b',
                            a.build], capture_output=True, text=True)
        if r.returncode != 0:
            log('e2e: make-demo-model.sh failed:', r.stderr.strip()[-500:])
            return empty + ['-', '>= 0.9']
    n = a.e2e_n or (60 if a.quick else 500)
    env = dict(os.environ, USV_BUILD_DIR=a.build)
    log(f'e2e: bench/e2e.sh -n {n}')
    r = subprocess.run(['sh', os.path.join(HERE, 'e2e.sh'), '-n', str(n), '-m', model],
                       capture_output=True, text=True, env=env)
    for line in r.stdout.splitlines():
        log('  ' + line)
    m = re.search(r'ratios to the engine: classified ([0-9.]+), SR delivered ([0-9.]+)', r.stdout)
    if r.returncode != 0 or not m:
        log('e2e.sh failed:', r.stderr.strip()[-500:])
        return empty + ['-', '>= 0.9']
    cls, sr = float(m.group(1)), float(m.group(2))
    met = ' met' if sr >= 0.9 else ' not met'
    return [title, f'{sr:.2f} SR delivered ({cls:.2f} classified; {n} instances)', '-', '-'] + \
        ['-'] * len(PEERS) + ['(engine = 1.0)', f'>= 0.9{met}']


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='1 timed run per engine, short e2e')
    ap.add_argument('--precisions', default='fp32,bf16',
                    help='precisions that --train runs now (the others: last results file)')
    ap.add_argument('--rounds', type=int, default=2,
                    help="rounds of every engine, interleaved; each engine's fastest is shown "
                         '(default 2; --quick: 1)')
    ap.add_argument('--iters', type=int, default=0,
                    help='timed runs per engine and row (default: peers.py, 5 CaffeNet, 2 VGG16)')
    ap.add_argument('--build', default=os.environ.get('USV_BUILD_DIR', os.path.join(SRC, 'build')))
    ap.add_argument('--ort-dir', default=os.environ.get('USV_ORT_DIR', ''))
    ap.add_argument('--train', default='', help='presets to train now: caffenet,vgg16')
    ap.add_argument('--e2e-n', type=int, default=0, help='instances for e2e.sh')
    ap.add_argument('--results', help='folder of train-PRESET-PRECISION.json (default BUILD/bench-results)')
    ap.add_argument('--out', help='also write the markdown table here')
    ap.add_argument('--rows', default='speed,rss,train,e2e',
                    help='rows to run (speed,rss,train,e2e; rss without speed: no peer RSS)')
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    a.usview = os.path.join(a.build, 'cli', 'usview')
    a.usviewd = os.path.join(a.build, 'daemon', 'usviewd')
    a.results = a.results or os.path.join(a.build, 'bench-results')
    a.ort_dir = a.ort_dir or os.path.join(a.build, 'ort')
    a.train = [t for t in a.train.split(',') if t]
    for t in a.train:
        if t not in TRAIN_GOAL_MIN:
            ap.error(f'--train: {t}: caffenet or vgg16')
    for b in (a.usview, a.usviewd):
        if not os.access(b, os.X_OK):
            ap.error(f'{b} not found: build first (--build DIR)')
    rows = a.rows.split(',')
    t0 = time.time()
    load0 = os.getloadavg()[0]
    work = tempfile.mkdtemp(prefix='usv-table-')
    table = []
    res = {}
    try:
        res = peers(a, work) if 'speed' in rows else {}
        if 'speed' in rows:
            for arch, batch, title, goal in SPEED_ROWS:
                table.append(speed_row(res, arch, batch, title, goal))
        if 'rss' in rows:
            table.append(rss_row(a, work, res))
        if 'train' in rows:
            for preset in ('caffenet', 'vgg16'):
                table.append(train_row(a, work, preset))
        if 'e2e' in rows:
            table.append(e2e_row(a, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ort_note = ('ONNX Runtime: npm onnxruntime-node from ' + a.ort_dir if a.ort_dir and
                os.path.isdir(os.path.join(a.ort_dir, 'node_modules', 'onnxruntime-node'))
                else 'ONNX Runtime: not installed, column empty (Debian 12 has no package; '
                f'npm install --prefix {a.ort_dir} --ignore-scripts onnxruntime-node@1.30.0)')
    head = ['row', 'usview fp32', 'usview bf16', 'usview bf16-all*'] + [n for _, n in PEERS] + [
        'ratio usview-best / peer-best', 'goal']
    lines = [f'usview performance table, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, '
             f'commit {git_rev()}, {cpu_name()}, {os.cpu_count()} CPUs, 2 threads'
             f'{", QUICK (1 timed run: not meaningful)" if a.quick else ""}; load average '
             f'{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; '
             f'{(time.time() - t0) / 60:.1f} min',
             ort_note]
    if load0 > 0.7:
        lines.append(f'WARNING: load average {load0:.1f} before the run: other processes share '
                     'the 2 cores, so 2-thread times are inflated, most for engines whose '
                     'threads wait at barriers (PyTorch and OpenCV at batch 1 can be 10x '
                     'slower than on a quiet machine); rerun when the machine is idle')
    lines += ['', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    lines += ['| ' + ' | '.join(r) + ' |' for r in table]
    lines += ['', '* bf16-all: convolutions in BF16 too (`--kernels bf16-all`); not a daemon '
              'setting (top-1 agreement with fp32 below 99.5 % on the gallbladder test set), '
              'so it is left out of the ratio and the goal.']
    note = cpu_note(res)
    if note:
        lines += ['', 'CPU time / wall time per engine (about 2.0 when it had both cores; much '
                  'less: the machine was busy and that time is inflated):'] + note
    text = '\n'.join(lines) + '\n'
    sys.stdout.write(text)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
