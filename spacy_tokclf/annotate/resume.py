"""Where `tokclf-annotate` writes while it runs, and how a killed run goes on.

Nothing is written under the output's name until every row is: a run writes
one part file per unit (input.Unit: consecutive chunks of one input
file) into a partial directory beside the output, `.NAME.partial/parts/`,
each under a temporary name, flushed to disk and renamed into place, so that
a part that exists is complete. At the end, a file output (.jsonl, .parquet,
.spacy) is the parts joined in input order, written beside the output and
renamed over it; a directory output is the parts directory, renamed over
it (a rerun replaces it, never adds to it). Then the partial directory goes.

`--resume` keeps the parts of a killed run (`manifest.json` says with which
settings they were written; other settings are refused) and annotates only
the units that have none, so the result is the one an uninterrupted run
gives. Without --resume, a partial directory left by an earlier run is
replaced. Both engines write these parts (Ray actors write them themselves
for a directory output), so either can resume the other's run.
"""
import json
import os
import re
import shutil
import signal
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Tuple

from ..errors import ScaleErrors, error
from .output import PART_SUFFIX, OutputSpec, merge_parts, output_is_dir

Key = Tuple[int, int]
_PART_NAME = re.compile(r"^part-(\d+)-(\d+)\.(jsonl|parquet|spacy)$")
# The manifest keys, and the setting to change where a --resume run differs.
_SETTINGS = {
    "format": "--format",
    "directory": "the output (a directory or one file)",
    "batch_size": "--batch-size",
    "unit_chunks": "--checkpoint-rows (rows per part, in whole batches)",
    "text_field": "--text-field",
    "id_field": "--id-field",
    "spec": "the pipeline (its output columns)",
    "inputs": "the input files (names, sizes, modification times)",
}


def partial_dir(target: Path) -> Path:
    """The partial directory of a (resolved) output path."""
    return target.parent / f".{target.name}.partial"


def check_output(inputs: Path, files: List[Path], output: Path) -> Path:
    """The output path with symlinks resolved, or an error where writing it
    would destroy or later reread the input: the output (or its partial
    directory) is an input file or the input directory, holds one, or lies
    inside the input directory."""
    target = Path(output).resolve()
    root = Path(inputs).resolve()
    sources = [root] + [Path(f).resolve() for f in files]
    for path in (target, partial_dir(target)):
        if any(path == src or path in src.parents for src in sources):
            raise ValueError(error(ScaleErrors.OUTPUT_IS_INPUT, output=output, input=inputs))
    if root.is_dir() and root in target.parents:
        raise ValueError(error(ScaleErrors.OUTPUT_IN_INPUT, output=output, input=inputs))
    return target


def input_fingerprint(files: List[Path], root: Path) -> List[List[Any]]:
    """(name, size, modification time) of each input file."""
    fingerprint = []
    for path in files:
        stat = Path(path).stat()
        name = Path(path).relative_to(root).as_posix() if Path(root).is_dir() else Path(path).name
        fingerprint.append([name, stat.st_size, stat.st_mtime_ns])
    return fingerprint


def part_name(key: Key, fmt: str) -> str:
    """The part file of a unit: sorted by name = input order."""
    return f"part-{key[0]:06d}-{key[1]:07d}{PART_SUFFIX[fmt]}"


def write_part(parts: Path, key: Key, fmt: str, data: bytes) -> None:
    """Write one part under a temporary name, flush it to disk, rename it
    into place: a part that exists is complete. Writing the same unit twice
    (a retried Ray task) leaves one part."""
    final = Path(parts) / part_name(key, fmt)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _test_faults()


def _test_faults() -> None:
    """Fault injection for the tests (tests/test_annotate_resume*.py), after
    each part is written: SPACY_TOKCLF_TEST_COMMIT_DELAY seconds of sleep
    (so that a test can kill the run half way), and, where
    SPACY_TOKCLF_TEST_EXIT_ONCE names a file that does not exist yet, create
    it and kill this process at once (a Ray actor dying after writing)."""
    delay = os.environ.get("SPACY_TOKCLF_TEST_COMMIT_DELAY")
    if delay:
        time.sleep(float(delay))
    marker = os.environ.get("SPACY_TOKCLF_TEST_EXIT_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


def committed(parts: Path) -> Dict[Key, Path]:
    """The parts written so far, by unit; unfinished temporary files removed."""
    found: Dict[Key, Path] = {}
    if not Path(parts).is_dir():
        return found
    for path in Path(parts).iterdir():
        match = _PART_NAME.match(path.name)
        if match:
            found[(int(match.group(1)), int(match.group(2)))] = path
        elif path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
    return found


class PartialOutput:
    """The partial directory of one run: opened (replaced, or kept with
    resume), written part by part, renamed into place by `finish`.

    inputs (Path), files (List[Path]): the input and its files.
    output (Path): the output file or directory.
    fmt (str): 'jsonl', 'parquet' or 'docbin'. spec (OutputSpec): its columns.
    settings (Dict[str, Any]): what the parts depend on (batch_size,
        unit_chunks, text_field, id_field), checked by --resume.
    resume (bool): keep the parts of an earlier run with the same settings.
    log (Callable[[str], None]): where the partial directory's fate is told.
    """

    def __init__(
        self,
        *,
        inputs: Path,
        files: List[Path],
        output: Path,
        fmt: str,
        spec: OutputSpec,
        settings: Dict[str, Any],
        resume: bool,
        log: Callable[[str], None] = print,
    ):
        self.target = check_output(inputs, files, output)
        self.dir = partial_dir(self.target)
        self.parts = self.dir / "parts"
        self.fmt = fmt
        self.spec = spec
        self.is_dir = output_is_dir(output, fmt)
        self.resume = resume
        self.log = log
        self.manifest = {
            "version": 1,
            "format": fmt,
            "directory": self.is_dir,
            **settings,
            "spec": asdict(spec),
            "inputs": input_fingerprint(files, Path(inputs)),
        }
        self.manifest = json.loads(json.dumps(self.manifest))  # as read back: lists, not tuples

    def open(self) -> Dict[Key, Path]:
        """Prepare the partial directory; RETURNS the parts kept (--resume)."""
        kept: Dict[Key, Path] = {}
        if self.resume and (self.dir / "manifest.json").exists():
            self._check_manifest()
            kept = committed(self.parts)
            self.log(error(ScaleErrors.RESUMING, partial=self.dir, parts=len(kept)))
        elif self.dir.exists():
            self.log(error(ScaleErrors.PARTIAL_REPLACED, partial=self.dir))
            shutil.rmtree(self.dir)
        elif self.resume:
            self.log(error(ScaleErrors.NOTHING_TO_RESUME, partial=self.dir))
        self.parts.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if not manifest.exists():
            tmp = self.dir / ".manifest.json.tmp"
            tmp.write_text(json.dumps(self.manifest, indent=1), encoding="utf8")
            os.replace(tmp, manifest)
        return kept

    def _check_manifest(self) -> None:
        path = self.dir / "manifest.json"
        try:
            old = json.loads(path.read_text(encoding="utf8"))
        except (OSError, ValueError):
            old = {}
        for key, setting in {"version": "the layout of the partial directory", **_SETTINGS}.items():
            if old.get(key) != self.manifest.get(key):
                raise ValueError(
                    error(
                        ScaleErrors.RESUME_MISMATCH,
                        partial=self.dir,
                        setting=setting,
                        was=_shown(old.get(key)),
                        now=_shown(self.manifest.get(key)),
                    )
                )

    def commit(self, key: Key, data: bytes) -> None:
        write_part(self.parts, key, self.fmt, data)

    def finish(self, expected: Iterable[Key]) -> None:
        """Put the output in place, once there is a part for each unit."""
        parts = committed(self.parts)
        expected = set(expected)
        if set(parts) != expected:
            missing = sorted(expected - set(parts))[:5]
            extra = sorted(set(parts) - expected)[:5]
            raise RuntimeError(
                error(ScaleErrors.PARTS_MISSING, partial=self.dir, missing=missing, extra=extra)
            )
        ordered = [parts[key] for key in sorted(parts)]
        if self.is_dir:
            _replace_dir(self.parts, self.target)
        else:
            joined = self.dir / ("output" + PART_SUFFIX[self.fmt])
            merge_parts(ordered, self.fmt, self.spec, joined)
            _fsync(joined)
            os.replace(joined, self.target)
        _fsync(self.target.parent)
        shutil.rmtree(self.dir)


def _replace_dir(source: Path, target: Path) -> None:
    """Rename the directory source to target, replacing what is there: the
    old output is moved aside first and removed last."""
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    os.replace(source, target)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif old.exists() or old.is_symlink():
        old.unlink()


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk (where the OS can)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:200] + "..."

