"""Every spaCy CLI command of spacy_tokclf, thin: each parses its options and
calls the function that does the work, imported when the command runs.

    tokclf-import      hf.from_huggingface
    tokclf-export      hf.to_huggingface
    tokclf-calibrate   calibration.calibrate_saved
    tokclf-annotate    annotate.annotate_local, or annotate.annotate_ray (--engine ray)
    tokclf-train-ddp   distributed.train_from_config, or distributed.train_ray (--ray-workers)

Registered through the `spacy_cli` entry point group (setup.cfg): spaCy's CLI
loads every `spacy_cli` entry point before it parses the command line, and
importing this module adds the commands to spaCy's typer app. Ray (the `ray`
extra) is imported only by --engine ray and --ray-workers.
"""
import logging
import sys
from pathlib import Path
from typing import Optional, cast

import typer
from spacy.cli._util import Arg, Opt, app, parse_config_overrides
from wasabi import msg

from .errors import ScaleErrors, error


@app.command("tokclf-import")
def import_cli(
    # fmt: off
    model_dir: Path = Arg(..., help="Directory of a fine-tuned Hugging Face token-classification model (config.json, weights, tokenizer)", exists=True, file_okay=False),
    output_dir: Path = Arg(..., help="Directory to write the spaCy pipeline to"),
    task: Optional[str] = Opt(None, "--task", "-t", help="'ents' (Doc.ents) or 'tag' (token.tag_); default: decided from the labels"),
    lang: str = Opt("en", "--lang", "-l", help="Language of the new blank pipeline"),
    name: str = Opt("token_classifier", "--name", "-n", help="Name of the component"),
    # fmt: on
):
    """Turn a Hugging Face token-classification model into a spaCy pipeline
    with a token_classifier that predicts as the model does. Train it further
    by sourcing it in a training config: [components.NAME] source = OUTPUT_DIR.
    """
    from .hf import from_huggingface

    try:
        nlp = from_huggingface(model_dir, lang=lang, name=name, task=task)
    except (OSError, ValueError) as err:
        msg.fail(f"Could not import '{model_dir}'", str(err), exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output_dir)
    from .pipeline import TokenClassifier

    pipe = cast(TokenClassifier, nlp.get_pipe(name))
    (task,) = pipe.tasks
    scheme = f", scheme {pipe.cfg['scheme']}" if task == "ents" else ""
    msg.good(
        f"Saved a pipeline with component '{name}' (task {task}{scheme}, "
        f"{len(pipe.labels)} labels) to {output_dir}",
        f"Load it with spacy.load('{output_dir}').",
    )


@app.command("tokclf-export")
def export_cli(
    # fmt: off
    pipeline_dir: Path = Arg(..., help="Directory of a trained spaCy pipeline with a token_classifier", exists=True, file_okay=False),
    output_dir: Path = Arg(..., help="Directory to write the Hugging Face model to"),
    component: Optional[str] = Opt(None, "--component", "-c", help="Name of the token_classifier; default: the only one"),
    task: Optional[str] = Opt(None, "--task", "-t", help="Task to export, 'ents' or 'tag'; default: 'ents' if the component has it"),
    allow_context: bool = Opt(False, "--allow-context", help="Export a component with model.tok2vec.context = 0 (each sentence read alone) anyway: the exported model reads each text whole"),
    # fmt: on
):
    """Write a trained token_classifier as a Hugging Face token-classification
    model that transformers.pipeline("token-classification", model=OUTPUT_DIR)
    loads. A checkpoint has no sentence boundaries, threshold or calibration:
    a component that reads each sentence alone (context = 0) is refused
    unless --allow-context is given; a larger context, a threshold and a
    calibration are left out with a warning that says what differs.
    """
    import spacy

    from .hf import to_huggingface

    nlp = spacy.load(pipeline_dir)
    try:
        to_huggingface(nlp, output_dir, component=component, task=task, allow_context=allow_context)
    except (OSError, ValueError) as err:
        msg.fail(f"Could not export '{pipeline_dir}'", str(err), exits=1)
    msg.good(
        f"Saved a Hugging Face token-classification model to {output_dir}",
        f"Load it with transformers.pipeline('token-classification', "
        f"model='{output_dir}', aggregation_strategy='first').",
    )


@app.command("tokclf-calibrate")
def calibrate_cli(
    # fmt: off
    pipeline_dir: Path = Arg(..., help="Directory of a trained spaCy pipeline with a token_classifier", exists=True, file_okay=False),
    dev_path: Path = Arg(..., help="Gold dev data (.spacy) to fit the calibration on; not the training data", exists=True),
    output_dir: Path = Arg(..., help="Directory to write the calibrated pipeline to"),
    component: Optional[str] = Opt(None, "--component", "-c", help="Name of the token_classifier; default: the only one"),
    method: str = Opt("auto", "--method", "-m", help="Entity score map: 'isotonic', 'platt', 'temperature' (none), or 'auto' (of the maps that can be fitted, the lowest cross-fitted entity ECE; the ECE it reports for auto is a nested cross-fitted estimate). A map the dev set cannot give (all entities right, equal scores, a flat or decreasing fit) is an error, and auto leaves it out"),
    report: Optional[Path] = Opt(None, "--report", "-r", help="Write the fitted calibration and the ECEs before and after to this JSON file"),
    # fmt: on
):
    """Calibrate a token_classifier's probabilities on a gold dev set: a
    temperature per task (token probabilities, doc._.tokclf_probs) and an
    increasing map of entity scores. Calibration never changes the decoded
    labels (the entities and tags that decoding finds). With a threshold set,
    which entities pass the threshold depends on the (calibrated) scores, so
    calibrating can change which entities are kept. The calibrated pipeline
    saves, loads and packages as usual.
    """
    from .calibration import calibrate_saved, summary_lines

    try:
        result = calibrate_saved(
            pipeline_dir, dev_path, output_dir, component=component, method=method,
            report_path=report,
        )
    except (OSError, ValueError) as err:
        msg.fail(f"Could not calibrate '{pipeline_dir}'", str(err), exits=1)
    temps = ", ".join(f"{t} {v:.3f}" for t, v in result["calibration"]["temperature"].items())
    msg.good(
        f"Saved the calibrated pipeline to {output_dir} (method {result['method']}, "
        f"temperature {temps}; fitted on {result['n_docs']} docs of {dev_path})",
        "\n".join(summary_lines(result)),
    )


@app.command("tokclf-annotate")
def annotate_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline to annotate with: a package name or a directory (with --engine ray: loadable on every node)"),
    input_path: Path = Arg(..., help="JSONL, Parquet or plain-text file (one document a line), or a directory of them", exists=True),
    output_path: Path = Arg(..., help="Output file (.jsonl, .parquet, or .spacy for a DocBin), or with --format a directory"),
    engine: str = Opt("local", "--engine", "-e", help="'local' (nlp.pipe in worker processes) or 'ray' (Ray Data; RAY_ADDRESS or a local cluster)"),
    workers: int = Opt(1, "--workers", "-w", help="Processes (local) or actors (ray)"),
    batch_size: int = Opt(64, "--batch-size", "-b", help="Rows per batch"),
    text_field: str = Opt("text", "--text-field", help="Key (JSONL) or column (Parquet) of the text"),
    id_field: str = Opt("id", "--id-field", help="Key or column of the row id; rows without one get their 0-based line number"),
    fmt: Optional[str] = Opt(None, "--format", "-f", help="jsonl, parquet or docbin; default: from the output's suffix"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU for --engine local (one worker); -1: CPU"),
    cpus_per_worker: Optional[float] = Opt(None, "--cpus-per-worker", help="CPUs (torch threads) per worker, both engines; the same for both gives the same scores to the last digit; default: cores / workers here, 1 on a running Ray cluster"),
    gpus_per_worker: Optional[float] = Opt(None, "--gpus-per-worker", help="GPUs per Ray actor; default: 1 where the cluster has GPUs, else 0"),
    resume: bool = Opt(False, "--resume", help="Continue the killed run that left OUTPUT's partial output (.OUTPUT.partial), with the same settings; without it, a partial output is replaced"),
    checkpoint_rows: int = Opt(1024, "--checkpoint-rows", help="Rows per part of the output (rounded down to whole batches): what --resume keeps of a killed run, what a Ray actor takes at a time, and the rows per file of a directory output"),
    progress: bool = Opt(True, "--progress/--no-progress", help="Show a progress bar"),
    # fmt: on
):
    """Annotate a corpus with a pipeline: one output row per input row, with
    its id, entities (start_char, end_char, label, score), tags and an
    `error` for rows that could not be annotated or written as they are. The
    output appears under its name only when every row is written; --resume
    continues a killed run. The counts (rows read, written, failed) are
    printed at the end. Both engines give the same rows for the same input.
    """
    if engine not in ("local", "ray"):
        msg.fail(error(ScaleErrors.UNKNOWN_ENGINE, engine=engine), exits=1)
    if workers < 1 or batch_size < 1 or checkpoint_rows < 1:
        msg.fail(error(ScaleErrors.WORKERS_BATCH_SIZE), exits=1)
    try:
        if engine == "ray":
            from .annotate import annotate_ray

            counts = annotate_ray(
                model, input_path, output_path, fmt=fmt, workers=workers,
                batch_size=batch_size, text_field=text_field, id_field=id_field,
                cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                resume=resume, checkpoint_rows=checkpoint_rows, progress=progress, log=msg.text,
            )
        else:
            import spacy
            from spacy.cli._util import setup_gpu

            from .annotate import annotate_local

            if gpu_id >= 0 and workers > 1:
                msg.fail(error(ScaleErrors.GPU_ONE_WORKER), exits=1)
            setup_gpu(gpu_id, silent=True)
            nlp = spacy.load(model)
            counts = annotate_local(
                nlp, input_path, output_path, fmt=fmt, n_process=workers,
                batch_size=batch_size, text_field=text_field, id_field=id_field,
                threads=int(cpus_per_worker) if cpus_per_worker else None,
                resume=resume, checkpoint_rows=checkpoint_rows, progress=progress, log=msg.text,
            )
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        msg.fail(f"Could not annotate '{input_path}'", str(err), exits=1)
    msg.good(f"Wrote {counts.resumed + counts.written.rows} rows to {output_path}")


@app.command(
    "tokclf-train-ddp",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_ddp_cli(
    # fmt: off
    ctx: typer.Context,  # extra arguments: config overrides, as for spacy train
    config_path: Path = Arg(..., help="Training config (e.g. configs/ner.cfg)", exists=True),
    output_path: Optional[Path] = Opt(None, "--output", "--output-path", "-o", help="Directory rank 0 writes model-best and model-last to"),
    code_path: Optional[Path] = Opt(None, "--code", "-c", help="Python file with registered functions to import"),
    gpu: bool = Opt(False, "--gpu", help="One GPU per process (LOCAL_RANK under torchrun) and NCCL; default: CPU and gloo"),
    ray_workers: int = Opt(0, "--ray-workers", help="Launch this many processes with Ray Train's TorchTrainer (RAY_ADDRESS or a local cluster) instead of running as a torchrun process"),
    cpus_per_worker: float = Opt(1.0, "--cpus-per-worker", help="CPUs per Ray Train worker"),
    timeout_minutes: float = Opt(60.0, "--timeout-minutes", help="How long a process waits for the others (rank 0 evaluates alone)"),
    verbose: bool = Opt(False, "--verbose", "-V", help="Debug logging"),
    # fmt: on
):
    """Data-parallel training of a spaCy config with torch.distributed: each
    process trains on its shard of every batch, gradients are summed across
    processes before each step, rank 0 evaluates and saves as `spacy train`
    does. Run it under torchrun (one machine, several GPUs or nodes):

        torchrun --standalone --nproc-per-node 2 -m spacy tokclf-train-ddp CONFIG --output DIR

    or let Ray Train start the processes: --ray-workers N. Without either,
    it trains in one process. Config overrides as for spacy train
    (--paths.train ...).
    """
    from spacy.util import logger

    if verbose:
        logger.setLevel(logging.DEBUG)
    overrides = parse_config_overrides(ctx.args)
    try:
        if ray_workers > 0:
            from .distributed import train_ray

            train_ray(
                config_path, output_path, workers=ray_workers, overrides=overrides, gpu=gpu,
                cpus_per_worker=cpus_per_worker, timeout_minutes=timeout_minutes,
                code_path=code_path,
            )
            return
        import torch.distributed as dist

        from .distributed import init_process_group, train_from_config

        rank, world_size, local_rank = init_process_group(gpu, timeout_minutes)
        try:
            train_from_config(
                config_path, output_path, overrides=overrides,
                gpu_id=local_rank if gpu else -1, code_path=code_path,
            )
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    except ImportError as err:
        msg.fail("Could not train", str(err), exits=1)
    sys.stdout.flush()
