"""`tokclf-annotate --engine ray`: corpus annotation on a Ray cluster.

Ray Data reads the input files in parallel (one read task per group of
files), a pool of actors annotates (each loads the pipeline once), and the
rows are written by the workers (a directory: write_parquet, or JSON lines
through a file datasink) or streamed back, in order, to one output file.

Needs the `ray` extra (pip install "spacy-tokclf[ray]"); nothing else in the
package imports this module.
"""
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable, List, Optional

from .annotate import Counts, annotate_chunk, default_threads
from .annotate_input import chunked, input_files, input_format, read_rows
from .annotate_output import (
    OutputSpec,
    Writer,
    arrow_schema,
    output_format,
    output_spec,
    to_arrow,
    to_json_lines,
)
from .errors import ScaleErrors, error


def require_ray() -> Any:
    """Import ray (with Ray Data), or raise an error that names the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ImportError(error(ScaleErrors.NO_RAY_DATA, error=err)) from err
    return ray


def _chunk_datasource(paths: List[str], root: str, batch_size: int, text_field: str, id_field: str):
    """A Ray Data datasource whose rows are chunks of batch_size input rows of
    one file (file, chunk number, pickled InputRows): the units both engines
    annotate."""
    import pyarrow as pa
    from ray.data.datasource import FileBasedDatasource

    class ChunkDatasource(FileBasedDatasource):
        def _open_input_source(self, filesystem, path, **open_args):
            if input_format(Path(path)) == "parquet":
                return filesystem.open_input_file(path)  # Parquet needs to seek
            return super()._open_input_source(filesystem, path, **open_args)

        def _read_stream(self, f, path):
            name = Path(path).relative_to(root).as_posix() if Path(root).is_dir() else None
            rows = read_rows(f, input_format(Path(path)), text_field=text_field, id_field=id_field)
            for i, chunk in enumerate(chunked(rows, batch_size)):
                yield pa.table(
                    {"file": [name], "chunk": [i], "rows": [pickle.dumps(chunk)]},
                    schema=pa.schema(
                        [("file", pa.string()), ("chunk", pa.int64()), ("rows", pa.binary())]
                    ),
                )

    return ChunkDatasource(paths)


class Annotator:
    """The Ray Data callable class: loads the pipeline once per actor, then
    annotates chunks into output rows (JSON lines or Arrow columns)."""

    def __init__(
        self,
        model: str,
        spec: OutputSpec,
        fmt: str,
        batch_size: int,
        threads: int,
        counter: Any = None,
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
        self.counter = counter

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows: List[dict] = []
        for name, data in zip(batch.column("file").to_pylist(), batch.column("rows").to_pylist()):
            chunk = pickle.loads(data)
            rows.extend(annotate_chunk(self.nlp, chunk, self.spec, name, self.batch_size))
        if self.counter is not None:
            counts = Counts()
            counts.add_rows(rows)
            counts.batch_done(len(rows))
            # Waited for, so that the driver's final count sees every batch.
            import ray

            ray.get(self.counter.add.remote(counts))
        if self.fmt == "jsonl":
            return pa.table({"line": pa.array(to_json_lines(rows), pa.string())})
        return to_arrow(rows, self.spec)


def _counter_class(ray: Any) -> Any:
    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self):
            self.counts = Counts()

        def add(self, counts: Counts) -> None:
            self.counts.merge(counts)

        def get(self) -> Counts:
            return self.counts

    return Counter


def _jsonl_datasink(path: str):
    from ray.data.datasource import BlockBasedFileDatasink

    class JsonLinesDatasink(BlockBasedFileDatasink):
        """Writes the `line` column as it is: the same bytes as the local
        engine's JSON lines."""

        def __init__(self, path: str):
            super().__init__(path, file_format="jsonl")

        def write_block_to_file(self, block, file):
            lines = block.to_arrow().column("line").to_pylist()
            file.write("".join(line + "\n" for line in lines).encode("utf8"))

    return JsonLinesDatasink(path)


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
    output (Path): a file (.jsonl, .parquet: streamed back to this process, in
        input order) or, with fmt, a directory the workers write to.
    fmt (Optional[str]): 'jsonl' or 'parquet'; None: from the suffix.
    workers (int): actors in the pool.
    batch_size (int): rows per batch.
    text_field (str), id_field (str): where the text and id are.
    cpus_per_worker (Optional[float]): CPUs per actor (its torch threads);
        None: this machine's cores / workers on a local cluster (the local
        engine's threads, so that both give the same output), 1 on a running one.
    gpus_per_worker (Optional[float]): GPUs per actor; None: 1 where the
        cluster has GPUs, else 0.
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
        return _run(
            ray, model, inputs, files, Path(output), fmt, spec, workers, batch_size,
            text_field, id_field, cpus_per_worker, gpus_per_worker, progress, log,
        )
    finally:
        if started:
            ray.shutdown()


def _run(
    ray, model, inputs, files, output, fmt, spec, workers, batch_size, text_field, id_field,
    cpus_per_worker, gpus_per_worker, progress, log,
) -> Counts:
    from ray.data import ActorPoolStrategy, DataContext

    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress
    counter = _counter_class(ray).remote()
    start, started_at = time.perf_counter(), time.time()
    source = _chunk_datasource(
        [str(p) for p in files], str(inputs), batch_size, text_field, id_field
    )
    # Reading takes no CPU slot, so that it runs beside a pool that holds all of them.
    ds = ray.data.read_datasource(source, num_cpus=0)
    ds = ds.map_batches(
        Annotator,
        fn_constructor_kwargs={
            "model": model,
            "spec": spec,
            "fmt": fmt,
            "batch_size": batch_size,
            "threads": max(1, int(cpus_per_worker)),
            "counter": counter,
        },
        batch_size=1,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker,
    )
    if output.suffix:
        writer = Writer(output, fmt, spec)
        try:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                if fmt == "jsonl":
                    writer.write_lines(table.column("line").to_pylist())
                else:
                    writer.write_table(table.cast(arrow_schema(spec)))
        finally:
            writer.close()
    elif fmt == "jsonl":
        ds.write_datasink(_jsonl_datasink(str(output.resolve())))
    else:
        ds.write_parquet(str(output.resolve()))
    counts: Counts = ray.get(counter.get.remote())
    counts.seconds = time.perf_counter() - start
    counts.started_at = started_at
    for line in counts.lines():
        log(line)
    return counts
