"""Writing annotated rows: docs -> output rows -> part files (JSONL, Parquet
or DocBin) -> one output file or a directory of part files.

- Output: one row per input row, in input order: `id`, `file` (with a
  directory as input: the file's path relative to it), `entities`
  (start_char, end_char, label, score), `tags` (start_char, end_char, tag;
  pipelines that assign tags) and `error`: null, or why the row has no
  annotation.
- `Part` turns one unit's rows into the bytes of a part file. A row that
  cannot be written (a value JSON, Arrow or msgpack refuses) becomes an error
  row there, and the rest of the unit is written. Both engines write through
  it, so they write the same bytes for the same rows; `merge_parts` joins the
  parts of a file output (resume.py decides where they live).
"""
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..errors import ScaleErrors, error
from ..pipeline import TokenClassifier
from .input import (
    JSONL_SUFFIXES,
    PARQUET_SUFFIXES,
    InputRow,
    input_format,
    safe_value,
)

OUTPUT_FORMATS = ("jsonl", "parquet", "docbin")
PART_SUFFIX = {"jsonl": ".jsonl", "parquet": ".parquet", "docbin": ".spacy"}


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
class Tally:
    """Rows written, and of them: annotated, with an error (by reason), and
    the entities of the annotated ones."""

    rows: int = 0
    annotated: int = 0
    entities: int = 0
    errors: Dict[str, int] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        self.rows += 1
        if row["error"] is None:
            self.annotated += 1
            self.entities += len(row.get("entities") or ())
        else:
            reason = row["error"].split(":", 1)[0]
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def merge(self, other: "Tally") -> None:
        self.rows += other.rows
        self.annotated += other.annotated
        self.entities += other.entities
        for reason, n in other.errors.items():
            self.errors[reason] = self.errors.get(reason, 0) + n

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def output_spec(nlp: Language, inputs: List[Path], root: Path, id_field: str = "id") -> OutputSpec:
    """The output columns for this pipeline and input."""
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


def error_row(row: dict, spec: OutputSpec, reason: str) -> dict:
    """The row, without annotation, with `reason` as its error and its id
    and file made writable."""
    out: Dict[str, Any] = {"id": safe_value(row.get("id"))}
    if spec.with_file:
        out["file"] = safe_value(row.get("file"))
    if spec.ents:
        out["entities"] = None
    if spec.tags:
        out["tags"] = None
    out["error"] = safe_value(reason)
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


def add_to_docbin(docbin: DocBin, doc: Doc, row: dict, spec: OutputSpec) -> dict:
    """Add the doc, with the row's id, error (and file) in its user_data, and
    return the row as written: an empty doc and an error row where the
    user_data cannot be serialized (DocBin.add would fail half way)."""
    user_data = {key: row[key] for key in ("id", "error", "file") if key in row}
    try:
        srsly.msgpack_dumps(user_data)
    except Exception as err:  # noqa: BLE001 - any value msgpack refuses is one bad row
        row = error_row(row, spec, f"cannot be written to a DocBin: {type(err).__name__}: {err}")
        user_data = {key: row[key] for key in ("id", "error", "file") if key in row}
        doc = Doc(doc.vocab, words=[])
    doc.user_data.update(user_data)
    docbin.add(doc)
    return row


def output_format(output: Path, fmt: Optional[str]) -> str:
    """'jsonl', 'parquet' or 'docbin': --format, or the output's suffix."""
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(
                error(ScaleErrors.UNKNOWN_OUTPUT_FORMAT, fmt=fmt, formats=", ".join(OUTPUT_FORMATS))
            )
        return fmt
    suffix = Path(output).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".spacy":
        return "docbin"
    raise ValueError(error(ScaleErrors.OUTPUT_FORMAT_FROM_NAME, output=output))


def output_is_dir(output: Path, fmt: str) -> bool:
    """A name without a suffix, with --format jsonl or parquet, is a
    directory of part files; anything else is one file."""
    return fmt != "docbin" and not Path(output).suffix


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


class Part:
    """One unit's output rows, turned into the bytes of a part file.

    fmt (str): 'jsonl', 'parquet' or 'docbin'. spec (OutputSpec): the columns.
    """

    def __init__(self, *, fmt: str, spec: OutputSpec):
        self.fmt = fmt
        self.spec = spec
        self.tally = Tally()
        self._lines: List[bytes] = []
        self._rows: List[dict] = []
        self._docbin = DocBin(store_user_data=True) if fmt == "docbin" else None

    def add(self, rows: List[dict], docbin: Optional[bytes] = None) -> None:
        """Add a chunk's rows (and for DocBin output, the chunk's DocBin
        bytes, whose docs are already tagged by add_to_docbin)."""
        if self.fmt == "jsonl":
            rows = [self._add_line(row) for row in rows]
        elif self.fmt == "parquet":
            rows = self._writable_arrow(rows)
            self._rows.extend(rows)
        else:
            assert self._docbin is not None and docbin is not None
            self._docbin.merge(DocBin(store_user_data=True).from_bytes(docbin))
        for row in rows:
            self.tally.add(row)

    def _add_line(self, row: dict) -> dict:
        try:
            self._lines.append(_json_line(row))
        except (TypeError, ValueError, UnicodeError) as err:
            row = error_row(row, self.spec, f"cannot be written as JSON: {type(err).__name__}: {err}")
            self._lines.append(_json_line(row))
        return row

    def _writable_arrow(self, rows: List[dict]) -> List[dict]:
        try:
            to_arrow(rows, self.spec)
            return rows
        except Exception:  # noqa: BLE001 - find the rows Arrow refuses, one by one
            return [self._arrow_row(row) for row in rows]

    def _arrow_row(self, row: dict) -> dict:
        try:
            to_arrow([row], self.spec)
            return row
        except Exception as err:  # noqa: BLE001
            bad = error_row(row, self.spec, f"cannot be written to Parquet: {type(err).__name__}: {err}")
        try:
            to_arrow([bad], self.spec)
        except Exception:  # noqa: BLE001 - the id itself is what Arrow refuses
            bad["id"] = None
        return bad

    def to_bytes(self) -> bytes:
        """The part file's bytes."""
        if self.fmt == "jsonl":
            return b"".join(self._lines)
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            buffer = io.BytesIO()
            pq.write_table(to_arrow(self._rows, self.spec), buffer)
            return buffer.getvalue()
        assert self._docbin is not None
        return self._docbin.to_bytes()


def _json_line(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False, default=str) + "\n").encode("utf8")


def merge_parts(parts: Iterable[Path], fmt: str, spec: OutputSpec, dest: Path) -> None:
    """Join part files, in order, into one output file `dest`."""
    if fmt == "jsonl":
        with open(dest, "wb") as out:
            for path in parts:
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(str(dest), arrow_schema(spec)) as writer:
            for path in parts:
                table = pq.read_table(path)
                if table.num_rows:
                    writer.write_table(table)
    else:
        docbin = DocBin(store_user_data=True)
        for path in parts:
            docbin.merge(DocBin(store_user_data=True).from_bytes(Path(path).read_bytes()))
        Path(dest).write_bytes(docbin.to_bytes())


def part_rows(path: Path, fmt: str) -> int:
    """The number of rows in a part file."""
    if fmt == "jsonl":
        with open(path, "rb") as f:
            return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return len(DocBin(store_user_data=True).from_bytes(Path(path).read_bytes()))


def read_output(path: Path) -> List[dict]:
    """The rows of a JSONL or Parquet output file or directory (its part
    files in sorted order), as dicts: for comparing outputs and for tests."""
    path = Path(path)
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    )
    rows: List[dict] = []
    for p in files:
        fmt = input_format(p)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            rows.extend(pq.read_table(p).to_pylist())
        elif fmt in ("jsonl", "json"):
            with open(p, encoding="utf8") as f:
                rows.extend(json.loads(line) for line in f if line.strip())
    return rows
