"""Process group and gradient sync of data-parallel training.

- `world()` and `init_process_group()`: this process's rank in the default
  torch.distributed process group (gloo on CPU, NCCL on GPU).
- `shard_batch()`: this rank's part of a global batch.
- `GradientSync`: the trainable parameters of a pipeline (the torch encoders'
  and the thinc heads'), seen through torch tensors that share their memory:
  rank 0's are broadcast before the first step; before each optimizer step
  the gradients are summed across the processes, in buckets of about 25 MB
  (one all_reduce per bucket, all of them in flight at once); and a checksum
  comparison tells whether every process holds the same values.
- `seed_ranks()`: each rank's own dropout masks, the same global batches.

Every gradient is summed, none averaged: each rank's gradient is its part of
the gradient of the global batch (data_parallel.py weights a
token_classifier's loss so; spaCy's own components' losses are sums over the
examples). An upstream component behind listeners (spaCy's tok2vec,
spacy-transformers' transformer) gets its gradient from its listeners' losses,
so it is summed the same way as theirs.
"""
import os
import random
from datetime import timedelta
from typing import Any, Callable, Iterator, List, Optional, Sequence, Set, Tuple

import torch
import torch.distributed as dist
from spacy.language import Language
from spacy.training import Example
from thinc.api import PyTorchShim, fix_random_seed, xp2torch

from ..errors import ScaleErrors, error
from ..layers import HFEncoderShim

BUCKET_MB = 25.0


def world() -> Tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


def torch_module(shim: Any) -> Optional[torch.nn.Module]:
    """The torch module whose parameters a thinc shim trains, or None.

    HFEncoderShim (this package's encoder) says so publicly: `.piece_encoder`.
    Any other PyTorchShim (thinc's own, or spacy-transformers' HFShim, a
    subclass, behind a listener's transformer) keeps it in thinc's `Shim._model`:
    thinc 8.3 has no public accessor for it, and `PyTorchShim.finish_update`
    steps exactly `_model.named_parameters()`, so reading that attribute (here
    and nowhere else) sums the very parameters the optimizer updates. Shims of
    other frameworks (TensorFlow, MXNet) hold no torch parameters.
    """
    if isinstance(shim, HFEncoderShim):
        return shim.piece_encoder
    if isinstance(shim, PyTorchShim):
        module = shim._model
        return module if isinstance(module, torch.nn.Module) else None
    return None


class _Param:
    """One parameter: a torch one (of an encoder) or a thinc one (of a head),
    seen through torch tensors that share its memory."""

    def __init__(self, torch_param: Any = None, node: Any = None, name: str = ""):
        self.torch_param = torch_param
        self.node = node
        self.name = name

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
            for node in proc.model.walk():
                for shim in node.shims:
                    module = torch_module(shim)
                    if module is not None:
                        for p in module.parameters():
                            if p.requires_grad and id(p) not in seen:
                                seen.add(id(p))
                                self.params.append(_Param(torch_param=p))
                for pname in node.param_names:
                    if (node.id, pname) not in seen and node.has_param(pname):
                        seen.add((node.id, pname))
                        self.params.append(_Param(node=node, name=pname))
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

    def _collective(self, tensors: List[torch.Tensor], op: Callable) -> None:
        """Run op on flattened buckets of tensors (all in flight), then copy back."""
        pending = []
        for bucket in self._buckets(tensors):
            parts = [tensors[i].reshape(-1) for i in bucket]
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
        """Sum the gradients across ranks, in place; parameters that have a
        gradient on no rank keep none.

        extra (Sequence[float]): values to sum across ranks in the same call
            as the gradient mask (the step's losses).
        RETURNS (List[float]): the sums of `extra`.
        """
        if self.world_size == 1:
            active = [p for p in self.params if p.has_grad()]
            self.reduced_values = sum(p.value().numel() for p in active)
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
        self._collective([p.grad() for p in active], lambda b: dist.all_reduce(b, async_op=True))
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
            raise RuntimeError(error(ScaleErrors.RANKS_DIFFER, diff=diff))


def seed_ranks(seed: Optional[int], sync: GradientSync) -> None:
    """Seed this rank's dropout, on any device, after the parameters are
    broadcast: every generator that thinc's fix_random_seed seeds (numpy's,
    torch's on the CPU and on every GPU, cupy's, which thinc's dropout draws
    from on a GPU) gets seed + rank, all but python's random, which shuffles
    the training data and must build the same global batches on every rank.
    Rank 0 keeps the state that spacy train would have. Without a seed, every
    rank seeds python's random with rank 0's draw.

    seed (Optional[int]): [training] seed, the same on every rank.
    sync (GradientSync): the process group's parameters (for the broadcast).
    """
    if seed is None:
        (shared,) = sync.broadcast_values([random.randrange(2**31)])
        random.seed(int(shared))
    elif sync.rank > 0:
        state = random.getstate()
        fix_random_seed(seed + sync.rank)
        random.setstate(state)


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
