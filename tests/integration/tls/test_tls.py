"""DICOM TLS of usviewd (listen.tls, destinations[].tls), end to end.

Certificates are made here with the openssl command: CA 1 signs the server
certificate (serial 0x1001, later renewed as 0x2002), a client certificate
and Orthanc's certificate; CA 2 signs a second client certificate. Checked,
with usviewd's real listen sockets on loopback:

- storescu +tls with CA 1's client certificate stores a synthetic instance
  over the TLS port and usviewd classifies it (results.jsonl);
- storescu without a client certificate (+tla), with CA 2's certificate, and
  in plain TCP on the TLS port are refused; each refusal is logged with the
  peer address and OpenSSL's reason (peer did not return a certificate /
  client certificate verification / plain DICOM), the metric
  usview_tls_handshake_failures_total counts 3, and the daemon goes on
  serving (TLS and plain port);
- 30 stalled TLS connections (silent, a partial ClientHello, a completed
  handshake with half an A-ASSOCIATE-RQ) with acse_timeout 30 s: storescu
  +tls still stores in under 5 s, they are held as half-open connections,
  and when they close they are not counted as refused handshakes; with
  acse_timeout 5 s a stalled handshake is closed by the server after 4-8 s;
- SIGHUP after the certificate files were replaced by a renewed pair: the
  served certificate (openssl s_client) changes from serial 1001 to 2002;
  a SIGHUP with a broken certificate file keeps serving 2002, logs why,
  and storescu +tls still works;
- Orthanc 1.10 with DICOM TLS (its own certificate from CA 1, client
  certificates required) C-STOREs to usviewd's TLS port (listen.port 0:
  TLS only), and usviewd sends
  the SR back over TLS (a destination with tls:); Orthanc then holds it;
  a second destination whose ca_file (CA 2) does not sign Orthanc's
  certificate delivers nothing and logs the verification failure.

usage: test_tls.py MAKE_MODEL
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

import daemonlib
import usvtest
from daemonlib import SR_COMPREHENSIVE, Usviewd, parse_prometheus, sample as metric
from orthanc import Orthanc, orthanc_binary

ck = usvtest.Check("tls_daemon")
tmp = usvtest.tempdir("usv-tls-")
model = os.path.join(tmp, "tiny.model")
subprocess.run([sys.argv[1], model, "5"], check=True)
pki = os.path.join(tmp, "pki")
os.makedirs(pki)


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


def openssl(*args):
    r = run("openssl", *args, cwd=pki)
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def make_ca(name, cn):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
            "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_cert(name, cn, ca, serial, usage):
    ext = os.path.join(pki, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n" % usage)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-set_serial", serial, "-days", "2", "-out", name + ".pem", "-extfile", ext)
    os.chmod(os.path.join(pki, name + ".key"), 0o600)


def P(name):
    return os.path.join(pki, name)


make_ca("ca1", "usview test CA 1")
make_ca("ca2", "usview other CA 2")
make_cert("server", "usviewd", "ca1", "0x1001", "serverAuth")
make_cert("renewed", "usviewd", "ca1", "0x2002", "serverAuth")
make_cert("client", "modality", "ca1", "0x3003", "clientAuth")
make_cert("client2", "intruder", "ca2", "0x4004", "clientAuth")
make_cert("orthanc", "orthanc", "ca1", "0x5005", "serverAuth,clientAuth")
# the files usviewd serves; replaced by the renewed pair later
shutil.copy(P("server.pem"), P("live.pem"))
shutil.copy(P("server.key"), P("live.key"))
os.chmod(P("live.key"), 0o600)

tls_port = usvtest.free_port()
d = Usviewd(tmp, model, extra={"listen": {"acse_timeout": 30, "tls": {
    "port": tls_port, "certificate": P("live.pem"), "private_key": P("live.key"),
    "ca_file": P("ca1.pem"), "require_client_certificate": True, "profile": "bcp195"}}})
while d.port == tls_port:
    d.port = usvtest.free_port()
    d.cfg["listen"]["port"] = d.port
    d.write_config()
d.start()
ck("DICOM TLS on 127.0.0.1:%d" % tls_port in d.log(), "start-up line names the TLS port")

src = os.path.join(tmp, "src")
os.makedirs(src)
n_made = [0]


def instance():
    n_made[0] += 1
    p = os.path.join(src, "i%d.dcm" % n_made[0])
    uid = daemonlib.make_us(p, seed=n_made[0])
    return p, uid


def storescu(path, port, tls=("client.key", "client.pem"), anonymous=False, timeout=30):
    argv = ["storescu", "-aet", "MODALITY", "-aec", "USVIEW", "-to", "10", "-ta", "10"]
    if anonymous:
        argv += ["+tla", "+cf", P("ca1.pem")]
    elif tls:
        argv += ["+tls", P(tls[0]), P(tls[1]), "+cf", P("ca1.pem")]
    argv += ["127.0.0.1", str(port), path]
    t0 = time.monotonic()
    try:
        r = run(*argv, timeout=timeout)
        return r.returncode == 0, time.monotonic() - t0, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - t0, "timeout"


def classified(uid, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(r.get("sop_instance_uid") == uid for r in d.results()):
            return True
        time.sleep(0.1)
    return False


def metrics():
    code, _, text = d.http("/metrics")
    return parse_prometheus(text)[1] if code == 200 else []


# --- a client certificate from CA 1 stores --------------------------------
path, uid = instance()
ok, secs, out = storescu(path, tls_port)
ck(ok, "storescu +tls with a CA 1 client certificate: %s" % out[-800:])
ck(classified(uid), "instance sent over TLS classified\n" + d.log()[-2000:])
ASSOC_MOD = r"association USVIEW from MODALITY@127\.0\.0\.1 over TLS as .*CN=modality: released"
end = time.monotonic() + 10
while time.monotonic() < end and not re.search(ASSOC_MOD, d.log()):
    time.sleep(0.1)
ck(re.search(ASSOC_MOD + ", 1 stored", d.log()),
   "association logged as TLS with the client certificate's subject")

# --- refusals ------------------------------------------------------------
refusals = [
    ("no client certificate", dict(anonymous=True), "peer did not return a certificate"),
    ("CA 2 client certificate", dict(tls=("client2.key", "client2.pem")),
     "client certificate: unable to get local issuer certificate"),
    ("plain TCP on the TLS port", dict(tls=None),
     "not TLS: a plain DICOM association request on the TLS port"),
]
for what, kw, reason in refusals:
    before = d.log()
    path, uid = instance()
    ok, secs, out = storescu(path, tls_port, **kw)
    ck(not ok, "%s: refused (%s)" % (what, out[-300:]))
    time.sleep(0.3)
    new = d.log()[len(before):]
    ck("TLS connection from 127.0.0.1: rejected: TLS handshake failed: " in new and reason in new,
       "%s: logged with the peer and '%s':\n%s" % (what, reason, new[-800:]))
    ck(not classified(uid, timeout=0.5), "%s: nothing stored" % what)
ck(d.alive(), "daemon alive after the refusals")
s = metrics()
ck(metric(s, "usview_tls_handshake_failures_total") == 3,
   "usview_tls_handshake_failures_total = %s, want 3" % metric(s, "usview_tls_handshake_failures_total"))
path, uid = instance()
ok, secs, out = storescu(path, tls_port)
ck(ok and classified(uid), "TLS store after the refusals: %s" % out[-300:])
path, uid = instance()
ok, secs, out = storescu(path, d.port, tls=None)
ck(ok and classified(uid), "plain port still serves: %s" % out[-300:])

# --- stalled TLS peers do not block new TLS associations ----------------
held = []
for k in range(10):  # silent
    s_ = socket.create_connection(("127.0.0.1", tls_port))
    held.append(s_)
for k in range(10):  # the start of a ClientHello record, then nothing
    s_ = socket.create_connection(("127.0.0.1", tls_port))
    s_.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01")
    held.append(s_)
cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
cctx.load_verify_locations(P("ca1.pem"))
cctx.load_cert_chain(P("client.pem"), P("client.key"))
for k in range(10):  # handshake done, half an A-ASSOCIATE-RQ
    raw = socket.create_connection(("127.0.0.1", tls_port))
    t = cctx.wrap_socket(raw, server_hostname="127.0.0.1")
    t.sendall(b"\x01\x00\x00\x00\x01\x00" + b"\x00" * 20)
    held.append(t)
time.sleep(0.5)
path, uid = instance()
ok, secs, out = storescu(path, tls_port)
ck(ok and secs < 5.0, "TLS store beside 30 stalled TLS connections: ok=%s in %.2f s %s"
   % (ok, secs, out[-300:]))
ck(classified(uid), "that instance classified")
s = metrics()
ck((metric(s, "usview_connections_halfopen") or 0) >= 25,
   "stalled TLS connections held as half-open: %s" % metric(s, "usview_connections_halfopen"))
print("TLS store with 30 stalled TLS peers: %.2f s" % secs)
for h in held:
    h.close()
time.sleep(0.5)
s = metrics()
ck(metric(s, "usview_tls_handshake_failures_total") == 3,
   "peers that went away mid-handshake are not counted as refusals: %s"
   % metric(s, "usview_tls_handshake_failures_total"))


# --- renewed certificate on SIGHUP --------------------------------------
def served_serial():
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % tls_port,
                        "-cert", P("client.pem"), "-key", P("client.key"),
                        "-CAfile", P("ca1.pem")], input="", capture_output=True, text=True,
                       timeout=20)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout, re.S)
    if not m:
        return None
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=m.group(0),
                       capture_output=True, text=True)
    return x.stdout.strip().split("=")[-1].lstrip("0")


ck(served_serial() == "1001", "served certificate before renewal: serial 1001")
shutil.copy(P("renewed.pem"), P("live.pem"))
shutil.copy(P("renewed.key"), P("live.key"))
before = d.log()
os.kill(d.proc.pid, signal.SIGHUP)
end = time.monotonic() + 10
while time.monotonic() < end and "TLS certificates reloaded" not in d.log()[len(before):]:
    time.sleep(0.1)
ck("TLS certificates reloaded" in d.log()[len(before):], "reload logged:\n" + d.log()[-1500:])
ck(served_serial() == "2002", "served certificate after SIGHUP: serial 2002")
path, uid = instance()
ok, secs, out = storescu(path, tls_port)
ck(ok and classified(uid), "TLS store with the renewed certificate: %s" % out[-300:])
# a broken certificate file: the running one stays, the reason is logged
with open(P("live.pem"), "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
before = d.log()
os.kill(d.proc.pid, signal.SIGHUP)
end = time.monotonic() + 10
while time.monotonic() < end and "configuration reloaded" not in d.log()[len(before):]:
    time.sleep(0.1)
new = d.log()[len(before):]
ck("TLS certificates not replaced, keeping the running ones: DICOM TLS: " + P("live.pem") in new,
   "broken certificate on reload logged:\n" + new[-1000:])
ck(served_serial() == "2002", "still serial 2002 after the broken reload")
path, uid = instance()
ok, secs, out = storescu(path, tls_port)
ck(ok and classified(uid), "TLS store after the broken reload: %s" % out[-300:])
shutil.copy(P("renewed.pem"), P("live.pem"))
d.stop()

# --- Orthanc over DICOM TLS, both ways ----------------------------------
if not orthanc_binary():
    print("SKIP Orthanc part: no Orthanc binary")
    sys.exit(ck.done())
d2 = Usviewd(tmp, model, name="usviewd2", extra={"listen": {"tls": {
    "port": usvtest.free_port(), "certificate": P("live.pem"), "private_key": P("live.key"),
    "ca_file": P("ca1.pem"), "require_client_certificate": True}}})
tls2 = d2.cfg["listen"]["tls"]["port"]
d2.cfg["listen"]["port"] = 0  # TLS only
o = Orthanc(os.path.join(tmp, "orthanc"),
            modalities={"usviewd": ("USVIEW", "127.0.0.1", tls2)},
            extra_config={"DicomTlsEnabled": True,
                          "DicomTlsCertificate": P("orthanc.pem"),
                          "DicomTlsPrivateKey": P("orthanc.key"),
                          "DicomTlsTrustedCertificates": P("ca1.pem"),
                          "DicomTlsRemoteCertificateRequired": True})
cfg = o.config()
cfg["DicomModalities"]["usviewd"]["UseDicomTls"] = True
o.config = lambda: cfg
d2.cfg["destinations"] = [{"name": "orthanc", "ae_title": o.aet, "host": "127.0.0.1",
                           "port": o.dicom_port, "send": ["sr"], "backoff_initial_s": 1,
                           "backoff_max_s": 2,
                           "tls": {"ca_file": P("ca1.pem"), "certificate": P("client.pem"),
                                   "private_key": P("client.key")}},
                          # Orthanc's certificate does not chain to CA 2: never delivered
                          {"name": "wrongca", "ae_title": o.aet, "host": "127.0.0.1",
                           "port": o.dicom_port, "send": ["sr"], "backoff_initial_s": 1,
                           "backoff_max_s": 2,
                           "tls": {"ca_file": P("ca2.pem"), "certificate": P("client.pem"),
                                   "private_key": P("client.key")}}]
d2.write_config()
o.start()
d2.start()
ck("listening on 127.0.0.1:%d (TLS only)" % tls2 in d2.log(), "TLS-only start-up line")
path, uid = instance()
oid = o.upload(path)["ID"]
r = o.post("/modalities/usviewd/store", {"Resources": [oid], "Synchronous": True})
ck(r is not None and r.get("FailedInstancesCount", 0) == 0,
   "Orthanc C-STORE over TLS to usviewd: %s\n%s" % (r, o.log()[-1500:]))
ASSOC_ORTHANC = r"association USVIEW from ORTHANC@127\.0\.0\.1 over TLS as .*CN=orthanc: released"
end = time.monotonic() + 10  # logged when the association has ended
while time.monotonic() < end and not re.search(ASSOC_ORTHANC, d2.log()):
    time.sleep(0.1)
ck(re.search(ASSOC_ORTHANC, d2.log()), "Orthanc's association logged as TLS:\n" + d2.log()[-1500:])
got = o.wait_instances(2, timeout=60)
ck(len(got) == 2, "Orthanc holds the source and the SR (%d instances)\n%s\n%s"
   % (len(got), d2.log()[-2000:], o.log()[-1500:]))
sr = [i for i in got if i != oid]
if sr:
    tags = o.tags(sr[0])
    ck(tags.get("SOPClassUID") == SR_COMPREHENSIVE, "the result is a Comprehensive SR")
WRONG = r"destination wrongca: .*certificate verify failed"
end = time.monotonic() + 30
while time.monotonic() < end:
    s = parse_prometheus(d2.http("/metrics")[2])[1]
    if (metric(s, "usview_sent_total", destination="orthanc") == 1
            and re.search(WRONG, d2.log())):
        break
    time.sleep(0.2)
ck(metric(s, "usview_sent_total", destination="orthanc") == 1, "one SR sent over TLS")
ck(metric(s, "usview_sent_total", destination="wrongca") == 0
   and metric(s, "usview_outbox_depth", destination="wrongca") == 1,
   "nothing delivered to a peer whose certificate does not chain to the CA file")
ck(re.search(WRONG, d2.log()),
   "the refused server certificate is logged:\n" + d2.log()[-1500:])
ck(len(o.instances()) == 2, "Orthanc got the SR once (not through wrongca)")
# a stalled TLS handshake is closed by the server after the ACSE timeout (5 s)
raw = socket.create_connection(("127.0.0.1", tls2))
raw.sendall(b"\x16\x03\x01\x02\x00\x01")
raw.settimeout(20)
t0 = time.monotonic()
try:
    eof = raw.recv(1) == b""
except OSError:
    eof = True
waited = time.monotonic() - t0
raw.close()
ck(eof and 4.0 <= waited <= 8.0, "stalled handshake closed after acse_timeout: %.1f s" % waited)
d2.stop()
o.stop()
sys.exit(ck.done())
