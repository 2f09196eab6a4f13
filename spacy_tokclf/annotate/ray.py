"""`tokclf-annotate --engine ray`: corpus annotation on a Ray cluster.

Ray Data reads the input files in parallel (one read task per group of
files) into units (input.Unit), and a pool of actors (each loads the
pipeline once) annotates each unit into its part file. For a directory
output the actors write the parts themselves (into the partial directory,
which must be on a file system every node shares); for a file output they
send them back and this process writes them. Either way, the parts are
joined or renamed into place only when there is one for every unit
(resume.py), so a retried unit is written and counted once, and
--resume skips the units an earlier run finished.

Needs the `ray` extra (pip install "spacy-tokclf[ray]"), imported only when
`annotate_ray` runs (`require_ray`).
"""
import json
import os
import pickle
import time
from array import array
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ..errors import ScaleErrors, error
from .input import Unit, file_name, input_files, input_format, read_units, row_key
from .local import (
    CHECKPOINT_ROWS,
    Counts,
    RowKeys,
    annotate_unit,
    default_threads,
    find_repeated_ids,
    run_settings,
    unit_chunks,
)
from .output import OutputSpec, Tally, output_format, output_spec
from .resume import Key, PartialOutput, write_part


def require_ray() -> Any:
    """Import ray (with Ray Data), or raise an error that names the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(error(ScaleErrors.NO_RAY_DATA, error=err)) from err
    return ray


def _unit_datasource(
    files: List[Path], root: Path, batch_size: int, n_chunks: int, text_field: str, id_field: str, kept: Set[Key]
):
    """A Ray Data datasource whose rows are units: (file index, unit index,
    file name, rows, whether a kept part has it, pickled chunks, row keys).
    A kept unit is read (its ids count for repeated ids) but not sent on."""
    import pyarrow as pa
    from ray.data.datasource import FileBasedDatasource

    index = {str(Path(p).resolve()): i for i, p in enumerate(files)}
    schema = pa.schema(
        [("file_index", pa.int64()), ("unit", pa.int64()), ("name", pa.string()),
         ("n_rows", pa.int64()), ("skip", pa.bool_()), ("chunks", pa.binary()),
         ("keys", pa.binary())]
    )  # fmt: skip

    class UnitDatasource(FileBasedDatasource):
        def _open_input_source(self, filesystem, path, **open_args):
            if input_format(Path(path)) == "parquet":
                return filesystem.open_input_file(path)  # Parquet needs to seek
            return super()._open_input_source(filesystem, path, **open_args)

        def _read_stream(self, f, path):
            name = file_name(Path(path), root)
            units = read_units(
                f, input_format(Path(path)), index[str(Path(path).resolve())], name,
                batch_size, n_chunks, text_field=text_field, id_field=id_field,
            )  # fmt: skip
            for unit in units:
                keys = array("Q", (row_key(name, row.id) for chunk in unit.chunks for row in chunk))
                skip = unit.key in kept
                record = {
                    "file_index": [unit.file_index], "unit": [unit.index], "name": [name],
                    "n_rows": [unit.n_rows], "skip": [skip],
                    "chunks": [b"" if skip else pickle.dumps(unit.chunks)], "keys": [keys.tobytes()],
                }  # fmt: skip
                yield pa.table(record, schema=schema)

    return UnitDatasource([str(p) for p in files])


class Annotator:
    """The Ray Data callable class: loads the pipeline once per actor, then
    annotates units into parts, which it writes (parts_dir) or returns."""

    def __init__(
        self, model: str, spec: OutputSpec, fmt: str, batch_size: int, threads: int, parts_dir: Optional[str]
    ):
        import spacy
        import torch

        torch.set_num_threads(max(1, threads))
        import ray

        if ray.get_gpu_ids():
            spacy.require_gpu(0)  # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU
        self.nlp = spacy.load(model)
        self.spec = spec
        self.fmt = fmt
        self.batch_size = batch_size
        self.parts_dir = parts_dir

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        out: Dict[str, list] = {"payload": [], "tally": [], "done_at": []}
        for record in batch.to_pylist():
            payload, tally = b"", Tally()
            if not record["skip"]:
                chunks = pickle.loads(record["chunks"])
                unit = Unit(record["file_index"], record["unit"], record["name"], chunks)
                part = annotate_unit(self.nlp, unit, self.spec, self.fmt, self.batch_size)
                payload, tally = part.to_bytes(), part.tally
                if self.parts_dir is not None:
                    write_part(Path(self.parts_dir), unit.key, self.fmt, payload)
                    payload = b""
            out["payload"].append(payload)
            out["tally"].append(json.dumps(asdict(tally)))
            out["done_at"].append(time.time())
        table = batch.drop_columns(["chunks"])
        for name, values in out.items():
            table = table.append_column(name, pa.array(values))
        return table


def annotate_ray(
    model: str,
    inputs: Path,
    output: Path,
    *,
    fmt: Optional[str] = None,
    workers: int = 2,
    batch_size: int = 64,
    text_field: str = "text",
    id_field: str = "id",
    cpus_per_worker: Optional[float] = None,
    gpus_per_worker: Optional[float] = None,
    resume: bool = False,
    checkpoint_rows: int = CHECKPOINT_ROWS,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Counts:
    """Annotate a corpus with Ray Data: a pool of `workers` actors, each with
    the pipeline loaded once.

    Connects to the cluster named by RAY_ADDRESS ("auto": the one started on
    this machine with `ray start`); without it, starts a local cluster with
    workers x cpus_per_worker CPUs and shuts it down at the end.

    model (str): a pipeline package name or directory, loadable on every node.
    inputs (Path): a file or directory of files, readable from every node.
    output (Path): a file (.jsonl, .parquet: the parts come back to this
        process) or, with fmt, a directory (the actors write the parts; on a
        cluster, a path every node shares); written under its name only
        when complete.
    fmt (Optional[str]): 'jsonl' or 'parquet'; None: from the suffix.
    workers (int): actors in the pool.
    batch_size (int): rows per batch.
    text_field (str), id_field (str): where the text and id are.
    cpus_per_worker (Optional[float]): CPUs per actor (its torch threads);
        None: this machine's cores / workers on a local cluster (the local
        engine's threads, so that both give the same output), 1 on a running one.
    gpus_per_worker (Optional[float]): GPUs per actor; None: 1 where the
        cluster has GPUs, else 0.
    resume (bool): continue the killed run that wrote the partial output.
    checkpoint_rows (int): rows per part and per actor call (whole batches).
    progress (bool): show Ray Data's progress bars.
    log (Callable[[str], None]): where the counts are printed.
    RETURNS (Counts): the counts.
    """
    import spacy

    ray = require_ray()
    fmt = output_format(output, fmt)
    if fmt == "docbin":
        raise ValueError(error(ScaleErrors.RAY_DOCBIN))
    inputs = Path(inputs).resolve()
    files = input_files(inputs)
    nlp = spacy.load(model)  # the output columns depend on the pipeline
    spec = output_spec(nlp, files, inputs, id_field)
    del nlp
    n_chunks = unit_chunks(batch_size, checkpoint_rows)
    partial = PartialOutput(
        inputs=inputs, files=files, output=output, fmt=fmt, spec=spec, resume=resume, log=log,
        settings=run_settings(batch_size, n_chunks, text_field, id_field),
    )  # fmt: skip
    kept = set(partial.open())
    started = not ray.is_initialized()
    address = os.environ.get("RAY_ADDRESS") if started else None
    if cpus_per_worker is None:
        cpus_per_worker = 1.0 if address or not started else float(default_threads(workers))
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=max(1, int(round(workers * cpus_per_worker))),
                include_dashboard=False,
                log_to_driver=False,
            )
    try:
        source = _unit_datasource(files, inputs, batch_size, n_chunks, text_field, id_field, kept)
        counts, keys = _run(
            ray, model, source, partial, spec, workers, batch_size, cpus_per_worker,
            gpus_per_worker, progress,
        )  # fmt: skip
    finally:
        if started:
            ray.shutdown()
    find_repeated_ids(counts, keys, files, inputs, text_field, id_field)
    for line in counts.lines():
        log(line)
    return counts


def _run(
    ray, model, source, partial: PartialOutput, spec, workers, batch_size, cpus_per_worker,
    gpus_per_worker, progress,
) -> Tuple[Counts, RowKeys]:
    from ray.data import ActorPoolStrategy, DataContext

    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    counts = Counts(started_at=time.time())
    start = time.perf_counter()
    # Reading takes no CPU slot, so that it runs beside a pool that holds all of them.
    ds = ray.data.read_datasource(source, num_cpus=0)
    ds = ds.map_batches(
        Annotator,
        fn_constructor_kwargs={
            "model": model,
            "spec": spec,
            "fmt": partial.fmt,
            "batch_size": batch_size,
            "threads": max(1, int(cpus_per_worker)),
            "parts_dir": str(partial.parts) if partial.is_dir else None,
        },
        batch_size=1,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker,
    )
    keys, seen = RowKeys(), set()
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for record in table.to_pylist():
            key = (record["file_index"], record["unit"])
            if key in seen:
                continue  # a retried unit: its part was written again, count it once
            seen.add(key)
            keys.keys.frombytes(record["keys"])
            if record["skip"]:
                counts.resumed += record["n_rows"]
                continue
            counts.read += record["n_rows"]
            if not partial.is_dir:
                partial.commit(key, record["payload"])
            counts.written.merge(Tally(**json.loads(record["tally"])))
            counts.batch_done(record["n_rows"], record["done_at"])
    partial.finish(seen)
    counts.seconds = time.perf_counter() - start
    return counts, keys
