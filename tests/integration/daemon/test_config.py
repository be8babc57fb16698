"""usviewd --check-config and --dump-config.

A table of broken configuration files: each must make `usviewd -c FILE
--check-config` exit 1 with one line that names the file, the line and
column (1-based, counted here from the text itself) and the key. Good files
(the shipped default, a full one, the daemon's own --dump-config output) pass;
command-line overrides are validated too.
"""

import os
import subprocess

import usvtest

ck = usvtest.Check("daemon_config")
tmp = usvtest.tempdir("usv-d-config-")
usviewd = os.environ["USVIEWD"]
src = os.environ.get("USV_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def run(*args):
    return subprocess.run([usviewd] + list(args), capture_output=True, text=True, timeout=30)


def pos(text, needle):
    """1-based line and column of the first occurrence of needle."""
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


DEST = "  - {name: pacs, ae_title: PACS, host: 10.0.0.1, port: 104}\n"
# (name, text, needle where the error points, key, words of the reason)
CASES = [
    ("unknown key", "listen:\n  port: 11112\n  colour: red\n", "colour", "listen.colour",
     "unknown key"),
    ("unknown section", "listner:\n  port: 1\n", "listner", "listner", "unknown key"),
    ("wrong type", "model:\n  workers: many\n", "many", "model.workers", "expected an integer"),
    ("wrong node type", "spool:\n  dir: [a, b]\n", "[a, b]", "spool.dir", "expected a scalar"),
    ("out of range", "listen:\n  port: 70000\n", "70000", "listen.port", "out of range"),
    ("negative", "model:\n  batch_wait_ms: -5\n", "-5", "model.batch_wait_ms", "out of range"),
    ("fraction out of range", "exclusion:\n  colour_fraction: 2\n", "2\n",
     "exclusion.colour_fraction", "out of range"),
    ("bad enum", "frames:\n  policy: sometimes\n", "sometimes", "frames.policy",
     "not one of: first, middle, every_nth, all"),
    ("bad log level", "log: {level: chatty, journald: true}\n", "chatty", "log.level",
     "not one of"),
    ("bad bool", "http:\n  enabled: perhaps\n", "perhaps", "http.enabled", "true or false"),
    ("too many associations", "listen:\n  max_associations: 65\n", "65",
     "listen.max_associations", "out of range [1, 64]"),
    ("blank AE title", "listen:\n  ae_title: '  '\n", "'  '", "listen.ae_title", "blank"),
    ("AE title too long", "listen:\n  ae_title: ABCDEFGHIJKLMNOPQRS\n", "ABCDEFGHIJKLMNOPQRS",
     "listen.ae_title", "16"),
    ("duplicate destination", "destinations:\n" + DEST +
     "  - {name: pacs, ae_title: OTHER, host: 10.0.0.2, port: 11112}\n",
     "{name: pacs, ae_title: OTHER", "destinations[1]", "duplicate name 'pacs'"),
    ("destination without host", "destinations:\n  - {name: x, ae_title: X, port: 104}\n",
     "{name: x", "destinations[0]", "missing required key 'host'"),
    ("bad send kind", "destinations:\n  - {name: x, ae_title: X, host: h, port: 1, "
     "send: [sr, pdf]}\n", "pdf", "destinations[0].send", "not one of: sr, tagged"),
    ("unknown destination key", "destinations:\n  - name: x\n    ae_title: X\n    host: h\n"
     "    port: 1\n    retries: 3\n", "retries", "destinations[0].retries", "unknown key"),
    ("backoff order", "destinations:\n  - {name: x, ae_title: X, host: h, port: 1, "
     "backoff_initial_s: 100, backoff_max_s: 10}\n", "{name: x", "destinations[0]",
     "backoff_initial_s"),
    ("crop outside the image", "crop:\n  - {manufacturer: X, rows: 100, cols: 100, width: 50, "
     "height: 50, x: 80}\n", "{manufacturer", "crop[0]", "does not fit"),
    ("duplicate key", "model:\n  top_k: 3\n  top_k: 4\n", "top_k: 4", "model.top_k",
     "duplicate key"),
    ("peer without AE", "allowed_peers:\n  - {host: 10.0.0.9}\n", "{host", "allowed_peers[0]",
     "missing required key 'ae_title'"),
]

for i, (name, text, needle, key, reason) in enumerate(CASES):
    path = os.path.join(tmp, "bad%02d.yaml" % i)
    with open(path, "w") as f:
        f.write(text)
    line, col = pos(text, needle)
    r = run("-c", path, "--check-config")
    want = "%s:%d:%d: %s: " % (path, line, col, key)
    msg = r.stderr.strip()
    ck(r.returncode == 1 and want in msg and reason in msg and len(msg.splitlines()) == 1,
       "%s: rc=%d stderr=%r, want %r ... %r" % (name, r.returncode, msg, want, reason))
    # the daemon refuses to start with it too
    r2 = run("-c", path)
    ck(r2.returncode == 1 and want in r2.stderr, "%s: daemon started with a bad file" % name)

# YAML syntax error: position of the problem
path = os.path.join(tmp, "syntax.yaml")
with open(path, "w") as f:
    f.write("listen:\n  port: 1\n bad: [\n")
r = run("-c", path, "--check-config")
ck(r.returncode == 1 and (path + ":3:2: ") in r.stderr and "YAML syntax error" in r.stderr,
   "syntax error: %r" % r.stderr)
r = run("-c", os.path.join(tmp, "missing.yaml"), "--check-config")
ck(r.returncode == 1 and "missing.yaml" in r.stderr, "missing file: %r" % r.stderr)

# good files
for shipped in ("packaging/usviewd.yaml", "config/usviewd.yaml"):
    r = run("-c", os.path.join(src, shipped), "--check-config")
    ck(r.returncode == 0 and "configuration OK" in r.stdout, "%s: %s" % (shipped, r.stderr))
full = os.path.join(tmp, "full.yaml")
with open(full, "w") as f:
    f.write("listen: {bind: 127.0.0.1, port: 4242, ae_title: NODE}\n"
            "allowed_peers:\n  - {ae_title: PACS, host: 127.0.0.1}\n"
            "spool: {dir: /tmp/x, min_free_mb: 0}\n"
            "frames: {policy: every_nth, n: 3}\n"
            "destinations:\n" + DEST +
            "  - {name: arch, ae_title: ARCH, host: a, port: 1, send: [sr, tagged], "
            "sop_classes: [1.2.840.10008.5.1.4.1.1.88.33]}\n")
r = run("-c", full, "--check-config")
ck(r.returncode == 0, "full file: %s" % r.stderr)
# --dump-config output is itself a valid file that dumps identically
r = run("-c", full, "--dump-config")
dump = os.path.join(tmp, "dump.yaml")
with open(dump, "w") as f:
    f.write(r.stdout)
r2 = run("-c", dump, "--dump-config")
ck(r.returncode == 0 and r2.returncode == 0 and r.stdout == r2.stdout and "4242" in r.stdout
   and "every_nth" in r.stdout, "dump round trip")
# command-line overrides win over the file and are validated
r = run("-c", full, "--port", "5000", "--dump-config")
ck(r.returncode == 0 and "port: 5000" in r.stdout, "--port override")
r = run("-c", full, "--set", "listen.port=0", "--check-config")
ck(r.returncode == 1 and "listen.port" in r.stderr and "out of range" in r.stderr,
   "--set out of range: %r" % r.stderr)
r = run("-c", full, "--set", "listen.nope=1", "--check-config")
ck(r.returncode == 1 and "listen.nope: unknown key" in r.stderr, "--set unknown key")
r = run("-c", full, "--send-to", "bad", "--check-config")
ck(r.returncode == 1 and "AE@HOST:PORT" in r.stderr, "--send-to syntax")
r = run("--spool", tmp)
ck(r.returncode == 2 and "usage" in r.stderr, "quick start without --port/--aet")
# strict numbers on the command line: trailing junk and signs are usage errors
for bad in ("10x", "-1", "", "99999999999999999999999"):
    r = run("-c", full, "--min-free", bad, "--check-config")
    ck(r.returncode == 2 and "--min-free" in r.stderr, "--min-free %r: %r" % (bad, r.stderr))
r = run("-c", full, "--min-free", "1048577", "--dump-config")
ck(r.returncode == 0 and "min_free_mb: 2" in r.stdout, "--min-free rounds up to MB")
r = run("-c", full, "--allow", "A\\B", "--check-config")
ck(r.returncode != 0 and "--allow" in r.stderr, "--allow with a bad AE title: %r" % r.stderr)
r = run("-c", full, "--bogus", "--check-config")
ck(r.returncode == 2, "unknown option")
r = run("-c", full, "--port", "--check-config")
ck(r.returncode != 0, "option without its value")
ck.done()
