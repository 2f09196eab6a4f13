"""Reading a corpus to annotate: input files -> rows -> chunks.

- Input: JSONL (.jsonl, .ndjson, .json: one JSON object a line), Parquet
  (.parquet, .pq) or plain text (any other name: one document a line); a file,
  or a directory of such files (read in sorted order; names starting with "."
  or "_" are skipped, as Ray does). Blank lines of a JSONL file are not rows.
- A row's `id` is the value of its id field, or, where it has none, its
  0-based line (Parquet: row) number in its file.
- A row that cannot be annotated (no text, a text that is not a string or is
  empty, a line that is not JSON...) keeps its place, with the reason in
  `error`: a bad row never stops the job.

Both engines (annotate.py, annotate_ray.py) read through these functions, so
they annotate the same chunks of rows.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Tuple

from .errors import ScaleErrors, error

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputRow:
    """One input row: its id and text, or why it cannot be annotated."""

    id: Any
    text: Optional[str]
    error: Optional[str] = None


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
        raise FileNotFoundError(error(ScaleErrors.NO_INPUT, path=path))
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise ValueError(error(ScaleErrors.EMPTY_INPUT_DIR, path=path))
    return files


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
