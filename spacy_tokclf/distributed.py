"""Data-parallel training of a spaCy pipeline with torch.distributed.

N processes (launched by torchrun, or by Ray Train's TorchTrainer, see
`train_ray`) train one pipeline from the same spaCy config:

- Every process builds the same global batches (same corpus, seed and
  batcher) and reads its shard of each: the examples are split in N shards of
  about the same number of words.
- The parameters start identical: rank 0's are broadcast before the first step.
- Before each optimizer step, the gradients of the torch encoder
  (`shim._model.parameters()`) and of the thinc heads are summed across the
  processes, in buckets of about 25 MB (one all_reduce per bucket, all of them
  in flight at once). Every process then takes the same optimizer step, so the
  parameters stay identical (checked at each evaluation and at the end).
- The gradient is the gradient of the loss on the global batch: a
  token_classifier's loss is a mean over the gold tokens of each task, so each
  process scales its gradient by its share of the global batch's gold tokens
  (the counts are summed across processes first). Other trainable components'
  gradients are averaged across processes.
- Only rank 0 evaluates and writes model-best and model-last, as `spacy train`
  does (same files, same meta).

With the same config, N processes train on the same global batches as one
process would: the batch size in the config is the global batch size.
"""
import io
import os
import random
import shutil
import sys
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from timeit import default_timer as timer
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy
import torch
import torch.distributed as dist
from spacy.language import Language
from spacy.training import Example
from spacy.training.loop import (
    DIR_MODEL_BEST,
    DIR_MODEL_LAST,
    clean_output_dir,
    create_before_to_disk_callback,
    create_evaluation_callback,
    create_train_batches,
    subdivide_batch,
    update_meta,
)
from thinc.api import Optimizer, constant, fix_random_seed, set_gpu_allocator, xp2torch
from wasabi import Printer

from .pipeline import TokenClassifier, _log_softmax

BUCKET_MB = 25.0
RAY_INSTALL = 'pip install "spacy-tokclf[ray]"'


def world() -> Tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_batch(batch: Sequence[Example], rank: int, world_size: int) -> List[Example]:
    """This rank's shard of a global batch: the examples are dealt, longest
    first, to the shard with the fewest words so far, so that the shards take
    about as long; each shard keeps the batch's order.

    batch (Sequence[Example]): the global batch (the same on every rank).
    rank (int): this process's rank. world_size (int): the number of processes.
    RETURNS (List[Example]): the examples of this rank's shard.
    """
    if world_size == 1:
        return list(batch)
    loads = [0] * world_size
    owner = [0] * len(batch)
    order = sorted(range(len(batch)), key=lambda i: -len(batch[i].predicted))
    for i in order:
        shard = min(range(world_size), key=lambda r: (loads[r], r))
        owner[i] = shard
        loads[shard] += len(batch[i].predicted)
    return [eg for i, eg in enumerate(batch) if owner[i] == rank]


class _Param:
    """One parameter: a torch one (of an encoder) or a thinc one (of a head),
    seen through torch tensors that share its memory."""

    def __init__(self, torch_param: Any = None, node: Any = None, name: str = "", scale=1.0):
        self.torch_param = torch_param
        self.node = node
        self.name = name
        self.scale = scale

    def value(self) -> torch.Tensor:
        if self.torch_param is not None:
            return self.torch_param.data
        return xp2torch(self.node.get_param(self.name))

    def has_grad(self) -> bool:
        if self.torch_param is not None:
            return self.torch_param.grad is not None
        return self.node.has_grad(self.name)

    def grad(self) -> torch.Tensor:
        if self.torch_param is not None:
            if self.torch_param.grad is None:
                self.torch_param.grad = torch.zeros_like(self.torch_param.data)
            return self.torch_param.grad
        if not self.node.has_grad(self.name):
            param = self.node.get_param(self.name)
            self.node.set_grad(self.name, self.node.ops.alloc(param.shape, dtype=param.dtype))
        return xp2torch(self.node.get_grad(self.name))


class GradientSync:
    """Broadcasts, sums and compares the trainable parameters of a pipeline
    across the processes of the default process group.

    nlp (Language): the pipeline, the same config on every rank.
    exclude (Sequence[str]): components that are not trained (frozen).
    bucket_mb (float): megabytes per all_reduce call.
    """

    def __init__(self, nlp: Language, *, exclude: Sequence[str] = (), bucket_mb: float = BUCKET_MB):
        self.rank, self.world_size = world()
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.params: List[_Param] = []
        seen: Set[Any] = set()
        for name, proc in trainable_components(nlp, exclude):
            # A token_classifier's loss is weighted by its share of the global
            # batch's gold tokens (GlobalBatchLoss): its gradients are summed.
            # Others are averaged.
            scale = 1.0 if isinstance(proc, TokenClassifier) else 1.0 / self.world_size
            for node in proc.model.walk():
                for shim in node.shims:
                    module = getattr(shim, "_model", None)
                    if isinstance(module, torch.nn.Module):
                        for p in module.parameters():
                            if p.requires_grad and id(p) not in seen:
                                seen.add(id(p))
                                self.params.append(_Param(torch_param=p, scale=scale))
                for pname in node.param_names:
                    if (node.id, pname) not in seen and node.has_param(pname):
                        seen.add((node.id, pname))
                        self.params.append(_Param(node=node, name=pname, scale=scale))
        self.device = self.params[0].value().device if self.params else torch.device("cpu")
        # Values in the last gradient all-reduce (parameters that no rank
        # gave a gradient, such as an unused pooler, are left out).
        self.reduced_values = 0

    @property
    def n_values(self) -> int:
        """Number of trainable values."""
        return sum(p.value().numel() for p in self.params)

    def _buckets(self, tensors: List[torch.Tensor]) -> Iterator[List[int]]:
        bucket: List[int] = []
        size = 0
        for i, t in enumerate(tensors):
            nbytes = t.numel() * t.element_size()
            if bucket and (size + nbytes > self.bucket_bytes or t.dtype != tensors[bucket[0]].dtype):
                yield bucket
                bucket, size = [], 0
            bucket.append(i)
            size += nbytes
        if bucket:
            yield bucket

    def _collective(self, tensors: List[torch.Tensor], op: Callable, scales=None) -> None:
        """Run op on flattened buckets of tensors (all in flight), then copy back."""
        pending = []
        for bucket in self._buckets(tensors):
            parts = []
            for i in bucket:
                flat = tensors[i].reshape(-1)
                if scales is not None and scales[i] != 1.0:
                    flat = flat * scales[i]
                parts.append(flat)
            buffer = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
            pending.append((bucket, buffer, op(buffer)))
        for bucket, buffer, work in pending:
            if work is not None:
                work.wait()
            offset = 0
            for i in bucket:
                n = tensors[i].numel()
                tensors[i].copy_(buffer[offset : offset + n].view_as(tensors[i]))
                offset += n

    def broadcast_parameters(self, src: int = 0) -> None:
        """Give every rank the parameters of rank `src`."""
        if self.world_size == 1:
            return
        self._collective(
            [p.value() for p in self.params], lambda b: dist.broadcast(b, src, async_op=True)
        )

    def all_reduce_gradients(self, extra: Sequence[float] = ()) -> List[float]:
        """Sum the gradients across ranks (each scaled first: see __init__),
        in place; parameters that have a gradient on no rank keep none.

        extra (Sequence[float]): values to sum across ranks in the same call
            as the gradient mask (the step's losses).
        RETURNS (List[float]): the sums of `extra`.
        """
        if self.world_size == 1:
            active = [p for p in self.params if p.has_grad()]
            self.reduced_values = sum(p.value().numel() for p in active)
            for p in active:
                if p.scale != 1.0:
                    p.grad().mul_(p.scale)
            return list(extra)
        # Which parameters have a gradient on some rank (a rank whose shard
        # is empty has none), and the step's values, in one small call.
        small = torch.tensor(
            [float(p.has_grad()) for p in self.params] + [float(x) for x in extra],
            dtype=torch.float64,
            device=self.device,
        )
        dist.all_reduce(small)
        values = small.tolist()
        mask, sums = values[: len(self.params)], values[len(self.params) :]
        active = [p for p, m in zip(self.params, mask) if m > 0]
        self.reduced_values = sum(p.value().numel() for p in active)
        self._collective(
            [p.grad() for p in active],
            lambda b: dist.all_reduce(b, async_op=True),
            scales=[p.scale for p in active],
        )
        return sums

    def all_reduce_values(self, values: Sequence[float]) -> List[float]:
        """Sum a few numbers across ranks."""
        if self.world_size == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast_values(self, values: Sequence[float], src: int = 0) -> List[float]:
        """Rank src's numbers, on every rank."""
        if self.world_size == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.broadcast(t, src)
        return t.tolist()

    def divergence(self) -> float:
        """The largest difference, across ranks, of per-parameter checksums
        (sum and sum of squares); 0.0 when every rank holds the same values."""
        if self.world_size == 1 or not self.params:
            return 0.0
        values = [p.value().double() for p in self.params]
        sums = torch.stack([v.sum() for v in values] + [v.square().sum() for v in values])
        gathered = [torch.zeros_like(sums) for _ in range(self.world_size)]
        dist.all_gather(gathered, sums)
        return max(float((g - gathered[0]).abs().max()) for g in gathered)

    def check_in_sync(self) -> None:
        """Raise if the ranks' parameters differ."""
        diff = self.divergence()
        if diff != 0.0:
            raise RuntimeError(
                f"[spacy-tokclf] The processes' parameters differ (largest checksum "
                f"difference {diff:g}): every process must run the same config, code "
                f"and library versions. Check that all ranks read the same corpus and "
                f"encoder files."
            )


def trainable_components(nlp: Language, exclude: Sequence[str] = ()) -> List[Tuple[str, Any]]:
    """The components whose parameters training updates, as spaCy's training
    loop picks them."""
    return [
        (name, proc)
        for name, proc in nlp.pipeline
        if name not in exclude
        and getattr(proc, "is_trainable", False)
        and getattr(proc, "model", None) not in (True, False, None)
    ]


class GlobalBatchLoss:
    """A token_classifier's loss on a shard, as its part of the loss on the
    global batch: per task, the sum over the shard's gold tokens divided by the
    global batch's gold tokens (not the shard's). Installed over the
    component's get_loss while training; the gradients, summed over the ranks,
    are then those of the global batch's loss.

    get_loss computes the gradient (so missing annotation, unseen labels and
    NaN checks stay as they are); it is scaled per task by n_shard / n_global.
    """

    def __init__(self, pipe: TokenClassifier):
        self.pipe = pipe
        self.totals: Dict[str, int] = {task: 0 for task in pipe.tasks}

    def gold_counts(self, examples: Sequence[Example]) -> Dict[str, int]:
        return {
            task: int(sum((self.pipe.gold_ids(eg, task) >= 0).sum() for eg in examples))
            for task in self.pipe.tasks
        }

    def __call__(self, examples: Any, scores: List[Any]) -> Tuple[float, List[Any]]:
        pipe = self.pipe
        examples = list(examples)
        _, d_scores = type(pipe).get_loss(pipe, examples, scores)
        if not scores:
            return 0.0, d_scores
        xp = pipe.model.ops.xp
        X = xp.concatenate(scores)
        loss = 0.0
        for task, cols in pipe.layout.slices.items():
            gold = numpy.concatenate(
                [pipe.gold_ids(eg, task) for eg in examples] or [numpy.zeros((0,), "int64")]
            )
            rows = numpy.flatnonzero(gold >= 0)
            total = self.totals[task]
            if len(rows) == 0 or total == 0:
                continue
            log_probs = _log_softmax(X[:, cols], xp)
            loss -= float(log_probs[xp.asarray(rows), xp.asarray(gold[rows])].sum()) / total
            weight = len(rows) / total
            for d in d_scores:
                d[:, cols] *= weight
        return loss, d_scores


class DataParallel:
    """One data-parallel training step of a pipeline: shard the global batch,
    update on the shard, sum the gradients across ranks, step the optimizer.

    nlp (Language): the initialized pipeline (the same config on every rank).
    exclude (Sequence[str]): frozen components.
    bucket_mb (float): megabytes per all_reduce call.
    """

    def __init__(self, nlp: Language, *, exclude: Sequence[str] = (), bucket_mb: float = BUCKET_MB):
        self.nlp = nlp
        self.exclude = list(exclude)
        self.sync = GradientSync(nlp, exclude=exclude, bucket_mb=bucket_mb)
        self.rank, self.world_size = self.sync.rank, self.sync.world_size
        self.components = trainable_components(nlp, exclude)
        self.losses = {
            name: GlobalBatchLoss(proc)
            for name, proc in self.components
            if isinstance(proc, TokenClassifier)
        }
        # Seconds spent, summed over steps: forward and backward on the shard,
        # the gradient all-reduce, the optimizer.
        self.timings = {"steps": 0, "update": 0.0, "all_reduce": 0.0, "optimizer": 0.0}

    @contextmanager
    def weighted_losses(self) -> Iterator[None]:
        """Install GlobalBatchLoss over each token_classifier's get_loss."""
        procs = dict(self.components)
        for name, loss in self.losses.items():
            procs[name].get_loss = loss
        try:
            yield
        finally:
            for name in self.losses:
                procs[name].__dict__.pop("get_loss", None)

    def update(
        self,
        batch: Sequence[Example],
        *,
        drop: float,
        sgd: Optimizer,
        losses: Optional[Dict[str, float]] = None,
        accumulate_gradient: int = 1,
        annotates: Sequence[str] = (),
    ) -> Dict[str, float]:
        """Train on this rank's shard of a global batch and take one optimizer
        step with the gradient of the whole batch. Call it with the same batch
        on every rank. The optimizer's schedules are not stepped.

        batch (Sequence[Example]): the global batch.
        drop (float): the dropout rate.
        sgd (Optimizer): the optimizer.
        losses (Optional[Dict[str, float]]): the global batch's losses are added here.
        accumulate_gradient (int): sub-batches per shard, as in spacy train.
        annotates (Sequence[str]): components that set annotations on update.
        RETURNS (Dict[str, float]): the losses.
        """
        if losses is None:
            losses = {}
        start = timer()
        shard = shard_batch(batch, self.rank, self.world_size)
        counts = {name: loss.gold_counts(shard) for name, loss in self.losses.items()}
        keys = [(name, task) for name, c in counts.items() for task in c]
        totals = self.sync.all_reduce_values([counts[n][t] for n, t in keys])
        for (name, task), total in zip(keys, totals):
            self.losses[name].totals[task] = int(round(total))
        step_losses: Dict[str, float] = {}
        with self.weighted_losses():
            for sub in subdivide_batch(shard, accumulate_gradient):
                self.nlp.update(
                    sub,
                    drop=drop,
                    losses=step_losses,
                    sgd=False,  # type: ignore[arg-type]
                    exclude=self.exclude,
                    annotates=list(annotates),
                )
        names = [name for name, _ in self.components]
        # A token_classifier's shard losses add up to the global batch's loss;
        # other components' losses are averaged.
        scaled = [
            step_losses.get(name, 0.0) * (1.0 if name in self.losses else 1.0 / self.world_size)
            for name in names
        ]
        updated = timer()
        sums = self.sync.all_reduce_gradients(scaled)
        reduced = timer()
        for name, proc in self.components:
            proc.finish_update(sgd)
        for name, value in zip(names, sums):
            losses[name] = losses.get(name, 0.0) + value
        self.timings["steps"] += 1
        self.timings["update"] += updated - start
        self.timings["all_reduce"] += reduced - updated
        self.timings["optimizer"] += timer() - reduced
        return losses


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
    if seed is not None and rank > 0:
        # Dropout masks differ between ranks; the shuffling (python's random)
        # does not, so every rank builds the same global batches.
        numpy.random.seed(seed + rank)
        torch.manual_seed(seed + rank)
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
        nlp.use_params(optimizer.averages)
    if main and output_path is not None:
        stdout.write(msg.good("Saved pipeline to output directory", output_path / DIR_MODEL_LAST) + "\n")
        return nlp, output_path / DIR_MODEL_LAST
    return nlp, None


# Launchers ------------------------------------------------------------------


def init_process_group(gpu: bool, timeout_minutes: float) -> Tuple[int, int, int]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT): gloo on CPU, NCCL on GPU. Without
    WORLD_SIZE > 1, run alone. RETURNS (rank, world size, local rank)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if gpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            "nccl" if gpu else "gloo", timeout=timedelta(minutes=timeout_minutes)
        )
    rank, world_size = world()
    return rank, world_size, local_rank


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
        raise ImportError(
            f"[spacy-tokclf] Training on Ray needs Ray Train, which is not installed "
            f"({err}). Install the ray extra:\n    {RAY_INSTALL}"
        ) from err
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
