"""Open an error-analysis page (scripts/reports/error_page.py) in headless Chromium,
check what the browser shows, and take a screenshot.

    python scripts/reports/check_error_page.py metrics/ner_errors.html --screenshot results/error_page.png

Chromium comes from the Debian packages (apt-get install -y chromium). It
runs with a fresh profile and no network features. Checked, in the DOM the
browser built after running the page's script:
- the counts table has a row per error kind, equal to the counts the page
  embeds, and the doc blocks mark at least as many errors of each kind;
- every predicted entity in a doc block shows a score in [0, 1];
- `#only=KIND` (what clicking a count does) hides exactly the docs without
  an error of that kind.
Exits with 1 and says what failed otherwise.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]
KINDS = {"missed": "missed", "spurious": "spurious", "wtype": "wrong type", "wbound": "wrong boundary"}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("No Chromium found: apt-get install -y chromium")


def run_chromium(args: List[str]) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=180,
        )
    if result.returncode != 0:
        sys.exit(f"Chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


class DomSummary(HTMLParser):
    """Counts table rows, doc blocks (hidden or not) and entity marks."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Dict[str, int] = {}
        self.embedded: Optional[Dict[str, Any]] = None
        self.docs: List[Dict] = []
        self._row: Optional[str] = None
        self._cells: List[str] = []
        self._in_td = False
        self._in_json = False
        self._in_score = False
        self._json = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tr" and "kind" in classes:
            self._row, self._cells = a["data-kind"], []
        elif tag == "td" and self._row:
            self._in_td = True
            self._cells.append("")
        elif tag == "script" and a.get("id") == "counts":
            self._in_json = True
        elif tag == "div" and "doc" in classes:
            self.docs.append({"kinds": a.get("data-kinds", "").split(), "hidden": "hidden" in classes,
                              "marks": {k: 0 for k in KINDS}, "scores": []})
        elif tag == "span" and self.docs and "ent" in classes:
            for k in KINDS:
                if k in classes:
                    self.docs[-1]["marks"][k] += 1
        elif tag == "span" and self.docs and "score" in classes:
            self._in_score = True

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_td = False
        elif tag == "tr" and self._row:
            self.counts[self._row] = int(self._cells[1])
            self._row = None
        elif tag == "script" and self._in_json:
            self._in_json = False
            self.embedded = json.loads(self._json)
        elif tag == "span":
            self._in_score = False

    def handle_data(self, data):
        if self._in_td:
            self._cells[-1] += data.strip()
        if self._in_json:
            self._json += data
        if self._in_score:
            self.docs[-1]["scores"].append(float(data))


def dom(url: str) -> DomSummary:
    summary = DomSummary()
    summary.feed(run_chromium(["--dump-dom", url]))
    return summary


def check(page: Path) -> List[str]:
    url = page.resolve().as_uri()
    problems: List[str] = []
    summary = dom(url)
    if summary.embedded is None:
        return ["the page has no embedded counts"]
    counts = summary.embedded["counts"]
    for cls, kind in KINDS.items():
        if summary.counts.get(cls) != counts[kind]:
            problems.append(f"counts table shows {summary.counts.get(cls)} {kind}, page data {counts[kind]}")
    if len(summary.docs) != summary.embedded["shown"]:
        problems.append(f"{len(summary.docs)} doc blocks, the page says {summary.embedded['shown']}")
    if any(d["hidden"] for d in summary.docs):
        problems.append("docs are hidden before any filter is chosen")
    if summary.embedded["shown"] == summary.embedded["docs_with_errors"]:
        # Every error is marked once in its doc block (a page cut with
        # --limit shows fewer than it counts).
        for cls, kind in KINDS.items():
            marked = sum(d["marks"][cls] for d in summary.docs)
            if marked != counts[kind]:
                problems.append(f"{counts[kind]} {kind} errors counted, {marked} marked in the docs")
    scores = [s for d in summary.docs for s in d["scores"]]
    if any(not 0.0 <= s <= 1.0 for s in scores):
        problems.append("a score outside [0, 1]")
    for cls, kind in KINDS.items():
        filtered = dom(f"{url}#only={cls}")
        wrong = [i for i, d in enumerate(filtered.docs) if d["hidden"] == (cls in d["kinds"])]
        if wrong:
            problems.append(f"#only={cls}: {len(wrong)} docs shown or hidden wrongly")
    print(
        f"{page}: {len(summary.docs)} docs with errors shown, counts {counts}, "
        f"{len(scores)} predicted entities with scores; filters checked for {len(KINDS)} kinds"
    )
    return problems


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    run_chromium([f"--screenshot={out.resolve()}", f"--window-size={width},{height}", page.resolve().as_uri()])
    print(f"Screenshot: {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    found = check(args.page)
    if args.screenshot:
        screenshot(args.page, args.screenshot, args.width, args.height)
    if found:
        print("FAILED:\n- " + "\n- ".join(found))
        sys.exit(1)
    print("OK")
