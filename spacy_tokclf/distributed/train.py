"""Data-parallel training of a spaCy pipeline with torch.distributed.

N processes (launched by torchrun, or by Ray Train's TorchTrainer, see
`train_ray`) train one pipeline from the same spaCy config:

- Every process builds the same global batches (same corpus, seed and
  batcher) and reads its shard of each: the examples are split in N shards of
  about the same number of words.
- The parameters start identical: rank 0's are broadcast before the first step.
- Before each optimizer step, the gradients of the torch encoders and of the
  thinc heads are summed across the processes (gradient_sync.py). Every
  process then takes the same optimizer step (data_parallel.py), so the
  parameters stay identical (checked at each evaluation and at the end).
- The gradient is the one `spacy train` computes on the global batch: the
  sum of the gradients of its sub-batches (`accumulate_gradient`; one
  sub-batch by default), each sharded across the processes. A
  token_classifier's loss is a mean over the gold tokens of each task, so each
  process scales its gradient by its share of the sub-batch's gold tokens (the
  counts are summed across processes first). spaCy's own components' losses
  are sums over the examples, and an upstream tok2vec or transformer gets its
  gradient from its listeners: every gradient is summed, none averaged.
- Dropout masks differ between the ranks (seeded with seed + rank on every
  device); the shuffling does not.
- Only rank 0 evaluates and writes model-best and model-last, as `spacy train`
  does (same files, same meta).

This module is the training loop (`train_distributed`, spaCy's loop made
data-parallel) and its launchers: `train_from_config` (each torchrun process,
or Ray Train worker, calls it) and `train_ray` (Ray Train starts the processes).

With the same config, N processes train on the same global batches as one
process would: the batch size in the config is the global batch size.
"""
import io
import os
import random
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from timeit import default_timer as timer
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.training.loop import (
    DIR_MODEL_BEST,
    DIR_MODEL_LAST,
    clean_output_dir,
    create_before_to_disk_callback,
    create_evaluation_callback,
    create_train_batches,
    update_meta,
)
from thinc.api import constant, fix_random_seed, set_gpu_allocator
from wasabi import Printer

from ..errors import ScaleErrors, error
from .data_parallel import DataParallel
from .gradient_sync import BUCKET_MB, init_process_group, seed_ranks, world

# init_process_group and world are imported from here by launch scripts.
__all__ = ["init_process_group", "train_distributed", "train_from_config", "train_ray", "world"]

def train_distributed(
    nlp: Language,
    output_path: Optional[Path] = None,
    *,
    use_gpu: int = -1,
    stdout: IO = sys.stdout,
    stderr: IO = sys.stderr,
    bucket_mb: float = BUCKET_MB,
    timings: Optional[Dict[str, Any]] = None,
) -> Tuple[Language, Optional[Path]]:
    """Train an initialized pipeline on this process's share of the data, as
    one of the processes of the default process group (or alone, without
    one). `spacy.training.loop.train`, data-parallel: the same settings from
    [training], the same logger, and on rank 0 the same model-best and
    model-last.

    nlp (Language): the pipeline from init_nlp(config), on every rank.
    output_path (Optional[Path]): where rank 0 writes model-best and model-last.
    use_gpu (int): this process's GPU id, or -1.
    stdout (IO), stderr (IO): where rank 0 logs (other ranks are silent).
    bucket_mb (float): megabytes per all_reduce call.
    timings (Optional[Dict[str, Any]]): filled with this rank's seconds per
        part of the steps (DataParallel.timings), the world size and the
        number of values summed per step.
    RETURNS (Tuple[Language, Optional[Path]]): the pipeline and, on rank 0,
        the path of model-last.
    """
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import registry, resolve_dot_names

    rank, world_size = world()
    main = rank == 0
    if not main:
        stdout = stderr = io.StringIO()
    msg = Printer(no_print=True)
    config = nlp.config.interpolate()
    seed = config["training"]["seed"]
    if seed is not None:
        fix_random_seed(seed)
    allocator = config["training"]["gpu_allocator"]
    if use_gpu >= 0 and allocator:
        set_gpu_allocator(allocator)
    T = registry.resolve(config["training"], schema=ConfigSchemaTraining)
    train_corpus, dev_corpus = resolve_dot_names(config, [T["train_corpus"], T["dev_corpus"]])
    optimizer = T["optimizer"]
    before_to_disk = create_before_to_disk_callback(T["before_to_disk"])
    before_update = T["before_update"]
    frozen = T["frozen_components"]
    parallel = DataParallel(nlp, exclude=frozen, bucket_mb=bucket_mb)
    parallel.sync.broadcast_parameters()
    seed_ranks(seed, parallel.sync)
    evaluate = create_evaluation_callback(nlp, dev_corpus, T["score_weights"])
    batches = create_train_batches(nlp, train_corpus, T["batcher"], T["max_epochs"])
    # As spaCy's loop: a float, or a schedule to call next() on.
    dropouts: Any = constant(T["dropout"]) if isinstance(T["dropout"], float) else T["dropout"]

    def save_checkpoint(is_best: bool) -> None:
        if not main or output_path is None:
            return
        with nlp.use_params(optimizer.averages):
            before_to_disk(nlp).to_disk(output_path / DIR_MODEL_LAST)
        if is_best:
            if (output_path / DIR_MODEL_BEST).exists():
                shutil.rmtree(output_path / DIR_MODEL_BEST)
            shutil.copytree(output_path / DIR_MODEL_LAST, output_path / DIR_MODEL_BEST)

    if main:
        clean_output_dir(output_path)
        stdout.write(msg.info(f"Pipeline: {nlp.pipe_names}") + "\n")
        stdout.write(
            msg.info(
                f"Data-parallel: {world_size} process(es), "
                f"{parallel.sync.n_values:,} trainable values"
            )
            + "\n"
        )
        stdout.write(msg.info(f"Initial learn rate: {optimizer.learn_rate}") + "\n")
        with nlp.select_pipes(disable=frozen):
            log_step, finalize_logger = T["logger"](nlp, stdout, stderr)
    results: List[Tuple[float, int]] = []
    losses: Dict[str, float] = {}
    words_seen = 0
    start_time = timer()
    try:
        for step, (epoch, batch) in enumerate(batches):
            if before_update:
                before_update(nlp, {"step": step, "epoch": epoch})
            parallel.update(
                batch,
                drop=next(dropouts),
                sgd=optimizer,
                losses=losses,
                accumulate_gradient=T["accumulate_gradient"],
                annotates=T["annotating_components"],
            )
            optimizer.step_schedules()
            words_seen += sum(len(eg) for eg in batch)
            is_best: Optional[bool] = None
            score, other_scores = None, None
            if not (step % T["eval_frequency"]):
                parallel.sync.check_in_sync()
                if main:
                    # Evaluation runs on rank 0 only: it must not move python's
                    # random state, which builds the same batches on every rank.
                    state = random.getstate()
                    if optimizer.averages:
                        with nlp.use_params(optimizer.averages):
                            score, other_scores = evaluate()
                    else:
                        score, other_scores = evaluate()
                    random.setstate(state)
                (score,) = parallel.sync.broadcast_values([score if score is not None else 0.0])
                results.append((score, step))
                is_best = score == max(results)[0]
            if main:
                info = {
                    "epoch": epoch,
                    "step": step,
                    "score": score,
                    "other_scores": other_scores,
                    "losses": losses,
                    "checkpoints": results,
                    "seconds": int(timer() - start_time),
                    "words": words_seen,
                }
                if is_best is not None:
                    with nlp.select_pipes(disable=frozen):
                        update_meta(T, nlp, info)
                    save_checkpoint(is_best)
                    if output_path is not None:
                        info["output_path"] = str(output_path / DIR_MODEL_LAST)
                log_step(info if is_best is not None else None)
            if is_best is not None:
                losses = {}
            # As spaCy: the earliest step with the best score.
            best_step = -max((s, -st) for s, st in results)[1] if results else 0
            if T["patience"] and (step - best_step) >= T["patience"]:
                break
            if T["max_steps"] and step >= T["max_steps"]:
                break
    except Exception as err:
        if main and output_path is not None:
            stdout.write(
                msg.warn(f"Aborting and saving the final best model. Encountered exception: {err!r}")
                + "\n"
            )
        raise
    finally:
        if main:
            finalize_logger()
            save_checkpoint(False)
    parallel.sync.check_in_sync()
    steps = max(1, parallel.timings["steps"])
    if timings is not None:
        timings.update(
            parallel.timings, world_size=world_size, values=parallel.sync.reduced_values
        )
    if main:
        part = {k: 1000 * v / steps for k, v in parallel.timings.items() if k != "steps"}
        stdout.write(
            msg.info(
                f"Per step on rank 0 (ms): {part['update']:.0f} forward and backward on "
                f"the shard, {part['all_reduce']:.0f} gradient all-reduce "
                f"({parallel.sync.reduced_values:,} values, "
                f"{4 * parallel.sync.reduced_values / 1e6:.1f} MB in fp32), "
                f"{part['optimizer']:.0f} optimizer"
            )
            + "\n"
        )
    if optimizer.averages:
        # The returned pipeline keeps the averaged weights, as model-last on
        # disk does. (spaCy's loop calls `nlp.use_params(...)` here without
        # `with`, which changes nothing: it is a context manager.)
        with nlp.use_params(optimizer.averages):
            averaged = nlp.to_bytes()
        nlp.from_bytes(averaged)
    if main and output_path is not None:
        stdout.write(msg.good("Saved pipeline to output directory", output_path / DIR_MODEL_LAST) + "\n")
        return nlp, output_path / DIR_MODEL_LAST
    return nlp, None


# Launchers ------------------------------------------------------------------


def train_from_config(
    config_path: Path,
    output_path: Optional[Path],
    *,
    overrides: Optional[Dict[str, Any]] = None,
    gpu_id: int = -1,
    code_path: Optional[Path] = None,
    timings: Optional[Dict[str, Any]] = None,
) -> Optional[Path]:
    """Initialize the pipeline of a training config and train it with
    `train_distributed`, in the current process group (each rank calls it)."""
    from spacy import util
    from spacy.cli._util import import_code, setup_gpu
    from spacy.training.initialize import init_nlp

    import_code(code_path)
    rank, _ = world()
    setup_gpu(gpu_id, silent=rank > 0)
    config = util.load_config(config_path, overrides=overrides or {}, interpolate=False)
    if rank > 0:
        with _quiet():
            nlp = init_nlp(config, use_gpu=gpu_id)
    else:
        nlp = init_nlp(config, use_gpu=gpu_id)
    if output_path is not None:
        output_path = Path(output_path)
        if rank == 0:
            output_path.mkdir(parents=True, exist_ok=True)
    _, last = train_distributed(nlp, output_path, use_gpu=gpu_id, timings=timings)
    return last


@contextmanager
def _quiet() -> Iterator[None]:
    import logging

    from spacy.util import logger

    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def require_ray_train() -> Any:
    """Import ray with Ray Train, or raise an error that names the extra."""
    try:
        import ray
        import ray.train.torch  # noqa: F401
    except ImportError as err:
        raise ImportError(error(ScaleErrors.NO_RAY_TRAIN, error=err)) from err
    return ray


def _ray_train_loop(settings: Dict[str, Any]) -> None:
    """Ray Train's train_loop_per_worker: the process group is set up."""
    import ray.train.torch

    os.chdir(settings["cwd"])
    device = ray.train.torch.get_device()
    gpu_id = device.index if device.type == "cuda" and device.index is not None else -1
    if device.type == "cuda" and gpu_id < 0:
        gpu_id = 0
    train_from_config(
        Path(settings["config_path"]),
        Path(settings["output_path"]) if settings["output_path"] else None,
        overrides=settings["overrides"],
        gpu_id=gpu_id,
        code_path=Path(settings["code_path"]) if settings["code_path"] else None,
    )


def train_ray(
    config_path: Path,
    output_path: Optional[Path],
    *,
    workers: int,
    overrides: Optional[Dict[str, Any]] = None,
    gpu: bool = False,
    cpus_per_worker: float = 1.0,
    timeout_minutes: float = 60.0,
    code_path: Optional[Path] = None,
) -> None:
    """Train with Ray Train's TorchTrainer: `workers` processes (one GPU
    each with gpu=True), gloo on CPU, NCCL on GPU. Connects to the cluster of
    RAY_ADDRESS, or starts a local one with workers x cpus_per_worker CPUs.

    The config, the corpora, the encoder and output_path must be at the same
    paths on every node (a shared filesystem); relative paths are taken from
    the current directory. Rank 0 writes model-best and model-last.
    """
    ray = require_ray_train()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    started = not ray.is_initialized()
    if started:
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=max(1, int(round(workers * cpus_per_worker))), include_dashboard=False)
    try:
        trainer = TorchTrainer(
            _ray_train_loop,
            train_loop_config={
                "cwd": os.getcwd(),
                "config_path": str(Path(config_path).resolve()),
                "output_path": str(Path(output_path).resolve()) if output_path else None,
                "overrides": dict(overrides or {}),
                "code_path": str(Path(code_path).resolve()) if code_path else None,
            },
            torch_config=TorchConfig(
                backend="nccl" if gpu else "gloo", timeout_s=int(timeout_minutes * 60)
            ),
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=gpu, resources_per_worker={"CPU": cpus_per_worker}
            ),
            run_config=RunConfig(name="tokclf-train-ddp"),
        )
        trainer.fit()
    finally:
        if started:
            ray.shutdown()
