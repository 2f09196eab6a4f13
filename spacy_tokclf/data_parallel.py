"""One data-parallel training step: each process updates on its shard of
the global batch, the gradients are summed across the processes
(gradient_sync.GradientSync), and every process takes the same optimizer step.

The gradient is the gradient of the loss on the global batch: a
token_classifier's loss is a mean over the gold tokens of each task, so each
process scales its gradient by its share of the global batch's gold tokens
(GlobalBatchLoss; the counts are summed across processes first). Other
trainable components' gradients are averaged across processes.
"""
from contextlib import contextmanager
from timeit import default_timer as timer
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.training.loop import subdivide_batch
from thinc.api import Optimizer

from .decoding import log_softmax
from .gradient_sync import BUCKET_MB, GradientSync, shard_batch, trainable_components
from .pipeline import TokenClassifier


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
            log_probs = log_softmax(X[:, cols], xp)
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
