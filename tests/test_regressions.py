"""One regression test per bug."""
import json
import shutil

from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_tokclf.architectures import build_hf_encoder
from spacy_tokclf.layers.pieces import layout_pieces, tokenize_docs


def test_tokenizer_json_padding_and_truncation_are_ignored(wordpiece, tmp_path):
    """all-MiniLM-L6-v2 ships a tokenizer.json that pads to 128 pieces and
    truncates at 128: every window was padded to 128+ pieces, and long docs
    would have lost tokens."""
    path = tmp_path / "padded"
    shutil.copytree(wordpiece, path)
    data = json.loads((path / "tokenizer.json").read_text(encoding="utf8"))
    data["padding"] = {
        "strategy": {"Fixed": 64},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    data["truncation"] = {
        "direction": "Right",
        "max_length": 16,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    (path / "tokenizer.json").write_text(json.dumps(data), encoding="utf8")
    model = build_hf_encoder(name=str(path), window=32, stride=24)
    model.initialize()
    shim = model.shims[0]
    assert shim.special.suffix == [shim.tokenizer.sep_token_id]
    words = ["the", "New", "York"] * 40
    doc = Doc(Vocab(), words=words)
    (vectors,) = model.predict([doc])
    assert vectors.shape == (len(words), model.get_dim("nO"))
    # The tokens past the truncation point are read in context, not zeros.
    assert abs(vectors[-1]).sum() > 0
    # A one-piece doc is one window of [CLS] piece [SEP], not 64 positions.
    pieces = tokenize_docs(shim.tokenizer, [Doc(Vocab(), words=["the"])], shim.special.unk_id)
    layout = layout_pieces(
        pieces, shim.special, window=32, stride=24, batch_pieces=4096, pooling="first"
    )
    assert [ids.shape for ids, _ in layout.batches] == [(1, 3)]


def test_reinitialize_with_other_labels_says_what_to_do(wordpiece):
    """A second initialize with a different label set crashed inside thinc
    ("Attempt to change dimension 'nO'") instead of saying what to change."""
    import pytest
    from spacy.training import Example

    from .util import make_examples, make_nlp

    nlp = make_nlp(wordpiece)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    fewer = [Example.from_dict(nlp.make_doc("Paris"), {"entities": [(0, 5, "LOC")]})]
    with pytest.raises(ValueError, match="add a new component"):
        nlp.get_pipe("token_classifier").initialize(lambda: fewer, nlp=nlp, labels=["LOC"])
    # Without `labels`, the labels found are added to the ones it has: no change.
    nlp.get_pipe("token_classifier").initialize(lambda: fewer, nlp=nlp)
    nlp.get_pipe("token_classifier").initialize(lambda: examples, nlp=nlp)
