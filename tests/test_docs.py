"""The documentation holds together (issue 27): every relative link in README.md,
ARCHITECTURE.md and docs/*.md resolves to a file of the repository (and an
`#anchor` to a heading of that file, by GitHub's slug rules); every repository
path they name in code (`scripts/...py`, `configs/...cfg`, `spacy_tokclf/...py`,
`results/...`) exists; and the README stays short."""
import os
import re
import shutil
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 260
# Paths the documented commands write, not kept in the repository.
CREATED_BY_COMMANDS: Set[str] = set()

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
REPO_PATH = re.compile(
    r"(?<![\w./-])("
    r"scripts/[\w./-]*?\.py"
    r"|configs/[\w./-]*?\.cfg"
    r"|spacy_tokclf/[\w./-]*?\.py"
    r"|results/[\w./-]*"
    r")(?![\w-])"
)


def doc_files(root: Path) -> List[Path]:
    return [root / "README.md", root / "ARCHITECTURE.md", *sorted((root / "docs").glob("*.md"))]


def split_code(text: str) -> Tuple[List[str], List[str]]:
    """(prose lines with inline code removed, code: fenced lines and inline code spans)."""
    prose, code, fence = [], [], None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            else:
                code.append(line)
            continue
        code.extend(m.group(2) for m in INLINE_CODE.finditer(line))
        prose.append(INLINE_CODE.sub("code", line))
    return prose, code


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(path: Path) -> Set[str]:
    """Every anchor GitHub makes for the headings of a Markdown file (a repeated
    heading gets -1, -2, ...)."""
    text = path.read_text(encoding="utf8")
    seen: Dict[str, int] = {}
    out, fence = set(), None
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            fence = None if fence else stripped[:3]
            continue
        if fence:
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = github_slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(path: Path) -> Iterator[str]:
    prose, _ = split_code(path.read_text(encoding="utf8"))
    for line in prose:
        for match in LINK.finditer(line):
            yield match.group(1)


def broken_links(root: Path) -> List[str]:
    broken = []
    for path in doc_files(root):
        for target in links(path):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = Path(os.path.normpath(path.parent / file_part)) if file_part else path
            where = f"{path.relative_to(root)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif root not in dest.parents and dest != root:
                broken.append(f"{where} (outside the repository)")
            elif anchor and (dest.suffix != ".md" or anchor not in heading_anchors(dest)):
                broken.append(f"{where} (no heading #{anchor})")
    return broken


def missing_paths(root: Path) -> List[str]:
    missing = []
    for path in doc_files(root):
        _, code = split_code(path.read_text(encoding="utf8"))
        for chunk in code:
            for match in REPO_PATH.finditer(chunk):
                name = match.group(1).rstrip(".")
                if name in CREATED_BY_COMMANDS or (root / name).exists():
                    continue
                missing.append(f"{path.relative_to(root)}: {name}")
    return sorted(set(missing))


def test_relative_links_resolve():
    assert broken_links(ROOT) == []


def test_repository_paths_in_code_exist():
    assert missing_paths(ROOT) == []


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text(encoding="utf8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"


def test_github_slugs():
    assert github_slug("Install, run, test") == "install-run-test"
    assert github_slug("Data-parallel training: `tokclf-train-ddp`") == (
        "data-parallel-training-tokclf-train-ddp"
    )
    assert github_slug("Supported versions, and why the default moved") == (
        "supported-versions-and-why-the-default-moved"
    )


def copy_docs(tmp_path: Path) -> Path:
    """README, ARCHITECTURE and docs/ in a scratch folder, with the folders their
    links and paths point into linked back to the repository."""
    for path in doc_files(ROOT):
        dest = tmp_path / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    for entry in ROOT.iterdir():
        if not (tmp_path / entry.name).exists():
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def test_checks_find_a_broken_link_a_missing_anchor_and_path(tmp_path):
    root = copy_docs(tmp_path)
    links_before, paths_before = set(broken_links(root)), set(missing_paths(root))
    page = root / "docs" / "speed.md"
    page.write_text(
        page.read_text(encoding="utf8")
        + "\nSee [gone](no_such_page.md), [no anchor](accuracy.md#no-such-heading)"
        + " and `scripts/no_such_script.py`.\n",
        encoding="utf8",
    )
    assert set(broken_links(root)) - links_before == {
        "docs/speed.md: no_such_page.md (no such file)",
        "docs/speed.md: accuracy.md#no-such-heading (no heading #no-such-heading)",
    }
    assert set(missing_paths(root)) - paths_before == {"docs/speed.md: scripts/no_such_script.py"}
