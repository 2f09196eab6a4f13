"""One data-parallel training step: each process updates on its shard of
the global batch, the gradients are summed across the processes
(gradient_sync.GradientSync), and every process takes the same optimizer step.

The summed gradient is the one spaCy's training loop computes on the global
batch: with `accumulate_gradient = k`, spaCy updates on each of the batch's
sub-batches (`subdivide_batch`) and steps once, so the gradient is the SUM of
the sub-batches' gradients. Here each sub-batch is sharded across the
processes. A token_classifier's loss is a mean over the gold tokens of each
task, so each process scales its gradient by its share of the sub-batch's gold
tokens (GlobalBatchLoss; the counts are summed across processes first), and
the sum over the processes is the gradient of the sub-batch's loss. The losses
of spaCy's own trainable components are sums over the examples (their
gradients are not divided by the batch size), so their gradients, and an
upstream tok2vec's or transformer's behind listeners, are summed as they are.
"""
from contextlib import contextmanager
from timeit import default_timer as timer
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.training import Example
from spacy.training.loop import subdivide_batch
from thinc.api import Optimizer

from ..decoding import log_softmax
from ..pipeline import TokenClassifier
from .gradient_sync import BUCKET_MB, GradientSync, shard_batch, trainable_components


class GlobalBatchLoss:
    """A token_classifier's loss on a shard, as its part of the loss on the
    sub-batch that the shard is cut from: per task, the sum over the shard's
    gold tokens divided by the sub-batch's gold tokens (not the shard's).
    Installed over the component's get_loss while training; the gradients,
    summed over the ranks, are then those of the sub-batch's loss, which is
    what one process's nlp.update on the sub-batch computes.

    get_loss computes the gradient (so missing annotation, unseen labels and
    NaN checks stay as they are); it is scaled per task by n_shard / n_sub_batch.
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
    """One data-parallel training step of a pipeline: cut the global batch
    into spaCy's sub-batches, shard each, update on the shards, sum the
    gradients across ranks, step the optimizer.

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

    def sub_batches(
        self, batch: Sequence[Example], accumulate_gradient: int
    ) -> List[Tuple[List[Example], Dict[str, Dict[str, int]]]]:
        """spacy train's sub-batches of a global batch (its own
        `subdivide_batch`), each as this rank's shard and, per token_classifier
        and task, the sub-batch's gold tokens (summed across ranks, all in one
        all-reduce).

        batch (Sequence[Example]): the global batch.
        accumulate_gradient (int): as in spacy train.
        RETURNS (List[Tuple[List[Example], Dict[str, Dict[str, int]]]]): per
            sub-batch, the shard (empty where the sub-batch is smaller than the
            world) and the gold token totals.
        """
        shards = [
            shard_batch(sub, self.rank, self.world_size)
            for sub in subdivide_batch(batch, accumulate_gradient)
        ]
        counts = [
            (i, name, task, n)
            for i, shard in enumerate(shards)
            for name, loss in self.losses.items()
            for task, n in loss.gold_counts(shard).items()
        ]
        sums = self.sync.all_reduce_values([n for *_, n in counts])
        totals: List[Dict[str, Dict[str, int]]] = [{name: {} for name in self.losses} for _ in shards]
        for (i, name, task, _), total in zip(counts, sums):
            totals[i][name][task] = int(round(total))
        return list(zip(shards, totals))

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
        """Train on this rank's shards of a global batch and take one
        optimizer step with the gradient spacy train computes on the whole
        batch: with accumulate_gradient = k, the SUM of the gradients of the
        sub-batches that spaCy's `subdivide_batch` cuts (each sub-batch's loss
        is its own mean, as with one nlp.update per sub-batch). Call it with
        the same batch on every rank. The optimizer's schedules are not stepped.

        batch (Sequence[Example]): the global batch.
        drop (float): the dropout rate.
        sgd (Optimizer): the optimizer.
        losses (Optional[Dict[str, float]]): the step's losses are added here,
            summed over the sub-batches as spacy train does.
        accumulate_gradient (int): sub-batches per global batch, as in spacy train.
        annotates (Sequence[str]): components that set annotations on update.
        RETURNS (Dict[str, float]): the losses.
        """
        if losses is None:
            losses = {}
        start = timer()
        step_losses: Dict[str, float] = {}
        with self.weighted_losses():
            for shard, totals in self.sub_batches(batch, accumulate_gradient):
                if not shard:  # a sub-batch smaller than the world
                    continue
                for name, loss in self.losses.items():
                    loss.totals = totals[name]
                self.nlp.update(
                    shard,
                    drop=drop,
                    losses=step_losses,
                    sgd=False,  # type: ignore[arg-type]
                    exclude=self.exclude,
                    annotates=list(annotates),
                )
        names = [name for name, _ in self.components]
        updated = timer()
        # The shards' losses add up to the sub-batches' losses, as the gradients do.
        sums = self.sync.all_reduce_gradients([step_losses.get(name, 0.0) for name in names])
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
