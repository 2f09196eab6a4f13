"""Reading a corpus to annotate: input files -> rows -> chunks -> units.

- Input: JSONL (.jsonl, .ndjson: one JSON object a line), JSON (.json: an
  array of objects, or JSON lines), Parquet (.parquet, .pq) or plain text
  (any other name: one document a line); a file, or a directory of such files
  (read in sorted order; names starting with "." or "_" are skipped, as Ray
  does). Blank lines of a JSONL file are not rows; a UTF-8 byte order mark at
  the start of a file is not text.
- A row's `id` is the value of its id field, or, where it has none, its
  0-based line (Parquet: row; JSON array: element) number in its file.
- A row that cannot be annotated or written as it is (no text, a text that is
  not a string or is empty, a line that is not JSON, an id that is not valid
  Unicode...) keeps its place, with the reason in `error` and its id made
  writable (`safe_value`): a bad row never stops the job.
- A chunk is `batch_size` consecutive rows of one file (one `nlp.pipe`
  batch); a unit is `unit_chunks` consecutive chunks of one file, keyed by
  (file index, unit index): the part of the output that is written, and kept
  by --resume, as a whole.

Both engines (local.py, ray.py) read through these functions, so
they annotate the same chunks of rows.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

from ..errors import ScaleErrors, error

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
_READ_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class InputRow:
    """One input row: its id and text, or why it cannot be annotated."""

    id: Any
    text: Optional[str]
    error: Optional[str] = None


@dataclass(frozen=True)
class Unit:
    """`unit_chunks` consecutive chunks of one file: written as one part."""

    file_index: int
    index: int
    name: Optional[str]  # the file's path relative to a directory input
    chunks: List[List[InputRow]]

    @property
    def key(self) -> Tuple[int, int]:
        return (self.file_index, self.index)

    @property
    def n_rows(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)


def input_format(path: Path) -> str:
    """'jsonl', 'json', 'parquet' or 'text', from the file name."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
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


def file_name(path: Path, root: Path) -> Optional[str]:
    """The file's path relative to a directory input (None for a file input),
    made writable (a name the file system could not decode holds surrogates)."""
    if not Path(root).is_dir():
        return None
    return safe_value(Path(path).relative_to(root).as_posix())


def read_rows(
    f: Any, fmt: str, *, text_field: str = "text", id_field: str = "id"
) -> Iterator[InputRow]:
    """The rows of one open binary file (anything with .read(n); Parquet
    needs a seekable file).

    f: the file. fmt (str): 'jsonl', 'json', 'parquet' or 'text'.
    text_field (str): the text's key (JSON) or column (Parquet).
    id_field (str): the id's key or column.
    YIELDS (InputRow): one per row.
    """
    if fmt == "parquet":
        yield from _parquet_rows(f, text_field, id_field)
        return
    first = f.read(_READ_BLOCK)
    if first.startswith(_BOM):
        first = first[len(_BOM) :]
    if fmt == "json" and first.lstrip()[:1] == b"[":
        yield from _array_rows(first + f.read(), text_field, id_field)
        return
    for number, line in enumerate(_lines(f, first)):
        if fmt == "text":
            text, reason = _decode(line)
            yield _checked(number, text, reason)
            continue
        if not line.strip():
            continue  # a blank line of a JSONL file is not a row
        text, reason = _decode(line)
        if text is None:
            yield InputRow(number, None, reason)
            continue
        try:
            record = json.loads(text)
        except ValueError as err:
            yield InputRow(number, None, f"invalid JSON: {err}")
            continue
        yield _record_row(number, record, text_field, id_field)


def _array_rows(data: bytes, text_field: str, id_field: str) -> Iterator[InputRow]:
    """The elements of a JSON array, one row each (a .json file is parsed
    whole: use JSONL for corpora that do not fit in memory)."""
    text, reason = _decode(data)
    if text is None:
        yield InputRow(0, None, reason)
        return
    try:
        records = json.loads(text)
    except ValueError as err:
        yield InputRow(0, None, f"invalid JSON: the file's array cannot be read: {err}")
        return
    for number, record in enumerate(records):
        yield _record_row(number, record, text_field, id_field)


def _record_row(number: int, record: Any, text_field: str, id_field: str) -> InputRow:
    if not isinstance(record, dict):
        return InputRow(number, None, f"not a JSON object: {type(record).__name__}")
    row_id = record.get(id_field)
    return _checked(number if row_id is None else row_id, record.get(text_field, _MISSING))


_MISSING = object()


def _checked(row_id: Any, text: Any, reason: Optional[str] = None) -> InputRow:
    """An InputRow, with an error for a text that cannot be annotated or an
    id that cannot be written."""
    safe_id = safe_value(row_id)
    if safe_id is not row_id:
        # JSON allows "\ud800", UTF-8 does not: the id is written escaped, and
        # the row is an error row, since it no longer names its input row exactly.
        return InputRow(safe_id, None, "id is not valid Unicode: it holds a lone surrogate")
    if reason is None:
        if text is _MISSING or text is None:
            reason = "no text: the text field is missing or null"
        elif not isinstance(text, str):
            reason = f"text is not a string: {type(text).__name__}"
        elif not text:
            reason = "empty text"
        elif safe_value(text) is not text:
            reason = "text is not valid Unicode: it holds a lone surrogate"
    return InputRow(row_id, text if reason is None else None, reason)


def safe_value(value: Any) -> Any:
    """The value, or, where a string in it is not valid Unicode (a lone
    surrogate), a writable stand-in: the string with each such character
    escaped ("\\ud800"); a list or object holding one becomes its JSON text."""
    if isinstance(value, str):
        try:
            value.encode("utf8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf8", "backslashreplace").decode("utf8")
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return value if safe_value(text) is text else json.dumps(value, default=str)
    return value


def _lines(f: Any, first: bytes = b"") -> Iterator[bytes]:
    """Lines of a binary stream (whose first block was `first`) without their
    b"\\n" (and b"\\r"); no empty last line after a final newline."""
    rest = b""
    block = first
    while block:
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part[:-1] if part.endswith(b"\r") else part
        block = f.read(_READ_BLOCK)
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


def chunked(rows: Iterable[Any], size: int) -> Iterator[List[Any]]:
    """Consecutive chunks of `size` items; the last one may be shorter."""
    chunk: List[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_units(
    f: Any,
    fmt: str,
    file_index: int,
    name: Optional[str],
    batch_size: int,
    unit_chunks: int,
    *,
    text_field: str,
    id_field: str,
    on_row: Optional[Callable[[Optional[str], InputRow], None]] = None,
) -> Iterator[Unit]:
    """The units of one open input file; on_row sees every row first."""
    rows = read_rows(f, fmt, text_field=text_field, id_field=id_field)
    if on_row is not None:
        rows = _seen(rows, name, on_row)
    for index, chunks in enumerate(chunked(chunked(rows, batch_size), unit_chunks)):
        yield Unit(file_index, index, name, chunks)


def _seen(rows: Iterable[InputRow], name: Optional[str], on_row: Callable) -> Iterator[InputRow]:
    for row in rows:
        on_row(name, row)
        yield row


def row_key(name: Optional[str], row_id: Any) -> int:
    """A 64-bit hash of (file, id): rows with the same key repeat an id."""
    text = json.dumps([name, row_id], ensure_ascii=True, sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(text.encode("ascii"), digest_size=8).digest(), "little")


def repeated_ids(
    files: List[Path], root: Path, keys: Iterable[int], *, text_field: str, id_field: str, limit: int = 5
) -> List[str]:
    """Up to `limit` of the ids whose row key is in `keys` (a second pass over
    the input, made only when a run found repeated ids), as "id" or "file: id"."""
    wanted, found = set(keys), []
    for path in files:
        name = file_name(path, root)
        with open(path, "rb") as f:
            for row in read_rows(f, input_format(path), text_field=text_field, id_field=id_field):
                key = row_key(name, row.id)
                if key in wanted:
                    wanted.discard(key)
                    shown = json.dumps(row.id, ensure_ascii=False, default=str)
                    found.append(shown if name is None else f"{name}: {shown}")
                    if len(found) == limit:
                        return found
    return found


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
