#!/usr/bin/env python3
"""Every usview command parses its options one way (cli/opt.h): a number
with trailing junk, a sign where none belongs, white space or a value out of
range, an unknown option, a missing value or a value given to a flag is a
usage error: exit status 2, nothing done, and one line on stderr
"usview CMD: --OPT: reason" that names the option. --help prints the usage
on stdout and exits 0."""
import os
import subprocess
import sys
import tempfile

USVIEW = os.environ["USVIEW"]

COMMANDS = ["bench", "classify", "compare", "eval", "forward", "harvest", "import-caffe",
            "import-tflite", "model-info", "phantom", "preview", "report"]

# (command line, the option the message must name)
BAD_VALUES = [
    (["classify", "-m", "m.usvm", "--top", "3x", "a.png"], "--top"),
    (["classify", "-m", "m.usvm", "--threads", "-1", "a.png"], "--threads"),
    (["classify", "-m", "m.usvm", "--top", "0", "a.png"], "--top"),
    (["bench", "--arch", "caffenet", "--threads", "-1"], "--threads"),
    (["bench", "--arch", "caffenet", "--iters", "1e3"], "--iters"),
    (["bench", "--arch", "caffenet", "--batch", "99999999999999999999999"], "--batch"),
    (["bench", "--arch", "caffenet", "--warmup", " 2"], "--warmup"),
    (["bench", "--arch", "caffenet", "--classes", ""], "--classes"),
    (["forward", "-m", "a", "--in", "b", "--out", "c", "--threads", "2x"], "--threads"),
    (["eval", "-m", "a", "--data", "b", "--threads", "0"], "--threads"),
    (["eval", "-m", "a", "--data", "b", "--batch", "16 "], "--batch"),
    (["eval", "-m", "a", "--data", "b", "--group-sep", "ab"], "--group-sep"),
    (["report", "-m", "a", "--eval", "b", "--perplexity", "nan"], "--perplexity"),
    (["report", "-m", "a", "--eval", "b", "--perplexity", "inf"], "--perplexity"),
    (["report", "-m", "a", "--eval", "b", "--max-errors", "10001"], "--max-errors"),
    (["report", "-m", "a", "--eval", "b", "--seed", "1.5"], "--seed"),
    (["phantom", "--out", "@OUT@", "--studies", "0"], "--studies"),
    (["phantom", "--out", "@OUT@", "--studies", "1", "--seed", "-3"], "--seed"),
    (["phantom", "--out", "@OUT@", "--studies", "1", "--per-view", "2x"], "--per-view"),
    (["phantom", "--out", "@OUT@", "--studies", "1", "--manufacturer", "acme"],
     "--manufacturer"),
    (["preview", "a.dcm", "--info", "--frame", "1x"], "--frame"),
    (["preview", "a.dcm", "--info", "--frame", "-1"], "--frame"),
    (["compare", "--table", "1,2,3,x"], "--table"),
    (["compare", "--table", "1,2,3"], "--table"),
    (["compare", "--counts", "5/3", "1/2"], "--counts"),
    (["compare", "--counts", "5/10"], "--counts"),
    (["import-caffe", "--arch", "alexnet", "--prototxt", "p", "--weights", "w", "-o", "m"],
     "--arch"),
    # usage errors that getopt reports
    (["classify", "a.png", "-m"], "-m"),
    (["forward", "--model"], "--model"),
    (["eval", "--predictions", "p.csv", "--json=1"], "--json"),
    (["bench", "--arch=caffenet", "-x"], "-x"),
    # required options
    (["forward", "--in", "x.npy", "--out", "y.npy"], "--model"),
    (["report", "-m", "a"], "--eval"),
    (["phantom", "--studies", "1"], "--out"),
]


def usview(args):
    return subprocess.run([USVIEW] + args, capture_output=True, text=True, timeout=60)


def main():
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "phantom")
        for args, opt in BAD_VALUES:
            args = [out if a == "@OUT@" else a for a in args]
            r = usview(args)
            cmd = args[0]
            assert r.returncode == 2, (args, r.returncode, r.stderr)
            first = r.stderr.splitlines()[0] if r.stderr else ""
            assert first.startswith(f"usview {cmd}: {opt}:"), (args, r.stderr)
            assert r.stdout == "", (args, r.stdout)
            n += 1
        # a refused phantom run wrote nothing
        assert not os.path.exists(out), os.listdir(tmp)

        for cmd in COMMANDS:
            r = usview([cmd, "--no-such-option"])
            assert r.returncode == 2, (cmd, r.returncode, r.stderr)
            assert r.stderr.startswith(f"usview {cmd}: --no-such-option: unknown option"), \
                (cmd, r.stderr)
            r = usview([cmd, "--help"])
            assert r.returncode == 0 and r.stdout.startswith(f"usage: usview {cmd}"), \
                (cmd, r.returncode, r.stdout, r.stderr)
            r = usview([cmd, "-h"])
            assert r.returncode == 0 and r.stdout.startswith(f"usage: usview {cmd}"), cmd
            n += 3

        # good values still get through the parser: compare computes
        r = usview(["compare", "--counts", "5/10", "6/10", "--json"])
        assert r.returncode == 0 and '"table":[5,5,6,4]' in r.stdout, (r.returncode, r.stdout)
        r = usview(["compare", "--json", "--table", "3,1,1,3"])
        assert r.returncode == 0 and '"chi2":0.5' in r.stdout, r.stdout
        # the number parser takes +N and leading zeros, and the bounds themselves
        r = usview(["bench", "--arch", "caffenet", "--threads", "257"])
        assert r.returncode == 2 and "[1, 256]" in r.stderr, r.stderr
        n += 3
    print(f"cli options: {n} checks ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
