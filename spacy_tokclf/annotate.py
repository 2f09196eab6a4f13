"""Corpus annotation: input rows -> output rows with entities and tags.

`python -m spacy tokclf-annotate MODEL INPUT OUTPUT` runs here (--engine
local) or on Ray (annotate_ray.py, --engine ray). Both engines share this
module's reading, chunking, annotation and writing, so they give the same rows:

- Input: JSONL (.jsonl, .ndjson, .json: one JSON object a line), Parquet
  (.parquet, .pq) or plain text (any other name: one document a line); a file,
  or a directory of such files (read in sorted order; names starting with "."
  or "_" are skipped, as Ray does). Blank lines of a JSONL file are not rows.
- A row's `id` is the value of its id field, or, where it has none, its
  0-based line (Parquet: row) number in its file. With a directory as input,
  `file` holds the file's path relative to it.
- Output: one row per input row, in input order: `entities` (start_char,
  end_char, label, score), `tags` (start_char, end_char, tag; pipelines that
  assign tags) and `error`: null, or why the row has no annotation (no text, a
  text that is not a string or is empty, a line that is not JSON...). A bad
  row never stops the job.

Both engines annotate the same units: chunks of `batch_size` consecutive rows
of one file, each one `nlp.pipe` batch (rows with an error take part as empty
docs, which the encoder never sees). A transformer's floating point results
depend a little on which docs share a batch; with the same batches, the
engines' scores are the same to the last bit.
"""
import json
import os
import time
from dataclasses import dataclass, field
from itertools import tee
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc, DocBin

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
OUTPUT_FORMATS = ("jsonl", "parquet", "docbin")
ANNOTATE_INSTALL = 'pip install "spacy-tokclf[ray]"'
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputRow:
    """One input row: its id and text, or why it cannot be annotated."""

    id: Any
    text: Optional[str]
    error: Optional[str] = None


@dataclass(frozen=True)
class OutputSpec:
    """What each output row holds; the same for every row of a run."""

    ents: bool
    tags: bool
    score_keys: Tuple[str, ...]
    # The Arrow type of ids in Parquet output: "int64" (line numbers, integer
    # Parquet ids) or "string" (anything else; JSON output keeps ids as read).
    id_type: str = "int64"
    with_file: bool = False


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


# Input ------------------------------------------------------------------------


def input_format(path: Path) -> str:
    """'jsonl', 'parquet' or 'text', from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return "text"


def input_files(path: Path) -> List[Path]:
    """The input file, or the files under the input directory in sorted
    order, without those whose name (or a parent's, below `path`) starts
    with "." or "_"."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"The input {path} does not exist.")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise ValueError(f"The input directory {path} holds no files.")
    return files


def output_spec(nlp: Language, inputs: List[Path], root: Path, id_field: str = "id") -> OutputSpec:
    """The output columns for this pipeline and input."""
    from .pipeline import TokenClassifier

    ents = tags = False
    keys: List[str] = []
    for name, proc in nlp.pipeline:
        if isinstance(proc, TokenClassifier):
            if "ents" in proc.tasks:
                ents = True
                keys.append(proc.cfg["spans_key"])
            tags = tags or "tag" in proc.tasks
        else:
            assigns = nlp.get_pipe_meta(name).assigns
            ents = ents or "doc.ents" in assigns
            tags = tags or "token.tag" in assigns
    return OutputSpec(
        ents=ents,
        tags=tags,
        score_keys=tuple(keys),
        id_type=_id_type(inputs, id_field),
        with_file=Path(root).is_dir(),
    )


def _id_type(inputs: List[Path], id_field: str) -> str:
    """The Arrow type of the output ids: int64 for line numbers and integer
    Parquet ids, string otherwise (JSON output keeps ids as they were)."""
    formats = {input_format(p) for p in inputs}
    if formats == {"text"}:
        return "int64"
    if formats == {"parquet"}:
        import pyarrow.parquet as pq

        types = {_schema_id_type(pq.read_schema(p), id_field) for p in inputs}
        if len(types) == 1:
            return types.pop()
    return "string"


def _schema_id_type(schema: Any, id_field: str) -> str:
    import pyarrow as pa

    if id_field not in schema.names or pa.types.is_integer(schema.field(id_field).type):
        return "int64"
    return "string"


def read_rows(
    f: Any, fmt: str, *, text_field: str = "text", id_field: str = "id"
) -> Iterator[InputRow]:
    """The rows of one open binary file (anything with .read(n); Parquet
    needs a seekable file).

    f: the file. fmt (str): 'jsonl', 'parquet' or 'text'.
    text_field (str): the text's key (JSONL) or column (Parquet).
    id_field (str): the id's key or column.
    YIELDS (InputRow): one per row.
    """
    if fmt == "parquet":
        yield from _parquet_rows(f, text_field, id_field)
        return
    for number, line in enumerate(_lines(f)):
        if fmt == "text":
            text, error = _decode(line)
            yield _checked(number, text, error)
            continue
        if not line.strip():
            continue  # a blank line of a JSONL file is not a row
        text, error = _decode(line)
        if text is None:
            yield InputRow(number, None, error)
            continue
        try:
            record = json.loads(text)
        except ValueError as err:
            yield InputRow(number, None, f"invalid JSON: {err}")
            continue
        if not isinstance(record, dict):
            yield InputRow(number, None, f"not a JSON object: {type(record).__name__}")
            continue
        row_id = record.get(id_field)
        yield _checked(number if row_id is None else row_id, record.get(text_field, _MISSING))


_MISSING = object()


def _checked(row_id: Any, text: Any, error: Optional[str] = None) -> InputRow:
    """An InputRow, with an error for a text that cannot be annotated."""
    if error is None:
        if text is _MISSING or text is None:
            error = "no text: the text field is missing or null"
        elif not isinstance(text, str):
            error = f"text is not a string: {type(text).__name__}"
        elif not text:
            error = "empty text"
        else:
            try:
                text.encode("utf8")
            except UnicodeEncodeError:
                error = "text is not valid Unicode: it holds a lone surrogate"
    return InputRow(row_id, text if error is None else None, error)


def _lines(f: Any) -> Iterator[bytes]:
    """Lines of a binary stream without their b"\\n" (and b"\\r"); no empty
    last line after a final newline."""
    rest = b""
    while True:
        block = f.read(_READ_BLOCK)
        if not block:
            break
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part[:-1] if part.endswith(b"\r") else part
    if rest:
        yield rest[:-1] if rest.endswith(b"\r") else rest


def _decode(line: bytes) -> Tuple[Optional[str], Optional[str]]:
    try:
        return line.decode("utf8"), None
    except UnicodeDecodeError as err:
        return None, f"not UTF-8: {err.reason} at byte {err.start}"


def _parquet_rows(f: Any, text_field: str, id_field: str) -> Iterator[InputRow]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(f)
    names = parquet.schema_arrow.names
    columns = [c for c in (text_field, id_field) if c in names]
    number = 0
    if not columns:
        for _ in range(parquet.metadata.num_rows):
            yield _checked(number, _MISSING)
            number += 1
        return
    for batch in parquet.iter_batches(batch_size=4096, columns=columns):
        data = batch.to_pydict()
        texts = data.get(text_field, [_MISSING] * batch.num_rows)
        ids = data.get(id_field, [None] * batch.num_rows)
        for text, row_id in zip(texts, ids):
            yield _checked(number if row_id is None else row_id, text)
            number += 1


def chunked(rows: Iterable[InputRow], size: int) -> Iterator[List[InputRow]]:
    """Consecutive chunks of `size` rows; the last one may be shorter."""
    chunk: List[InputRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def file_chunks(
    path: Path, root: Path, size: int, *, text_field: str, id_field: str
) -> Iterator[Tuple[Optional[str], List[InputRow]]]:
    """(relative name or None, chunk) for each chunk of one input file."""
    name = Path(path).relative_to(root).as_posix() if Path(root).is_dir() else None
    with open(path, "rb") as f:
        rows = read_rows(f, input_format(path), text_field=text_field, id_field=id_field)
        for chunk in chunked(rows, size):
            yield name, chunk


# Annotation -------------------------------------------------------------------


def output_row(doc: Optional[Doc], row: InputRow, spec: OutputSpec, name: Optional[str]) -> dict:
    """The output row of an input row and its annotated doc."""
    out: Dict[str, Any] = {"id": row.id}
    if spec.with_file:
        out["file"] = name
    annotated = doc if row.error is None else None
    if spec.ents:
        out["entities"] = _entities(annotated, spec) if annotated is not None else None
    if spec.tags:
        out["tags"] = (
            [{"start_char": t.idx, "end_char": t.idx + len(t), "tag": t.tag_} for t in annotated]
            if annotated is not None
            else None
        )
    out["error"] = row.error
    return out


def _entities(doc: Doc, spec: OutputSpec) -> List[dict]:
    scores: Dict[Tuple[int, int, str], float] = {}
    for key in spec.score_keys:
        group = doc.spans.get(key)
        if group is None:
            continue
        for span, score in zip(group, group.attrs.get("scores", ())):
            if score is not None:
                scores.setdefault((span.start_char, span.end_char, span.label_), float(score))
    return [
        {
            "start_char": ent.start_char,
            "end_char": ent.end_char,
            "label": ent.label_,
            "score": scores.get((ent.start_char, ent.end_char, ent.label_)),
        }
        for ent in doc.ents
    ]


def within_length(chunk: List[InputRow], max_length: int) -> List[InputRow]:
    """The chunk, with an error for each text longer than nlp.max_length
    (spaCy would refuse it and stop the whole batch)."""
    return [
        InputRow(row.id, None, f"text too long: {len(row.text)} characters, over nlp.max_length {max_length}")
        if row.text is not None and len(row.text) > max_length
        else row
        for row in chunk
    ]


def chunk_texts(chunk: List[InputRow]) -> List[str]:
    """The texts nlp.pipe reads for a chunk: "" (an empty doc) for a row with
    an error, so that every row keeps its place in the batch."""
    return [row.text if row.text is not None else "" for row in chunk]


def annotate_chunk(
    nlp: Language, chunk: List[InputRow], spec: OutputSpec, name: Optional[str], batch_size: int
) -> List[dict]:
    """Annotate one chunk (at most batch_size rows) as one nlp.pipe batch."""
    chunk = within_length(chunk, nlp.max_length)
    docs = nlp.pipe(chunk_texts(chunk), batch_size=batch_size)
    return [output_row(doc, row, spec, name) for doc, row in zip(docs, chunk)]


def _tag_doc(doc: Doc, row: dict) -> None:
    doc.user_data["id"] = row["id"]
    doc.user_data["error"] = row["error"]
    if "file" in row:
        doc.user_data["file"] = row["file"]


# Output -----------------------------------------------------------------------


def output_format(output: Path, fmt: Optional[str]) -> str:
    """'jsonl', 'parquet' or 'docbin': --format, or the output's suffix."""
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"Unknown --format '{fmt}': use one of {', '.join(OUTPUT_FORMATS)}.")
        return fmt
    suffix = Path(output).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".spacy":
        return "docbin"
    raise ValueError(
        f"Cannot tell the output format from the name '{output}': end it in .jsonl, "
        f".parquet or .spacy (one file), or give --format jsonl|parquet to write a "
        f"directory of files."
    )


def arrow_schema(spec: OutputSpec) -> Any:
    """The Arrow schema of the output rows (Parquet output)."""
    import pyarrow as pa

    fields = [pa.field("id", pa.int64() if spec.id_type == "int64" else pa.string())]
    if spec.with_file:
        fields.append(pa.field("file", pa.string()))
    if spec.ents:
        entity = pa.struct(
            [
                ("start_char", pa.int64()),
                ("end_char", pa.int64()),
                ("label", pa.string()),
                ("score", pa.float64()),
            ]
        )
        fields.append(pa.field("entities", pa.list_(entity)))
    if spec.tags:
        tag = pa.struct([("start_char", pa.int64()), ("end_char", pa.int64()), ("tag", pa.string())])
        fields.append(pa.field("tags", pa.list_(tag)))
    fields.append(pa.field("error", pa.string()))
    return pa.schema(fields)


def to_arrow(rows: List[dict], spec: OutputSpec) -> Any:
    """Output rows as an Arrow table of `arrow_schema(spec)`."""
    import pyarrow as pa

    schema = arrow_schema(spec)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    if spec.id_type != "int64":
        columns["id"] = [
            v if isinstance(v, str) else json.dumps(v, default=str) for v in columns["id"]
        ]
    return pa.Table.from_pydict(columns, schema=schema)


def to_json_lines(rows: List[dict]) -> List[str]:
    """Output rows as JSON lines (no newline)."""
    return [json.dumps(row, ensure_ascii=False, default=str) for row in rows]


class Writer:
    """Writes a run's output: one file, or, for a directory, one part file.

    The local engine and the Ray engine's single-file output both write
    through it, so they write the same bytes for the same rows.
    """

    def __init__(self, output: Path, fmt: str, spec: OutputSpec):
        output = Path(output)
        if fmt != "docbin" and not output.suffix:
            output.mkdir(parents=True, exist_ok=True)
            output = output / ("part-00000." + fmt)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
        self.path = output
        self.fmt = fmt
        self.spec = spec
        self._file: Any = None
        self._parquet: Any = None
        self._docbin: Optional[DocBin] = None
        if fmt == "jsonl":
            self._file = open(output, "w", encoding="utf8")
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            self._parquet = pq.ParquetWriter(str(output), arrow_schema(spec))
        else:
            self._docbin = DocBin(store_user_data=True)

    def write_rows(self, rows: List[dict]) -> None:
        if self.fmt == "jsonl":
            self.write_lines(to_json_lines(rows))
        else:
            self.write_table(to_arrow(rows, self.spec))

    def write_lines(self, lines: Iterable[str]) -> None:
        self._file.writelines(line + "\n" for line in lines)

    def write_table(self, table: Any) -> None:
        if table.num_rows:
            self._parquet.write_table(table)

    def write_docs(self, docs: Iterable[Doc]) -> None:
        assert self._docbin is not None
        for doc in docs:
            self._docbin.add(doc)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._parquet is not None:
            self._parquet.close()
        if self._docbin is not None:
            self._docbin.to_disk(self.path)


def read_output(path: Path) -> List[dict]:
    """The rows of an output file or directory (files in sorted order), as
    dicts: for comparing outputs and for tests."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    rows: List[dict] = []
    for p in files:
        fmt = input_format(p)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            rows.extend(pq.read_table(p).to_pylist())
        elif fmt == "jsonl":
            with open(p, encoding="utf8") as f:
                rows.extend(json.loads(line) for line in f if line.strip())
    return rows


# The local engine -----------------------------------------------------------


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
            _tag_doc(doc, row)
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
