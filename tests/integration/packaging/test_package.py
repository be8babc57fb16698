"""The Debian package, installed for real (root only; exits 77 otherwise).

packaging/build-deb.sh --prebuilt packages the programs of this build tree;
the test then installs the .deb with apt-get and checks:
- the files (programs, unit in /lib/systemd/system, sysusers entry,
  conffile /etc/usview/usviewd.yaml, copyright, changelog.Debian.gz, man
  pages), the Depends line (dpkg-shlibdeps + tesseract-ocr-eng);
- the system user usview and the spool /var/lib/usview (usview, 0700);
- `systemd-analyze verify` of the installed unit (when installed);
- `usviewd --check-config -c /etc/usview/usviewd.yaml`;
- without a model file the postinst prints one line saying what to do, and
  the installed usviewd exits 1 with one line naming model.path and the fix;
  with a model file (make_model) it starts with the packaged configuration
  and stops cleanly on SIGTERM;
- a reinstallation over itself and an upgrade (revision 2 whose shipped
  configuration differs) with --force-confold keep the edited
  configuration (the new one is left as usviewd.yaml.dpkg-dist);
- apt-get remove leaves the configuration and the spool, apt-get purge
  removes both (the user stays, as Debian policy allows);
- lintian (when installed) reports no error.
Whatever happens, the package is purged at the end, and the user, the model
folder and anything else the test created are removed, so the machine is
left as it was. Skipped (77) when usview is already installed or its paths
exist.

usage: test_package.py MAKE_MODEL
"""

import glob
import gzip
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time

import usvtest

SKIP = 77
CONF = "/etc/usview/usviewd.yaml"
SPOOL = "/var/lib/usview"
MODEL_DIR = "/usr/share/usview"
MODEL = MODEL_DIR + "/usview-views.usvm"
APT = ["apt-get", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"]
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


if os.geteuid() != 0:
    skip("installs a Debian package system-wide: run as root")
for tool in ("apt-get", "dpkg", "dpkg-deb", "dpkg-shlibdeps"):
    if not shutil.which(tool):
        skip("%s not installed (apt-get install dpkg-dev apt)" % tool)
if subprocess.run(["dpkg-query", "-W", "usview"], capture_output=True).returncode == 0:
    skip("a usview package is already known to dpkg: this test would replace it")
for p in ("/etc/usview", SPOOL, MODEL_DIR, "/usr/sbin/usviewd", "/usr/bin/usview",
          "/lib/systemd/system/usviewd.service", "/usr/lib/sysusers.d/usview.conf"):
    if os.path.lexists(p):
        skip("%s exists (a usview installed from source?): this test would clobber it" % p)

make_model = sys.argv[1]
src = os.environ["USV_SOURCE_DIR"]
bld = os.environ["USV_BINARY_DIR"]
ck = usvtest.Check("packaging_deb")
tmp = usvtest.tempdir("usv-package-")


def user_exists():
    try:
        pwd.getpwnam("usview")
        return True
    except KeyError:
        return False


user_before = user_exists()


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    kw.setdefault("env", ENV)
    return subprocess.run(argv, **kw)


def apt(*args):
    r = run(APT + list(args))
    out = r.stdout + r.stderr
    ck(r.returncode == 0, "apt-get %s: rc %d\n%s" % (" ".join(args), r.returncode, out))
    return out


def status():
    r = run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "usview"])
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def cleanup():
    if run(["dpkg-query", "-W", "usview"]).returncode == 0:
        r = run(["dpkg", "--purge", "usview"])
        if r.returncode != 0:
            print("cleanup: dpkg --purge usview failed:\n" + r.stdout + r.stderr)
    shutil.rmtree(MODEL_DIR, ignore_errors=True)
    if not user_before and user_exists():
        run(["userdel", "usview"])
        run(["groupdel", "usview"])


def check_installed(version):
    ck(status() == "install ok installed " + version, "dpkg status %r" % status())


def main():
    t0 = time.monotonic()
    # the package, from this build tree's programs
    r = run(["sh", os.path.join(src, "packaging", "build-deb.sh"), "--prebuilt", bld], cwd=tmp)
    ck(r.returncode == 0, "build-deb.sh: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    debs = glob.glob(os.path.join(tmp, "usview_*.deb"))
    ck(len(debs) == 1, "build-deb.sh made %r" % debs)
    if len(debs) != 1:
        return
    deb = debs[0]
    r = run([os.path.join(bld, "cli", "usview"), "version"])
    upstream = r.stdout.split()[1]
    version = upstream + "-1"
    ck(os.path.basename(deb) == "usview_%s_%s.deb" % (
        version, run(["dpkg", "--print-architecture"]).stdout.strip()),
       "package file name %s" % os.path.basename(deb))
    control = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
    for dep in ("libdcmtk17", "libopenblas0", "libtesseract5", "libc6", "tesseract-ocr-eng"):
        ck(dep in control, "Depends lacks %s: %s" % (dep, control))
    print("built %s in %.1f s" % (os.path.basename(deb), time.monotonic() - t0))

    # install: no model yet -> one line saying what to do
    out = apt("install", deb)
    check_installed(version)
    hint = [l for l in out.splitlines() if l.startswith("usview: no model file " + MODEL)]
    ck(len(hint) == 1 and "systemctl enable --now usviewd" in hint[0],
       "postinst without a model: %r" % out)
    files = run(["dpkg", "-L", "usview"]).stdout.split()
    for f in ("/usr/sbin/usviewd", "/usr/bin/usview", "/lib/systemd/system/usviewd.service",
              "/usr/lib/sysusers.d/usview.conf", CONF, "/usr/share/doc/usview/copyright",
              "/usr/share/doc/usview/changelog.Debian.gz", "/usr/share/doc/usview/usviewd.md",
              "/usr/share/man/man8/usviewd.8.gz", "/usr/share/man/man1/usview.1.gz",
              "/usr/share/man/man5/usviewd.yaml.5.gz"):
        ck(f in files and os.path.isfile(f), "%s not installed by the package" % f)
    for f in ("/usr/sbin/usviewd", "/usr/bin/usview"):
        ck(os.access(f, os.X_OK), "%s not executable" % f)
    for page, name in (("man8/usviewd.8.gz", "usviewd"), ("man1/usview.1.gz", "usview"),
                       ("man5/usviewd.yaml.5.gz", "usviewd.yaml")):
        with gzip.open("/usr/share/man/" + page, "rt") as f:
            text = f.read()
        ck(text.startswith(".TH %s " % name.upper()) and ".SH SYNOPSIS" in text
           and ".SH SEE ALSO" in text, "man page %s" % page)
    with gzip.open("/usr/share/doc/usview/changelog.Debian.gz", "rt") as f:
        ck(f.readline().startswith("usview (%s) " % version), "changelog.Debian.gz")
    with open("/usr/share/doc/usview/copyright") as f:
        ck(f.readline().startswith("Format: https://www.debian.org/doc/packaging-manuals/"
                                   "copyright-format/1.0/"), "copyright not in Debian format")
    conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "usview"]).stdout
    ck(CONF in conffiles, "%s not a conffile: %r" % (CONF, conffiles))
    with open(os.path.join(src, "packaging", "usviewd.yaml")) as a, open(CONF) as b:
        ck(a.read() == b.read(), "installed configuration differs from packaging/usviewd.yaml")
    r = run(["/usr/sbin/usviewd", "--version"])
    ck(r.stdout.strip() == "usviewd " + upstream, "installed usviewd --version %r" % r.stdout)

    # the user and the spool
    ck(user_exists(), "no user usview after installation")
    if user_exists():
        pw = pwd.getpwnam("usview")
        ck(pw.pw_dir == SPOOL and pw.pw_shell.endswith("nologin") and pw.pw_uid < 1000,
           "user usview: %r" % (pw,))
        st = os.stat(SPOOL)
        ck(st.st_uid == pw.pw_uid and stat.S_IMODE(st.st_mode) == 0o700,
           "%s: uid %d mode %o" % (SPOOL, st.st_uid, stat.S_IMODE(st.st_mode)))

    # the unit and the configuration
    sa = shutil.which("systemd-analyze")
    if sa:
        r = run([sa, "verify", "/lib/systemd/system/usviewd.service"], timeout=60)
        ck(r.returncode == 0 and "usviewd.service" not in r.stderr,
           "systemd-analyze verify: rc %d %s" % (r.returncode, r.stderr))
    else:
        print("systemd-analyze not installed: unit verification skipped")
    r = run(["/usr/sbin/usviewd", "--check-config", "-c", CONF])
    ck(r.returncode == 0 and "configuration OK" in r.stdout + r.stderr,
       "usviewd --check-config: rc %d %s%s" % (r.returncode, r.stdout, r.stderr))

    # without the model: one clear line and exit 1
    spool = os.path.join(tmp, "spool")
    port = usvtest.free_port()
    base = ["/usr/sbin/usviewd", "-c", CONF, "--spool", spool, "--port", str(port),
            "--bind", "127.0.0.1", "--set", "http.enabled=false", "--set", "log.journald=false"]
    r = run(base, timeout=60)
    errs = [l for l in r.stderr.splitlines() if "error" in l]
    ck(r.returncode == 1 and len(errs) == 1 and "model.path " + MODEL in errs[0]
       and "install a model file there or set model.path in " + CONF in errs[0],
       "usviewd without a model: rc %d %r" % (r.returncode, r.stderr))

    # with a model it serves the packaged configuration and stops cleanly
    os.makedirs(MODEL_DIR)
    subprocess.run([make_model, MODEL, "7"], check=True, capture_output=True)
    os.chmod(MODEL, 0o644)
    r = run(["/usr/bin/usview", "model-info", MODEL])
    ck(r.returncode == 0, "installed usview model-info: rc %d %s" % (r.returncode, r.stderr))
    p = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    up = usvtest.wait_port(port, 30, p)
    ck(up, "installed usviewd with a model did not listen on %d" % port)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        err = p.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        p.kill()
        err = p.communicate()[1]
    ck(p.returncode == 0, "installed usviewd: rc %s after SIGTERM\n%s" % (p.returncode, err))

    # reinstall over itself with an edited configuration, a spool file
    with open(CONF) as f:
        conf = f.read()
    edited = conf.replace("  ae_title: USVIEW\n", "  ae_title: SITEEDIT\n", 1)
    ck(edited != conf, "listen.ae_title not found in the configuration")
    with open(CONF, "w") as f:
        f.write(edited)
    marker = os.path.join(SPOOL, "results.jsonl")
    with open(marker, "w") as f:
        f.write("{}\n")
    out = apt("install", "--reinstall", "-o", "Dpkg::Options::=--force-confold", deb)
    check_installed(version)
    ck(not any(l.startswith("usview: no model file") for l in out.splitlines()),
       "postinst asked for a model that exists: %r" % out)
    with open(CONF) as f:
        ck(f.read() == edited, "the edited configuration was replaced on reinstallation")

    # upgrade to revision 2 whose shipped configuration changed: the edit stays
    new = os.path.join(tmp, "rev2")
    run(["dpkg-deb", "-R", deb, new], check=True)
    with open(os.path.join(new, "etc/usview/usviewd.yaml"), "a") as f:
        f.write("# revision 2\n")
    with open(os.path.join(new, "DEBIAN/control")) as f:
        ctl = f.read().replace("Version: " + version, "Version: %s-2" % upstream)
    with open(os.path.join(new, "DEBIAN/control"), "w") as f:
        f.write(ctl)
    sums = run(["sh", "-c", "cd %s && find . -path ./DEBIAN -prune -o -type f -printf '%%P\\n' "
                "| sort | xargs md5sum" % new]).stdout
    with open(os.path.join(new, "DEBIAN/md5sums"), "w") as f:
        f.write(sums)
    deb2 = os.path.join(tmp, "usview_%s-2.deb" % upstream)
    run(["dpkg-deb", "--root-owner-group", "--build", new, deb2], check=True)
    apt("install", "-o", "Dpkg::Options::=--force-confold", deb2)
    check_installed(upstream + "-2")
    with open(CONF) as f:
        ck(f.read() == edited, "the edited configuration was replaced on upgrade")
    ck(os.path.isfile(CONF + ".dpkg-dist"), "the new shipped configuration not kept as .dpkg-dist")
    r = run(["/usr/sbin/usviewd", "--dump-config", "-c", CONF])
    ck("SITEEDIT" in r.stdout, "edited ae_title not in effect after upgrade")

    # remove: configuration and spool stay
    apt("remove", "usview")
    ck(status().startswith("deinstall ok config-files"), "after remove: %r" % status())
    for f in ("/usr/sbin/usviewd", "/usr/bin/usview", "/lib/systemd/system/usviewd.service"):
        ck(not os.path.exists(f), "%s left after remove" % f)
    ck(os.path.isfile(CONF) and open(CONF).read() == edited, "configuration gone after remove")
    ck(os.path.isfile(marker), "spool gone after remove")

    # purge: everything gone but the user
    apt("purge", "usview")
    ck(status() == "unknown" or status().startswith("unknown ok not-installed"),
       "after purge: %r" % status())
    for f in ("/etc/usview", SPOOL, "/usr/sbin/usviewd", "/usr/lib/sysusers.d/usview.conf"):
        ck(not os.path.lexists(f), "%s left after purge" % f)
    ck(user_exists(), "purge removed the user (Debian keeps system users)")

    # lintian: no errors
    if shutil.which("lintian"):
        r = run(["lintian", deb], timeout=180)
        errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
        ck(not errors, "lintian errors:\n" + "\n".join(errors))
        print("lintian: %d warnings" % sum(l.startswith("W:") for l in r.stdout.splitlines()))
    else:
        print("lintian not installed: package lint skipped")
    print("total %.1f s" % (time.monotonic() - t0))


try:
    main()
finally:
    cleanup()
for p in ("/etc/usview", SPOOL, MODEL_DIR, "/usr/sbin/usviewd"):
    ck(not os.path.lexists(p), "%s left behind after the test" % p)
ck(user_exists() == user_before, "user usview %s by the test" % (
    "left" if user_exists() else "removed"))
ck.done()
