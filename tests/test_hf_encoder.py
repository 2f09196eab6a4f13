"""The encoder layer itself (spacy_tokclf/layers/hf_encoder.py, hf_shim.py,
piece_encoder.py): the constructor, the one named object that goes to torch,
pooling, the split of its output per doc, the shim's bytes and the tokenizer
loader."""
from types import SimpleNamespace

import numpy
import pytest
import torch
from spacy.tokens import Doc
from spacy.vocab import Vocab
from thinc.api import ArgsKwargs

from spacy_tokclf.layers import (
    EncoderInputs,
    EncoderSettings,
    HFEncoder,
    HFEncoderShim,
    PieceEncoder,
    SlowTokenizerError,
    load_fast_tokenizer,
)
from spacy_tokclf.layers.hf_encoder import convert_inputs, convert_outputs

WORDS = [["Angela", "Merkel", "visited", "Paris", "."], [], ["the", "unbelievably", "long", "word"]]


def docs():
    vocab = Vocab()
    return [Doc(vocab, words=words) for words in WORDS]


def encoder(path, pooling="first", window=8, stride=6):
    model = HFEncoder(EncoderSettings(str(path), pooling, window, stride, 4096))
    model.initialize()
    return model


def test_constructor_is_cheap_and_fused(wordpiece):
    settings = EncoderSettings(str(wordpiece), "first", 256, 192, 4096)
    model = HFEncoder(settings)
    assert model.name == "hf_encoder"
    assert model.attrs["settings"] is settings
    assert not model.has_dim("nO")
    (shim,) = model.shims
    assert isinstance(shim, HFEncoderShim)
    assert not shim.loaded and shim.transformer is None and shim.piece_encoder is None
    assert shim.tokenizer is None and shim.special is None and shim.window_limit is None


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_convert_inputs_gives_one_named_object(wordpiece, pooling):
    model = encoder(wordpiece, pooling)
    batch = docs()
    args, get_dX = convert_inputs(model, batch, is_train=False)
    assert args.kwargs == {}
    (inputs,) = args.args
    assert isinstance(inputs, EncoderInputs)
    n_tokens = sum(len(doc) for doc in batch)
    assert inputs.n_tokens == n_tokens
    assert len(inputs.selections) == len(inputs.batches) >= 1
    for (ids, mask), rows in zip(inputs.batches, inputs.selections):
        assert ids.dtype == mask.dtype == rows.dtype == torch.int64
        assert ids.ndim == 2 and ids.shape == mask.shape
        assert ((rows >= 0) & (rows < ids.numel())).all()
    n_rows = sum(len(rows) for rows in inputs.selections)
    assert sorted(inputs.gather.tolist()) == list(range(n_rows))
    if pooling == "first":
        assert inputs.token_index is None and n_rows == n_tokens
    else:
        assert inputs.token_index is not None and len(inputs.token_index) == n_rows
        assert torch.bincount(inputs.token_index).min() >= 1
    # The docs take no gradient.
    assert get_dX(None) == []


class _Embedder(torch.nn.Module):
    """A fake transformer: each piece's hidden state is [piece id, 1]."""

    config = SimpleNamespace(hidden_size=2)

    def forward(self, input_ids, attention_mask):
        states = torch.stack([input_ids.float(), torch.ones_like(input_ids).float()], dim=-1)
        return SimpleNamespace(last_hidden_state=states)


def test_piece_encoder_reads_the_named_inputs():
    # One call of two windows [[10, 11, 12], [20, 21, 0]]; three tokens:
    # token 0 = pieces 10, 11; token 1 = 12; token 2 = 20, 21.
    ids = torch.tensor([[10, 11, 12], [20, 21, 0]])
    batches = [(ids, torch.ones_like(ids))]
    first = EncoderInputs(
        batches=batches,
        selections=[torch.tensor([0, 2, 3])],
        gather=torch.tensor([0, 1, 2]),
        token_index=None,
        n_tokens=3,
    )
    encoder = PieceEncoder(_Embedder())
    assert encoder(first)[:, 0].tolist() == [10, 12, 20]
    # Rows selected out of order are put back in order by gather.
    shuffled = EncoderInputs(batches, [torch.tensor([3, 0, 2])], torch.tensor([1, 2, 0]), None, 3)
    assert encoder(shuffled)[:, 0].tolist() == [10, 12, 20]
    mean = EncoderInputs(
        batches=batches,
        selections=[torch.tensor([0, 1, 2, 3, 4])],
        gather=torch.arange(5),
        token_index=torch.tensor([0, 0, 1, 2, 2]),
        n_tokens=3,
    )
    assert encoder(mean).tolist() == [[10.5, 1.0], [12.0, 1.0], [20.5, 1.0]]


def test_convert_outputs_splits_per_doc_and_back(wordpiece):
    model = encoder(wordpiece)
    batch = docs()
    lengths = [len(doc) for doc in batch]
    output = torch.arange(sum(lengths) * 3, dtype=torch.float32).reshape(-1, 3)
    output.requires_grad_()
    Ys, get_d_output = convert_outputs(model, (batch, output), is_train=True)
    assert [Y.shape for Y in Ys] == [(n, 3) for n in lengths]
    assert numpy.concatenate(Ys).tolist() == output.tolist()
    dYs = [numpy.full((n, 3), float(i), dtype="float32") for i, n in enumerate(lengths)]
    grads = get_d_output(dYs)
    assert isinstance(grads, ArgsKwargs)
    assert grads.args == (output,)
    (dY,) = grads.kwargs["grad_tensors"]
    assert dY.tolist() == numpy.concatenate(dYs).tolist()
    assert convert_outputs(model, ([], output), is_train=False)[0] == []


def test_shim_bytes_round_trip(wordpiece):
    model = encoder(wordpiece, window=8, stride=6)
    shim = model.shims[0]
    fresh = HFEncoderShim().from_bytes(shim.to_bytes())
    assert fresh.loaded
    assert fresh.special == shim.special
    assert fresh.window_limit == shim.window_limit
    assert fresh.tokenizer.get_vocab() == shim.tokenizer.get_vocab()
    before = shim.transformer.state_dict()
    after = fresh.transformer.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)
    # The rebuilt layer computes the same vectors.
    rebuilt = HFEncoder(model.attrs["settings"])
    rebuilt.shims[0].from_bytes(shim.to_bytes())
    rebuilt.initialize()
    for a, b in zip(model.predict(docs()), rebuilt.predict(docs())):
        assert numpy.array_equal(a, b)


def test_shim_bytes_of_an_unloaded_encoder_stay_unloaded():
    shim = HFEncoderShim().from_bytes(HFEncoderShim().to_bytes())
    assert not shim.loaded and shim.tokenizer is None


def test_load_fast_tokenizer(wordpiece, monkeypatch):
    import transformers

    tokenizer = load_fast_tokenizer(str(wordpiece), local_files_only=True)
    assert tokenizer.is_fast
    slow_class = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)
    monkeypatch.setattr(
        transformers.AutoTokenizer,
        "from_pretrained",
        lambda *args, **kwargs: slow_class(vocab_file=str(wordpiece / "vocab.txt")),
    )
    with pytest.raises(SlowTokenizerError, match=r"`model\.tok2vec\.name`\) is a slow"):
        load_fast_tokenizer(str(wordpiece), setting="model.tok2vec.name")
    with pytest.raises(ValueError, match=r"^\[my_ner\] The tokenizer of '.*' is a slow"):
        load_fast_tokenizer(str(wordpiece), component="my_ner")


def test_errors_come_from_errors_py_with_the_package_prefix(wordpiece):
    from spacy_tokclf.errors import EncoderErrors, error

    model = HFEncoder(EncoderSettings(str(wordpiece), "first", 256, 192, 4096))
    with pytest.raises(ValueError) as excinfo:
        model.predict(docs())
    assert str(excinfo.value) == error(EncoderErrors.NO_WEIGHTS, before="using the component")
    assert str(excinfo.value).startswith("[spacy-tokclf] The encoder has no weights yet")
