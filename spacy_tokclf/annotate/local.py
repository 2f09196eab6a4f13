"""Corpus annotation, the local engine: input rows -> output rows with
entities and tags, in this process or in worker processes.

`python -m spacy tokclf-annotate MODEL INPUT OUTPUT` runs here (--engine
local) or on Ray (ray.py, --engine ray). Both engines read units through
input.py, annotate each chunk with `annotate_chunk`, turn a unit's rows into
a part file with output.Part and write it through resume.py, so they give the
same rows (the formats are described
there); `Counts` is what both report at the end.

Each chunk (`batch_size` consecutive rows of one file) is one `nlp.pipe`
batch, inside `nlp.memory_zone()`: the strings of its docs leave the vocab
with them, so a long run does not grow with every new word (rows with an
error take part as empty docs, which the encoder never sees). A
transformer's floating point results depend a little on which docs share a
batch; with the same batches, the engines' scores are the same to the last bit.
"""
import os
import time
from array import array
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from spacy.language import Language
from spacy.tokens import DocBin

from ..errors import ScaleErrors, error
from .input import (
    InputRow,
    Unit,
    chunk_texts,
    file_name,
    input_files,
    input_format,
    read_units,
    repeated_ids,
    row_key,
    within_length,
)
from .output import OutputSpec, Part, Tally, add_to_docbin, output_format, output_row, output_spec
from .resume import Key, PartialOutput

# Rows per part file (a multiple of the batch size): what --resume keeps of
# a killed run, and what a Ray actor takes at a time.
CHECKPOINT_ROWS = 1024


@dataclass
class Counts:
    """Rows read and written by this run (and kept from an earlier one with
    --resume), repeated ids, timing."""

    read: int = 0
    resumed: int = 0
    written: Tally = field(default_factory=Tally)
    duplicates: int = 0
    duplicate_examples: List[str] = field(default_factory=list)
    # Wall time of the run; when the first batch was done (time.time(), on
    # whichever worker) and its rows, and when the last one was: the start
    # (worker processes or actors, pipeline loading) before, the steady rate
    # after.
    seconds: float = 0.0
    started_at: float = 0.0
    first_done_at: Optional[float] = None
    first_rows: int = 0
    last_done_at: Optional[float] = None
    done_rows: int = 0

    def batch_done(self, rows: int, at: Optional[float] = None) -> None:
        now = time.time() if at is None else at
        if self.first_done_at is None or now < self.first_done_at:
            self.first_done_at, self.first_rows = now, rows
        self.last_done_at = max(self.last_done_at or now, now)
        self.done_rows += rows

    @property
    def first_seconds(self) -> Optional[float]:
        """Seconds from the start to the first batch done."""
        return None if self.first_done_at is None else self.first_done_at - self.started_at

    @property
    def steady_rate(self) -> Optional[float]:
        """docs/s from the first batch done to the last."""
        first, last = self.first_done_at, self.last_done_at
        if first is None or last is None or last <= first:
            return None
        return (self.done_rows - self.first_rows) / (last - first)

    def lines(self) -> List[str]:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        timing = f"{self.seconds:.1f} s, {rate:.1f} docs/s"
        if self.steady_rate is not None:
            timing += (
                f" (first batch done after {self.first_seconds:.1f} s, then "
                f"{self.steady_rate:.1f} docs/s)"
            )
        written = self.written
        out = [
            f"{self.read} rows read, {written.rows} rows written: {written.annotated} annotated, "
            f"{written.failed} failed (written as error rows); {written.entities} entities",
            timing,
        ]
        if self.resumed:
            out.insert(1, f"{self.resumed} rows kept from the earlier run (--resume)")
        out += [f"error '{reason}': {n} rows" for reason, n in sorted(written.errors.items())]
        if self.duplicates:
            examples = ", ".join(self.duplicate_examples)
            out.append(error(ScaleErrors.DUPLICATE_IDS, n=self.duplicates, examples=examples))
        return out


class RowKeys:
    """The (file, id) keys of every row read, 8 bytes a row, for finding
    repeated ids at the end."""

    def __init__(self) -> None:
        self.keys = array("Q")

    def add(self, name: Optional[str], row: InputRow) -> None:
        self.keys.append(row_key(name, row.id))

    def repeated(self) -> Tuple[int, List[int]]:
        """(rows that repeat an earlier row's key, the keys repeated)."""
        import numpy

        values, n = numpy.unique(numpy.frombuffer(self.keys, dtype=numpy.uint64), return_counts=True)
        return int(len(self.keys) - len(values)), [int(v) for v in values[n > 1]]


def annotate_chunk(
    nlp: Language,
    chunk: List[InputRow],
    spec: OutputSpec,
    name: Optional[str],
    batch_size: int,
    docbin: bool = False,
) -> Tuple[List[dict], Optional[bytes]]:
    """Annotate one chunk (at most batch_size rows) as one nlp.pipe batch,
    inside a memory zone. RETURNS the output rows, and for DocBin output the
    chunk's DocBin bytes (made before the zone ends: the docs' strings go with it)."""
    chunk = within_length(chunk, nlp.max_length)
    rows: List[dict] = []
    bin_ = DocBin(store_user_data=True) if docbin else None
    with nlp.memory_zone():
        docs = nlp.pipe(chunk_texts(chunk), batch_size=batch_size)
        for doc, row in zip(docs, chunk):
            out = output_row(doc, row, spec, name)
            rows.append(add_to_docbin(bin_, doc, out, spec) if bin_ is not None else out)
        data = bin_.to_bytes() if bin_ is not None else None
    return rows, data


def annotate_unit(nlp: Language, unit: Unit, spec: OutputSpec, fmt: str, batch_size: int) -> Part:
    """Annotate a unit's chunks, in order, into its part."""
    part = Part(fmt=fmt, spec=spec)
    for chunk in unit.chunks:
        part.add(*annotate_chunk(nlp, chunk, spec, unit.name, batch_size, fmt == "docbin"))
    return part


def iter_units(
    files: List[Path], root: Path, batch_size: int, unit_chunks: int, **kwargs: Any
) -> Iterator[Unit]:
    """The units of every input file, in input order (kwargs: read_units')."""
    for index, path in enumerate(files):
        with open(path, "rb") as f:
            yield from read_units(
                f, input_format(path), index, file_name(path, root), batch_size, unit_chunks, **kwargs
            )


def unit_chunks(batch_size: int, checkpoint_rows: int) -> int:
    """Chunks per unit: checkpoint_rows in whole batches, at least one."""
    return max(1, checkpoint_rows // batch_size)


def annotate_local(
    nlp: Language,
    inputs: Path,
    output: Path,
    *,
    fmt: Optional[str] = None,
    n_process: int = 1,
    batch_size: int = 64,
    threads: Optional[int] = None,
    text_field: str = "text",
    id_field: str = "id",
    resume: bool = False,
    checkpoint_rows: int = CHECKPOINT_ROWS,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Counts:
    """Annotate a corpus in this process or in n_process worker processes.

    nlp (Language): the pipeline.
    inputs (Path): a file or a directory of files.
    output (Path): a file (.jsonl, .parquet, .spacy) or, with fmt, a
        directory; written under its name only when complete.
    fmt (Optional[str]): 'jsonl', 'parquet' or 'docbin'; None: from the suffix.
    n_process (int): worker processes.
    batch_size (int): rows per batch.
    threads (Optional[int]): torch threads per process; None: the cores
        divided by n_process (default_threads).
    text_field (str), id_field (str): where the text and id are.
    resume (bool): continue the killed run that wrote the partial output.
    checkpoint_rows (int): rows per part (rounded down to whole batches).
    progress (bool): show a progress bar (docs, docs/s).
    log (Callable[[str], None]): where the counts are printed.
    RETURNS (Counts): the counts.
    """
    fmt = output_format(output, fmt)
    files = input_files(inputs)
    spec = output_spec(nlp, files, inputs, id_field)
    n_chunks = unit_chunks(batch_size, checkpoint_rows)
    partial = PartialOutput(
        inputs=inputs, files=files, output=output, fmt=fmt, spec=spec, resume=resume, log=log,
        settings=run_settings(batch_size, n_chunks, text_field, id_field),
    )  # fmt: skip
    kept = partial.open()
    counts = Counts(started_at=time.time())
    start = time.perf_counter()
    keys = RowKeys()
    expected: Set[Key] = set()
    units = iter_units(
        files, Path(inputs), batch_size, n_chunks, text_field=text_field, id_field=id_field,
        on_row=keys.add,
    )  # fmt: skip
    work = _chunks_to_do(units, set(kept), counts, expected)
    bar = _progress_bar(progress)
    saved = _set_torch_threads(threads or default_threads(n_process))
    try:
        results = _annotated(nlp, work, spec, batch_size, fmt, n_process, saved.n_now)
        part = Part(fmt=fmt, spec=spec)
        for (unit, i, chunk), result in results:
            part.add(*result)
            counts.batch_done(len(chunk))
            bar.update(len(chunk))
            if i == len(unit.chunks) - 1:
                partial.commit(unit.key, part.to_bytes())
                counts.written.merge(part.tally)
                part = Part(fmt=fmt, spec=spec)
    finally:
        saved.restore()
        bar.close()
    partial.finish(expected)
    counts.seconds = time.perf_counter() - start
    find_repeated_ids(counts, keys, files, Path(inputs), text_field, id_field)
    for line in counts.lines():
        log(line)
    return counts


def run_settings(batch_size: int, n_chunks: int, text_field: str, id_field: str) -> Dict[str, Any]:
    """What the parts depend on, besides the format, pipeline and input."""
    return {
        "batch_size": batch_size,
        "unit_chunks": n_chunks,
        "text_field": text_field,
        "id_field": id_field,
    }


def find_repeated_ids(
    counts: Counts, keys: RowKeys, files: List[Path], root: Path, text_field: str, id_field: str
) -> None:
    counts.duplicates, repeated = keys.repeated()
    if repeated:
        counts.duplicate_examples = repeated_ids(
            files, root, repeated, text_field=text_field, id_field=id_field
        )


WorkItem = Tuple[Unit, int, List[InputRow]]


def _chunks_to_do(
    units: Iterator[Unit], kept: Set[Key], counts: Counts, expected: Set[Key]
) -> Iterator[WorkItem]:
    """(unit, chunk number, chunk) of each unit without a kept part."""
    for unit in units:
        expected.add(unit.key)
        if unit.key in kept:
            counts.resumed += unit.n_rows
            continue
        counts.read += unit.n_rows
        for i, chunk in enumerate(unit.chunks):
            yield unit, i, chunk


def _annotated(
    nlp: Language,
    work: Iterator[WorkItem],
    spec: OutputSpec,
    batch_size: int,
    fmt: str,
    n_process: int,
    threads: int,
) -> Iterator[Tuple[WorkItem, Tuple[List[dict], Optional[bytes]]]]:
    """(item, annotate_chunk's result) in order: here, or in n_process
    worker processes with at most two chunks each in flight."""
    docbin = fmt == "docbin"
    if n_process <= 1:
        for item in work:
            yield item, annotate_chunk(nlp, item[2], spec, item[0].name, batch_size, docbin)
        return
    with ProcessPoolExecutor(n_process, initializer=_init_worker, initargs=(nlp, threads)) as pool:
        pending: deque = deque()
        for item in work:
            pending.append((item, pool.submit(_worker_chunk, item[2], spec, item[0].name, batch_size, docbin)))
            if len(pending) >= 2 * n_process:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


_WORKER: Dict[str, Language] = {}


def _init_worker(nlp: Language, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["nlp"] = nlp


def _worker_chunk(
    chunk: List[InputRow], spec: OutputSpec, name: Optional[str], batch_size: int, docbin: bool
) -> Tuple[List[dict], Optional[bytes]]:
    return annotate_chunk(_WORKER["nlp"], chunk, spec, name, batch_size, docbin)


def default_threads(workers: int) -> int:
    """Torch threads per worker by default: this machine's cores, shared."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class _Threads:
    def __init__(self, n: int, env: Optional[str], n_now: int):
        self.n = n
        self.env = env
        self.n_now = n_now

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.n)
        if self.env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = self.env


def _set_torch_threads(n: int) -> _Threads:
    """Use n torch threads here and in the worker processes (forked ones
    are told, spawned ones read OMP_NUM_THREADS). The number of threads
    changes how torch's CPU kernels split their sums, and so the last digits
    of the scores: the engines give the same output with the same threads
    per worker."""
    import torch

    saved = _Threads(torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"), n)
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    return saved


def _progress_bar(enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(unit="doc", disable=not enabled, smoothing=0.1, dynamic_ncols=True)
