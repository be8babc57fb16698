"""htmlcheck - the harvest report parsed with html.parser, and rendered by
headless Chromium.

parse(path) -> Report: .sections (h2 ids), .tables {table id: [[cell text]]},
              .imgs (src attributes), .external (references to anything
              outside the file), .text (all text)
render(path, tmp) -> the screenshot as a numpy array (BGR)
"""

import os
import shutil
import subprocess
from html.parser import HTMLParser


class Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections = []
        self.tables = {}
        self.imgs = []
        self.external = []
        self.text = []
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2" and "id" in a:
            self.sections.append(a["id"])
        if tag == "table":
            self._table = a.get("id", "table%d" % len(self.tables))
            self.tables[self._table] = []
        if tag == "tr" and self._table is not None:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for k in ("src", "href"):
            v = a.get(k)
            if v and not v.startswith("data:") and not v.startswith("#"):
                self.external.append(v)
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.external.append(tag)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path):
    r = Report()
    with open(path, encoding="utf-8") as f:
        r.feed(f.read())
    r.text = "".join(r.text)
    return r


def render(path, tmp):
    import cv2
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed (scripts/install-deps.sh installs it)"
    png = os.path.join(tmp, "report.png")
    prof = os.path.join(tmp, "chromium-profile")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={prof}",
                    f"--screenshot={png}", "--window-size=1200,3000",
                    "file://" + os.path.abspath(path)],
                   check=True, capture_output=True, timeout=120)
    img = cv2.imread(png)
    assert img is not None, "no screenshot"
    return img
