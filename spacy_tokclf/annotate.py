"""Corpus annotation, the local engine: input rows -> output rows with
entities and tags, by nlp.pipe in this process or in worker processes.

`python -m spacy tokclf-annotate MODEL INPUT OUTPUT` runs here (--engine
local) or on Ray (annotate_ray.py, --engine ray). Both engines read through
annotate_input.py, annotate chunks with `annotate_chunk` and write through
annotate_output.py, so they give the same rows (the formats are described
there); `Counts` is what both report at the end.

Both engines annotate the same units: chunks of `batch_size` consecutive rows
of one file, each one `nlp.pipe` batch (rows with an error take part as empty
docs, which the encoder never sees). A transformer's floating point results
depend a little on which docs share a batch; with the same batches, the
engines' scores are the same to the last bit.
"""
import os
import time
from dataclasses import dataclass, field
from itertools import tee
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from .annotate_input import InputRow, chunk_texts, file_chunks, input_files, within_length
from .annotate_output import OutputSpec, Writer, output_format, output_row, output_spec, tag_doc


@dataclass
class Counts:
    """Rows read, rows annotated, rows with an error (by reason), entities."""

    rows: int = 0
    annotated: int = 0
    entities: int = 0
    errors: Dict[str, int] = field(default_factory=dict)
    # Wall time of the run; when the first batch was done (time.time(), on
    # whichever worker) and its rows, and when the last one was: the start
    # (worker processes or actors, pipeline loading) before, the steady rate
    # after.
    seconds: float = 0.0
    started_at: float = 0.0
    first_done_at: Optional[float] = None
    first_rows: int = 0
    last_done_at: Optional[float] = None

    def batch_done(self, rows: int) -> None:
        now = time.time()
        if self.first_done_at is None:
            self.first_done_at, self.first_rows = now, rows
        self.last_done_at = now

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
        return (self.rows - self.first_rows) / (last - first)

    def add_rows(self, rows: Iterable[Dict[str, Any]]) -> None:
        for row in rows:
            self.rows += 1
            if row["error"] is None:
                self.annotated += 1
                self.entities += len(row.get("entities") or ())
            else:
                reason = row["error"].split(":", 1)[0]
                self.errors[reason] = self.errors.get(reason, 0) + 1

    def merge(self, other: "Counts") -> None:
        self.rows += other.rows
        self.annotated += other.annotated
        self.entities += other.entities
        for reason, n in other.errors.items():
            self.errors[reason] = self.errors.get(reason, 0) + n
        if other.first_done_at is not None:
            if self.first_done_at is None or other.first_done_at < self.first_done_at:
                self.first_done_at, self.first_rows = other.first_done_at, other.first_rows
            self.last_done_at = max(self.last_done_at or 0.0, other.last_done_at or 0.0)

    def lines(self) -> List[str]:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        timing = f"{self.seconds:.1f} s, {rate:.1f} docs/s"
        if self.steady_rate is not None:
            timing += (
                f" (first batch done after {self.first_seconds:.1f} s, then "
                f"{self.steady_rate:.1f} docs/s)"
            )
        out = [
            f"{self.rows} rows in, {self.rows} rows out: {self.annotated} annotated, "
            f"{sum(self.errors.values())} with an error; {self.entities} entities",
            timing,
        ]
        out += [f"error '{reason}': {n} rows" for reason, n in sorted(self.errors.items())]
        return out


def annotate_chunk(
    nlp: Language, chunk: List[InputRow], spec: OutputSpec, name: Optional[str], batch_size: int
) -> List[dict]:
    """Annotate one chunk (at most batch_size rows) as one nlp.pipe batch."""
    chunk = within_length(chunk, nlp.max_length)
    docs = nlp.pipe(chunk_texts(chunk), batch_size=batch_size)
    return [output_row(doc, row, spec, name) for doc, row in zip(docs, chunk)]


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
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Counts:
    """Annotate a corpus with nlp.pipe in this process or in n_process
    worker processes.

    nlp (Language): the pipeline.
    inputs (Path): a file or a directory of files.
    output (Path): a file (.jsonl, .parquet, .spacy) or, with fmt, a directory.
    fmt (Optional[str]): 'jsonl', 'parquet' or 'docbin'; None: from the suffix.
    n_process (int): worker processes (nlp.pipe's n_process).
    batch_size (int): rows per batch.
    threads (Optional[int]): torch threads per process; None: the cores
        divided by n_process (default_threads).
    text_field (str), id_field (str): where the text and id are.
    progress (bool): show a progress bar (docs, docs/s).
    log (Callable[[str], None]): where the counts are printed.
    RETURNS (Counts): the counts.
    """
    fmt = output_format(output, fmt)
    files = input_files(inputs)
    spec = output_spec(nlp, files, inputs, id_field)
    counts = Counts(started_at=time.time())
    start = time.perf_counter()
    # Each file's last chunk is padded with empty docs to batch_size, so that
    # nlp.pipe's batches are the chunks the Ray engine annotates.
    padded = _padded_stream(files, inputs, batch_size, text_field, id_field, nlp.max_length)
    texts, metas = tee(padded)
    bar = _progress_bar(progress)
    writer = Writer(output, fmt, spec)
    saved = _set_torch_threads(threads or default_threads(n_process))
    try:
        docs = nlp.pipe((t for t, _ in texts), batch_size=batch_size, n_process=n_process)
        pending: List[Tuple[Doc, InputRow, Optional[str], bool]] = []
        for doc, (_, meta) in zip(docs, metas):
            if meta is None:
                continue  # padding
            pending.append((doc, *meta))
            if meta[2]:  # the chunk's last row
                _write_pending(writer, pending, spec, counts)
                counts.batch_done(len(pending))
                bar.update(len(pending))
                pending = []
    finally:
        saved.restore()
        bar.close()
        writer.close()
    counts.seconds = time.perf_counter() - start
    for line in counts.lines():
        log(line)
    return counts


def _padded_stream(
    files: List[Path],
    root: Path,
    batch_size: int,
    text_field: str,
    id_field: str,
    max_length: int,
) -> Iterator[Tuple[str, Optional[Tuple[InputRow, Optional[str], bool]]]]:
    """(text, (row, file name, last row of its chunk) or None for padding)."""
    for path in files:
        for name, chunk in file_chunks(
            path, root, batch_size, text_field=text_field, id_field=id_field
        ):
            chunk = within_length(chunk, max_length)
            for i, (text, row) in enumerate(zip(chunk_texts(chunk), chunk)):
                yield text, (row, name, i == len(chunk) - 1)
            for _ in range(batch_size - len(chunk)):
                yield "", None


def _write_pending(writer: Writer, pending: list, spec: OutputSpec, counts: Counts) -> None:
    rows = [output_row(doc, row, spec, name) for doc, row, name, _ in pending]
    counts.add_rows(rows)
    if writer.fmt == "docbin":
        for (doc, *_), row in zip(pending, rows):
            tag_doc(doc, row)
        writer.write_docs(doc for doc, *_ in pending)
    else:
        writer.write_rows(rows)


def default_threads(workers: int) -> int:
    """Torch threads per worker by default: this machine's cores, shared."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class _Threads:
    def __init__(self, n: int, env: Optional[str]):
        self.n = n
        self.env = env

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.n)
        if self.env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = self.env


def _set_torch_threads(n: int) -> _Threads:
    """Use n torch threads here and in the worker processes nlp.pipe starts
    (forked ones inherit torch's setting, spawned ones read OMP_NUM_THREADS).
    The number of threads changes how torch's CPU kernels split their sums,
    and so the last digits of the scores: the engines give the same output
    with the same threads per worker."""
    import torch

    saved = _Threads(torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    return saved


def _progress_bar(enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(unit="doc", disable=not enabled, smoothing=0.1, dynamic_ncols=True)
