"""Writing annotated rows: docs -> output rows -> JSONL, Parquet or DocBin.

- Output: one row per input row, in input order: `id`, `file` (with a
  directory as input: the file's path relative to it), `entities`
  (start_char, end_char, label, score), `tags` (start_char, end_char, tag;
  pipelines that assign tags) and `error`: null, or why the row has no
  annotation.
- `Writer` writes one file (or one part file of a directory); both engines
  write through it, so they write the same bytes for the same rows.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .annotate_input import JSONL_SUFFIXES, PARQUET_SUFFIXES, InputRow, input_format
from .errors import ScaleErrors, error
from .pipeline import TokenClassifier

OUTPUT_FORMATS = ("jsonl", "parquet", "docbin")


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


def tag_doc(doc: Doc, row: dict) -> None:
    doc.user_data["id"] = row["id"]
    doc.user_data["error"] = row["error"]
    if "file" in row:
        doc.user_data["file"] = row["file"]


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
