"""Data-parallel training (spacy_tokclf.distributed: train, data_parallel,
gradient_sync) on CPU with gloo.

Two processes train on shards of the same global batches; after each step
both must hold the same weights, equal to those of one process training on
the whole batches with plain nlp.update. The encoder's own dropout is set to
0 (and `drop=0`), since dropout masks differ between processes by design.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_tokclf.distributed.data_parallel import DataParallel
from spacy_tokclf.distributed.gradient_sync import GradientSync, shard_batch

from .util import TRAIN_DATA, make_nlp

PROJECT = Path(__file__).resolve().parent.parent
STEPS = 4
# Global batches of unequal shards: different lengths, and examples without
# tags or without entities, so that the ranks' gold token counts differ per
# task and a plain average of the ranks' gradients would be wrong.
EXTRA_DATA = [
    ("The quick brown fox jumps over the lazy dog.", {"entities": []}),
    ("I don't like it, do you?", {"tags": ["PRP", "VBP", "RB", "VB", "PRP", ",", "VBP", "PRP", "."]}),
    (
        "Angela Merkel visited Apple Inc. in New York.",
        {
            "entities": [(0, 13, "PER"), (22, 32, "ORG"), (36, 44, "LOC")],
            "tags": ["NNP", "NNP", "VBD", "NNP", "NNP", "IN", "NNP", "NNP", "."],
        },
    ),
    ("Paris.", {"entities": [(0, 5, "LOC")], "tags": ["NNP", "."]}),
]
BATCHES = [[0, 1, 3, 5, 6], [2, 4, 5], [0, 2, 3, 4, 6], [1, 6, 5]]


@pytest.fixture(scope="module")
def still_encoder(encoders, tmp_path_factory) -> Path:
    """The tiny WordPiece encoder without dropout."""
    path = tmp_path_factory.mktemp("still") / "encoder"
    shutil.copytree(encoders["wordpiece"], path)
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _setup(encoder: Path, seed: int):
    spacy.util.fix_random_seed(seed)
    nlp = make_nlp(encoder, tasks=["ents", "tag"])
    examples = [
        Example.from_dict(nlp.make_doc(text), annots) for text, annots in TRAIN_DATA + EXTRA_DATA
    ]
    optimizer = nlp.initialize(lambda: examples)
    return nlp, optimizer, [[examples[i] for i in batch] for batch in BATCHES]


def _params(nlp) -> list:
    return [p.value().numpy().copy() for p in GradientSync(nlp).params]


def _worker(rank: int, world_size: int, init_file: str, encoder: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        for variant in ("weighted", "mean"):
            if variant == "mean":
                _plain_mean_of_ranks()
            # Rank 1 starts from other random head weights: the broadcast
            # from rank 0 must replace them.
            nlp, optimizer, batches = _setup(Path(encoder), seed=rank)
            parallel = DataParallel(nlp)
            parallel.sync.broadcast_parameters()
            losses = []
            for batch in batches[:STEPS]:
                step = parallel.update(batch, drop=0.0, sgd=optimizer)
                optimizer.step_schedules()
                losses.append(step["token_classifier"])
            numpy.savez(Path(out_dir) / f"{variant}{rank}.npz", *_params(nlp))
            (Path(out_dir) / f"{variant}{rank}.json").write_text(json.dumps(losses))
    finally:
        dist.destroy_process_group()


def _plain_mean_of_ranks() -> None:
    """What DistributedDataParallel does: average the ranks' gradients, each
    the gradient of its own shard's mean loss (in this worker process only)."""
    from spacy_tokclf.distributed.data_parallel import GlobalBatchLoss

    def plain_loss(self, examples, scores):
        return type(self.pipe).get_loss(self.pipe, list(examples), scores)

    GlobalBatchLoss.__call__ = plain_loss
    all_reduce = GradientSync.all_reduce_gradients

    def averaging_all_reduce(self, extra=()):
        sums = all_reduce(self, extra)
        for p in self.params:
            if p.has_grad():
                p.grad().div_(self.world_size)
        return sums

    GradientSync.all_reduce_gradients = averaging_all_reduce


def _load(path: Path) -> list:
    with numpy.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_shards_partition_the_batch_by_words():
    nlp = spacy.blank("en")
    texts = ["a " * n for n in (9, 1, 5, 4, 3, 8)]
    batch = [Example.from_dict(nlp.make_doc(t), {}) for t in texts]
    shards = [shard_batch(batch, r, 2) for r in range(2)]
    assert sorted(id(eg) for s in shards for eg in s) == sorted(id(eg) for eg in batch)
    words = [sum(len(eg) for eg in s) for s in shards]
    # Longest first to the lighter shard: 9+4+3 and 8+5+1 words (a split
    # in the middle would give 18 and 12).
    assert words == [16, 14]
    assert shard_batch(batch, 0, 1) == batch
    # A batch smaller than the world leaves a shard empty.
    assert [len(shard_batch(batch[:1], r, 2)) for r in range(2)] == [1, 0]


def test_two_processes_match_one_process_on_global_batches(still_encoder, tmp_path):
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker, args=(r, 2, str(tmp_path / "pg"), str(still_encoder), str(tmp_path))
        )
        for r in range(2)
    ]
    for p in procs:
        p.start()
    # The reference, meanwhile: one process, plain nlp.update on whole batches.
    nlp, optimizer, batches = _setup(still_encoder, seed=0)
    initial = _params(nlp)
    ref_losses = []
    for batch in batches[:STEPS]:
        losses = {}
        nlp.update(batch, drop=0.0, sgd=optimizer, losses=losses)
        optimizer.step_schedules()
        ref_losses.append(losses["token_classifier"])
    reference = _params(nlp)
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    rank0, rank1 = _load(tmp_path / "weighted0.npz"), _load(tmp_path / "weighted1.npz")
    assert len(rank0) == len(reference) > 2  # encoder tensors and the head's W, b
    # Every rank holds the same weights, to the bit.
    for a, b in zip(rank0, rank1):
        assert numpy.array_equal(a, b)
    # The same as one process on the global batches, up to float summation order.
    for a, ref, init in zip(rank0, reference, initial):
        assert a.shape == ref.shape
        numpy.testing.assert_allclose(a, ref, rtol=0, atol=2e-6)
    moved = max(float(numpy.abs(ref - init).max()) for ref, init in zip(reference, initial))
    assert moved > 1e-3  # the steps changed the weights a lot more than the tolerance
    losses = json.loads((tmp_path / "weighted0.json").read_text())
    assert losses == json.loads((tmp_path / "weighted1.json").read_text())
    numpy.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    # The weighting by gold tokens is what makes it exact: a plain mean of the
    # ranks' gradients (DistributedDataParallel's) misses by far more.
    mean = _load(tmp_path / "mean0.npz")
    off = max(float(numpy.abs(a - ref).max()) for a, ref in zip(mean, reference))
    assert off > 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_cli_trains_and_saves_on_rank_0(still_encoder, tmp_path):
    """`torchrun ... -m spacy tokclf-train-ddp configs/ner.cfg`: rank 0 writes
    model-best and model-last as spacy train does; the run fails if the
    ranks' weights ever differ (checked at each evaluation and at the end)."""
    nlp = spacy.blank("en")
    docs = []
    for text, annots in TRAIN_DATA + EXTRA_DATA:
        doc = Example.from_dict(nlp.make_doc(text), annots).reference
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "spacy", "tokclf-train-ddp", str(PROJECT / "configs" / "ner.cfg"),
        "--output", str(out),
        "--paths.train", str(tmp_path / "train.spacy"),
        "--paths.dev", str(tmp_path / "train.spacy"),
        "--paths.encoder", str(still_encoder),
        "--training.max_epochs", "0", "--training.max_steps", "3",
        "--training.eval_frequency", "2",
        "--training.batcher.size", "20",
        "--training.optimizer.learn_rate.warmup_steps", "1",
        "--training.optimizer.learn_rate.total_steps", "4",
        "--training.logger.progress_bar", "null",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Data-parallel: 2 process(es)" in result.stdout
    assert result.stdout.count("Saved pipeline to output directory") == 1  # rank 0 only
    for name in ("model-best", "model-last"):
        loaded = spacy.load(out / name)
        assert loaded.pipe_names == ["sentencizer", "token_classifier"]  # as configs/ner.cfg ships
        assert "ents_f" in loaded.meta["performance"]
        loaded("Angela Merkel visited Paris.")
    assert sorted(p.name for p in out.iterdir()) == ["model-best", "model-last"]


def test_alone_with_use_averages_returns_and_saves_the_averages(still_encoder, tmp_path):
    """Without a process group, with `use_averages = true`: the returned
    pipeline holds the averaged weights, the same as model-last on disk."""
    from spacy.training.initialize import init_nlp

    from spacy_tokclf.distributed import train_distributed

    blank = spacy.blank("en")
    docs = [Example.from_dict(blank.make_doc(t), a).reference for t, a in TRAIN_DATA + EXTRA_DATA]
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    overrides = {
        "paths.train": str(tmp_path / "train.spacy"),
        "paths.dev": str(tmp_path / "train.spacy"),
        "paths.encoder": str(still_encoder),
        "training.max_epochs": 0,
        "training.max_steps": 4,
        "training.eval_frequency": 2,
        "training.batcher.size": 20,
        "training.optimizer.use_averages": True,
        "training.optimizer.learn_rate.warmup_steps": 1,
        "training.optimizer.learn_rate.total_steps": 4,
        "training.logger.progress_bar": None,
    }
    config = spacy.util.load_config(PROJECT / "configs" / "ner.cfg", overrides=overrides, interpolate=False)
    nlp = init_nlp(config)
    start = _encoder_weights(nlp)
    (tmp_path / "out").mkdir()
    trained, last = train_distributed(nlp, tmp_path / "out")
    returned = _encoder_weights(trained)
    saved = _encoder_weights(spacy.load(last))
    assert returned.keys() == saved.keys() == start.keys()
    moved = max(float(numpy.abs(returned[k] - start[k]).max()) for k in start)
    assert moved > 1e-4
    for name in saved:
        numpy.testing.assert_array_equal(returned[name], saved[name])


def _encoder_weights(nlp) -> dict:
    pipe = nlp.get_pipe("token_classifier")
    shim = next(shim for node in pipe.model.walk() for shim in node.shims)
    return {n: p.detach().numpy().copy() for n, p in shim.piece_encoder.named_parameters()}
