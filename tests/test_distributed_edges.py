"""Data-parallel training at its edges (issue 26, finding 10), on CPU with gloo:

- `accumulate_gradient = k`: the gradient is the SUM of the gradients of
  spaCy's sub-batches, as in `spacy train` (spacy/training/loop.py
  train_while_improving: one nlp.update per sub-batch, one finish_update).
- An upstream component behind listeners gets its full gradient, weighted as
  its listeners' own parameters are: spaCy's `tok2vec` here (no extra needed),
  a spacy-transformers `transformer` on the listener stack.
- Each rank draws its own dropout masks, on every device's generator, while the
  initial weights and the global batches are the same on every rank.
"""
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy
import spacy
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.training.loop import train_while_improving
from thinc.api import SGD

from spacy_tokclf.distributed.data_parallel import DataParallel
from spacy_tokclf.distributed.gradient_sync import GradientSync

from .test_distributed import (  # noqa: F401  (still_encoder is a fixture)
    BATCHES,
    EXTRA_DATA,
    PROJECT,
    _load,
    _params,
    _setup,
    still_encoder,
)
from .util import LISTENER_TOK2VEC, TRAIN_DATA, needs_listener

ACCUMULATE = (2, 3)
WORLD = 2
# spaCy's default Adam, and plain SGD, whose step is proportional to the
# gradient (Adam's first steps are nearly blind to its scale: a gradient
# half as large would move them almost as far).
OPTIMIZERS = ("adam", "sgd")


def _optimizer(name: str, default):
    return default if name == "adam" else SGD(0.02, L2=0.0, grad_clip=0.0, use_averages=False)


def _spawn(target, *args) -> None:
    """Run target(rank, WORLD, init_file, *args) in WORLD processes; they must exit 0."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, WORLD, *args)) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0


def _join(rank: int, world_size: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )


def _spacy_train(nlp, optimizer, batches, accumulate_gradient: int) -> list:
    """spaCy's own loop on the batches, without dropout: the reference. RETURNS
    the losses of each step."""
    steps = train_while_improving(
        nlp,
        optimizer,
        ((0, batch) for batch in batches),
        lambda: (0.0, {}),  # evaluated every step, so `losses` is each step's own
        dropout=0.0,
        eval_frequency=1,
        accumulate_gradient=accumulate_gradient,
        patience=0,
        max_steps=0,
        exclude=[],
        annotating_components=[],
        before_update=None,
    )
    return [dict(info["losses"]) for _, info, _ in steps]


def _assert_close(params: list, reference: list, initial: list) -> None:
    assert len(params) == len(reference) == len(initial) > 2
    for a, ref in zip(params, reference):
        assert a.shape == ref.shape
        numpy.testing.assert_allclose(a, ref, rtol=0, atol=1e-5)
    moved = max(float(numpy.abs(ref - init).max()) for ref, init in zip(reference, initial))
    assert moved > 1e-3  # the steps moved the weights far more than the tolerance


# accumulate_gradient ---------------------------------------------------------------------------


def _accumulate_worker(rank: int, world_size: int, init_file: str, encoder: str, out: str) -> None:
    _join(rank, world_size, init_file)
    try:
        for k, opt in [(k, opt) for k in ACCUMULATE for opt in OPTIMIZERS]:
            # Rank 1 starts from other weights: the broadcast replaces them.
            nlp, optimizer, batches = _setup(Path(encoder), seed=rank)
            optimizer = _optimizer(opt, optimizer)
            parallel = DataParallel(nlp)
            parallel.sync.broadcast_parameters()
            losses = []
            for batch in batches:
                losses.append(
                    parallel.update(batch, drop=0.0, sgd=optimizer, accumulate_gradient=k)
                )
                optimizer.step_schedules()
            numpy.savez(Path(out) / f"acc{k}{opt}_{rank}.npz", *_params(nlp))
            (Path(out) / f"acc{k}{opt}_{rank}.json").write_text(json.dumps(losses))
    finally:
        dist.destroy_process_group()


def test_accumulate_gradient_sums_sub_batches_as_spacy_train(still_encoder, tmp_path):  # noqa: F811
    """N = 2 processes with accumulate_gradient = k take the same steps as
    spaCy's train_while_improving with the same k on the same global batches.
    The batches of 5 and 3 examples make sub-batches of unequal sizes and gold
    counts, a remainder sub-batch (5 // 2 = 2: sub-batches of 2, 2 and 1) and
    sub-batches of one example, whose shard on one rank is empty."""
    _spawn(_accumulate_worker, str(tmp_path / "pg"), str(still_encoder), str(tmp_path))
    for k, opt in [(k, opt) for k in ACCUMULATE for opt in OPTIMIZERS]:
        nlp, optimizer, batches = _setup(still_encoder, seed=0)
        optimizer = _optimizer(opt, optimizer)
        initial = _params(nlp)
        ref_losses = _spacy_train(nlp, optimizer, batches, k)
        reference = _params(nlp)
        rank0 = _load(tmp_path / f"acc{k}{opt}_0.npz")
        rank1 = _load(tmp_path / f"acc{k}{opt}_1.npz")
        for a, b in zip(rank0, rank1):
            assert numpy.array_equal(a, b)
        _assert_close(rank0, reference, initial)
        losses = json.loads((tmp_path / f"acc{k}{opt}_0.json").read_text())
        assert len(losses) == len(ref_losses) == len(BATCHES)
        for step, ref in zip(losses, ref_losses):
            numpy.testing.assert_allclose(step["token_classifier"], ref["token_classifier"], rtol=1e-5)


# listeners ---------------------------------------------------------------------------------------


def _tok2vec_pipeline(seed: int):
    """spaCy's `tok2vec` with two listeners: a token_classifier and spaCy's
    own tagger (whose loss is a sum over the tokens, not a mean)."""
    spacy.util.fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "tok2vec",
        config={
            "model": {
                "@architectures": "spacy.HashEmbedCNN.v2",
                "width": 16,
                "depth": 1,
                "embed_size": 100,
                "window_size": 1,
                "maxout_pieces": 2,
                "subword_features": True,
                "pretrained_vectors": None,
            }
        },
    )
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 16, "upstream": "tok2vec"}
    nlp.add_pipe(
        "token_classifier", config={"tasks": ["ents", "tag"], "model": {"tok2vec": listener}}
    )
    nlp.add_pipe("tagger", name="spacy_tagger", config={"model": {"tok2vec": dict(listener)}})
    examples = [
        Example.from_dict(nlp.make_doc(text), annots) for text, annots in TRAIN_DATA + EXTRA_DATA
    ]
    optimizer = nlp.initialize(lambda: examples)
    assert nlp.get_pipe("tok2vec").listening_components == ["token_classifier", "spacy_tagger"]
    return nlp, optimizer, [[examples[i] for i in batch] for batch in BATCHES]


def _transformer_pipeline(encoder: Path, seed: int):
    """A spacy-transformers `transformer` and a token_classifier listening to it."""
    spacy.util.fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(encoder),
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": 128,
                    "stride": 96,
                },
                "tokenizer_config": {"use_fast": True},
            }
        },
    )
    nlp.add_pipe(
        "token_classifier",
        config={"tasks": ["ents", "tag"], "model": {"tok2vec": dict(LISTENER_TOK2VEC)}},
    )
    examples = [
        Example.from_dict(nlp.make_doc(text), annots) for text, annots in TRAIN_DATA + EXTRA_DATA
    ]
    optimizer = nlp.initialize(lambda: examples)
    assert nlp.get_pipe("transformer").listening_components == ["token_classifier"]
    return nlp, optimizer, [[examples[i] for i in batch] for batch in BATCHES]


def _component_params(nlp) -> dict:
    """Each trainable component's parameters, as GradientSync sees them."""
    return {
        name: [p.value().numpy().copy() for p in GradientSync(nlp, exclude=others).params]
        for name in nlp.pipe_names
        for others in [[n for n in nlp.pipe_names if n != name]]
    }


def _listener_worker(rank: int, world_size: int, init_file: str, kind: str, out: str, encoder: str) -> None:
    _join(rank, world_size, init_file)
    try:
        if kind == "tok2vec":
            nlp, optimizer, batches = _tok2vec_pipeline(seed=rank)
        else:
            nlp, optimizer, batches = _transformer_pipeline(Path(encoder), seed=rank)
        optimizer = _optimizer("sgd", optimizer)
        parallel = DataParallel(nlp)
        parallel.sync.broadcast_parameters()
        for batch in batches:
            parallel.update(batch, drop=0.0, sgd=optimizer)
            optimizer.step_schedules()
        params = _component_params(nlp)
        for name, values in params.items():
            numpy.savez(Path(out) / f"{kind}_{name}_{rank}.npz", *values)
    finally:
        dist.destroy_process_group()


def _check_listener_run(kind: str, out: Path, nlp, optimizer, batches) -> None:
    initial = _component_params(nlp)
    _spacy_train(nlp, _optimizer("sgd", optimizer), batches, 1)
    reference = _component_params(nlp)
    for name in nlp.pipe_names:
        rank0 = _load(out / f"{kind}_{name}_0.npz")
        rank1 = _load(out / f"{kind}_{name}_1.npz")
        for a, b in zip(rank0, rank1):
            assert numpy.array_equal(a, b), name
        assert len(rank0) == len(reference[name]) > 0, name
        for a, ref in zip(rank0, reference[name]):
            numpy.testing.assert_allclose(a, ref, rtol=0, atol=1e-5, err_msg=name)
        moved = max(float(numpy.abs(r - i).max()) for r, i in zip(reference[name], initial[name]))
        assert moved > 1e-3, name


def test_upstream_tok2vec_gets_its_listeners_full_gradient(tmp_path):
    """spaCy's `tok2vec` shared by a token_classifier and spaCy's tagger, on
    N = 2 processes: every component's parameters (the upstream tok2vec's
    included) end where spaCy's own loop puts them on the global batches.
    An upstream whose gradient were averaged (1/N of it) would lag behind."""
    _spawn(_listener_worker, str(tmp_path / "pg"), "tok2vec", str(tmp_path), "")
    nlp, optimizer, batches = _tok2vec_pipeline(seed=0)
    _check_listener_run("tok2vec", tmp_path, nlp, optimizer, batches)


@needs_listener
def test_upstream_transformer_gets_its_listeners_full_gradient(still_encoder, tmp_path):  # noqa: F811
    """The same with a spacy-transformers `transformer` (torch parameters
    behind spacy-transformers' shim) and a token_classifier listening to it."""
    _spawn(_listener_worker, str(tmp_path / "pg"), "transformer", str(tmp_path), str(still_encoder))
    nlp, optimizer, batches = _transformer_pipeline(still_encoder, seed=0)
    _check_listener_run("transformer", tmp_path, nlp, optimizer, batches)


# dropout -------------------------------------------------------------------------------------------


def _dropout_worker(rank: int, world_size: int, init_file: str, encoder: str, data: str, out: str) -> None:
    """train_distributed for 3 steps with seed 0, then with seed null. A fake
    cupy stands for a GPU's generator: thinc's fix_random_seed seeds it (and
    thinc's dropout on a GPU draws from it)."""
    import thinc.util
    from spacy.training.initialize import init_nlp

    from spacy_tokclf.distributed import train_distributed

    _join(rank, world_size, init_file)
    cupy_seeds: list = []
    record: dict = {}
    update = DataParallel.update

    def recording_update(self, batch, **kwargs):
        run = record[current]
        if not run["batches"]:
            # After the broadcast and the seeding, before the first step.
            run["initial"] = [v.tolist() for v in _params(self.nlp)]
            ops = self.nlp.get_pipe("token_classifier").model.ops
            run["thinc_mask"] = ops.get_dropout_mask((64,), 0.5).tolist()
            run["torch_mask"] = torch.nn.functional.dropout(torch.ones(64), 0.5).tolist()
            run["cupy_seeds"] = list(cupy_seeds)
        run["batches"].append([eg.reference.text for eg in batch])
        return update(self, batch, **kwargs)

    DataParallel.update = recording_update  # type: ignore[method-assign]
    try:
        for current, seed in (("seeded", 0), ("unseeded", None)):
            record[current] = {"batches": []}
            if seed is None:
                # As fresh processes: every generator from the OS's entropy
                # (the seeded run left python's random the same on both ranks).
                random.seed()
                numpy.random.seed()
                torch.seed()
            overrides = {
                "paths.train": data,
                "paths.dev": data,
                "paths.encoder": encoder,
                "system.seed": seed,
                "training.max_epochs": 0,
                "training.max_steps": 3,
                "training.eval_frequency": 100,
                "training.batcher.size": 20,
                "training.logger.progress_bar": None,
            }
            config = spacy.util.load_config(
                PROJECT / "configs" / "ner.cfg", overrides=overrides, interpolate=False
            )
            nlp = init_nlp(config)
            cupy_seeds.clear()
            saved = thinc.util.has_cupy_gpu, thinc.util.cupy
            thinc.util.has_cupy_gpu = True
            thinc.util.cupy = SimpleNamespace(random=SimpleNamespace(seed=cupy_seeds.append))
            try:
                train_distributed(nlp, None)  # ends with check_in_sync
            finally:
                thinc.util.has_cupy_gpu, thinc.util.cupy = saved
        (Path(out) / f"dropout{rank}.json").write_text(json.dumps(record))
    finally:
        DataParallel.update = update  # type: ignore[method-assign]
        dist.destroy_process_group()


def test_each_rank_draws_its_own_dropout_masks(still_encoder, tmp_path):  # noqa: F811
    """With the same seed, rank 1's generators (numpy's and torch's, which
    draw dropout on the CPU, and the GPU's: here a fake cupy) are seeded with
    seed + 1, rank 0's with the seed, so the ranks' dropout masks differ; the
    initial weights and the global batches are the same on both ranks. Without
    a seed, the global batches are still the same on both ranks."""
    blank = spacy.blank("en")
    docs = [Example.from_dict(blank.make_doc(t), a).reference for t, a in TRAIN_DATA + EXTRA_DATA]
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    _spawn(
        _dropout_worker, str(tmp_path / "pg"), str(still_encoder), str(tmp_path / "train.spacy"),
        str(tmp_path),
    )  # fmt: skip
    rank0, rank1 = (json.loads((tmp_path / f"dropout{r}.json").read_text()) for r in (0, 1))
    seeded0, seeded1 = rank0["seeded"], rank1["seeded"]
    assert seeded0["initial"] == seeded1["initial"]
    assert seeded0["thinc_mask"] != seeded1["thinc_mask"]
    assert seeded0["torch_mask"] != seeded1["torch_mask"]
    # The GPU's generator: seeded with the seed by train_distributed, then
    # with seed + rank on rank 1.
    assert seeded0["cupy_seeds"] == [0]
    assert seeded1["cupy_seeds"] == [0, 1]
    assert len(seeded0["batches"]) == 4  # steps 0 to 3
    assert seeded0["batches"] == seeded1["batches"]
    unseeded0, unseeded1 = rank0["unseeded"], rank1["unseeded"]
    assert unseeded0["initial"] == unseeded1["initial"]
    assert unseeded0["thinc_mask"] != unseeded1["thinc_mask"]
    assert len(unseeded0["batches"]) == 4
    assert unseeded0["batches"] == unseeded1["batches"]
