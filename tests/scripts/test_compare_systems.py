"""scripts/train/compare_systems.py: token_classifier's config with and without
sentence context, as the comparison, the tuning and the context sweep build
it from configs/."""
from pathlib import Path

import pytest
from spacy.util import load_config, load_model_from_config
from train.compare_systems import sentence_context

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

CONFIGS = ["ner.cfg", "tagger.cfg", "joint.cfg"]


def build(config, encoder):
    config = config.copy()
    config["paths"]["encoder"] = str(encoder)
    return load_model_from_config(config, auto_fill=True, validate=True)


@pytest.mark.parametrize("name", CONFIGS)
def test_context_adds_one_annotating_sentencizer_and_none_removes_it(name):
    config = load_config(CONFIG_DIR / name)
    with_context = sentence_context(sentence_context(config, 16), 16)
    assert with_context["nlp"]["pipeline"][0] == "sentencizer"
    assert with_context["nlp"]["pipeline"].count("sentencizer") == 1
    assert with_context["training"]["annotating_components"].count("sentencizer") == 1
    tok2vec = with_context["components"]["token_classifier"]["model"]["tok2vec"]
    assert (tok2vec["@architectures"], tok2vec["context"]) == ("spacy-tokclf.HFEncoder.v2", 16)
    # model-best is chosen by the token_classifier's scores alone
    weights = build(with_context, "unused").config["training"]["score_weights"]
    assert not any(weights.get(k) for k in ("sents_f", "sents_p", "sents_r"))
    task_weight = "ents_f" if "ents" in with_context["components"]["token_classifier"]["tasks"] else "tag_acc"
    assert weights[task_weight] > 0
    without = sentence_context(with_context, None)
    assert "sentencizer" not in without["nlp"]["pipeline"]
    assert "sentencizer" not in without["training"]["annotating_components"]
    assert "sentencizer" not in without["components"]
    assert without["components"]["token_classifier"]["model"]["tok2vec"]["context"] is None
    # the config it was made from is not changed
    assert with_context["nlp"]["pipeline"][0] == "sentencizer"


def test_no_context_is_the_v1_model(wordpiece):
    """context None builds what HFEncoder.v1 builds (the same encoder
    settings, no sentencizer): the comparison's runs from a v1 config and
    from sentence_context(config, None) are the same runs."""
    v1 = load_config(CONFIG_DIR / "ner.cfg")
    v1["nlp"]["pipeline"] = ["token_classifier"]
    v1["components"].pop("sentencizer", None)
    v1["training"]["annotating_components"] = []
    tok2vec = v1["components"]["token_classifier"]["model"]["tok2vec"]
    tok2vec["@architectures"] = "spacy-tokclf.HFEncoder.v1"
    tok2vec.pop("context", None)
    nlps = [build(c, wordpiece) for c in (v1, sentence_context(v1, None))]
    assert [nlp.pipe_names for nlp in nlps] == [["token_classifier"]] * 2
    settings = [nlp.get_pipe("token_classifier").model.get_ref("tok2vec").attrs["settings"] for nlp in nlps]
    assert settings[0] == settings[1]
    assert settings[0].context is None


def test_scaled_learning_rates_resolve_to_scaled_adam():
    """The tuning's head_lr and layer_decay tricks: configs/ner.cfg's Adam
    becomes spacy-tokclf.Adam.v1 with the same settings plus the scale."""
    from train.compare_systems import scaled_learning_rates
    from spacy.util import registry

    from spacy_tokclf.optimizers import ScaledAdam

    config = load_config(CONFIG_DIR / "ner.cfg")
    assert scaled_learning_rates(config, {"lr": 1e-4}) is config
    scaled = scaled_learning_rates(config, {"lr": 1e-4, "head_lr_scale": 10.0})
    assert config["training"]["optimizer"]["@optimizers"] == "Adam.v1"  # not changed
    block = scaled["training"]["optimizer"]
    assert {k: v for k, v in block.items() if k not in ("@optimizers", "head_lr_scale")} == {
        k: v for k, v in config["training"]["optimizer"].items() if k != "@optimizers"
    }
    optimizer = registry.resolve({"o": block})["o"]
    assert isinstance(optimizer, ScaledAdam)
    assert (optimizer.head_lr_scale, optimizer.layer_decay) == (10.0, 1.0)
    decayed = registry.resolve({"o": scaled_learning_rates(config, {"layer_decay": 0.9})["training"]["optimizer"]})["o"]
    assert (decayed.head_lr_scale, decayed.layer_decay) == (1.0, 0.9)
