"""Calibration of a token_classifier (spacy_tokclf/calibration.py applies it,
calibrate_pipeline.py, calibration_data.py and calibration_fit.py fit it), the
`threshold` setting and `python -m spacy tokclf-calibrate`, on a tiny random
encoder trained briefly, so its scores are far from calibrated. The evaluation
scripts that report them (scripts/calibration_report.py, error_page.py) are
tested in tests/scripts/test_calibration_reports.py.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import DocBin, Span
from spacy.util import load_model_from_config, make_tempdir

from spacy_tokclf.calibrate_pipeline import calibrate, examples_from_docs
from spacy_tokclf.calibration import map_entity_scores
from spacy_tokclf.errors import CalibrationErrors
from spacy_tokclf.metrics import expected_calibration_error

from .util import TEXTS, TRAIN_DATA, make_examples, make_nlp

NAME = "token_classifier"
ALL_TEXTS = [text for text, _ in TRAIN_DATA] + TEXTS + ["", "   "]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def fixed_text(template: str) -> str:
    """A regex of an error template's text before its first field."""
    return re.escape(template.split("{")[0])


def predictions(nlp, texts=ALL_TEXTS) -> List[Dict[str, Any]]:
    out = []
    for doc in nlp.pipe(texts):
        group = doc.spans[NAME]
        out.append(
            {
                "ents": [(e.start, e.end, e.label_) for e in doc.ents],
                "spans": [(s.start, s.end, s.label_) for s in group],
                "tags": [t.tag_ for t in doc],
                "scores": [float(x) for x in group.attrs["scores"]],
                "probs": doc._.tokclf_probs[NAME],
            }
        )
    return out


def assert_close(a: Any, b: Any) -> None:
    """Equal up to float rounding: srsly's JSON reader can be one ulp off."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b)
        for key in a:
            assert_close(a[key], b[key])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_close(x, y)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-15)
    else:
        assert a == b


def same_decoding(a: List[Dict], b: List[Dict]) -> bool:
    return all(x["ents"] == y["ents"] and x["spans"] == y["spans"] and x["tags"] == y["tags"]
               for x, y in zip(a, b)) and len(a) == len(b)


def test_calibration_changes_scores_not_decoding(pipeline):
    nlp, examples = pipeline
    pipe = nlp.get_pipe(NAME)
    before = predictions(nlp)
    report = calibrate(nlp, make_examples(nlp), method="isotonic")
    calibration = pipe.cfg["calibration"]
    assert report["method"] == "isotonic" and calibration["method"] == "isotonic"
    json.dumps(calibration)  # stored as JSON
    temps = calibration["temperature"]
    assert set(temps) == {"ents", "tag"} and all(t != 1.0 for t in temps.values())
    after = predictions(nlp)
    assert same_decoding(before, after)
    assert any(b["scores"] != a["scores"] for b, a in zip(before, after))
    for b, a in zip(before, after):
        for task in ("ents", "tag"):
            assert len(a["probs"][task]) == len(b["probs"][task])
    # Token probabilities are the temperature-scaled ones; entity scores are
    # the mean over the entity's tokens, through the fitted map.
    docs = list(nlp.pipe(ALL_TEXTS[:3]))
    decoded, _ = pipe.predict_log_probs(docs)
    log_probs, ids = decoded["ents"]
    t = temps["ents"]
    scaled = log_probs / t
    scaled -= numpy.log(numpy.exp(scaled - scaled.max(1, keepdims=True)).sum(1, keepdims=True)) + scaled.max(1, keepdims=True)
    expected = numpy.exp(scaled[numpy.arange(len(ids)), ids])
    got = [p for doc in docs for p in doc._.tokclf_probs[NAME]["ents"]]
    numpy.testing.assert_allclose(got, expected, atol=1e-5)
    for doc in docs:
        probs = numpy.asarray(doc._.tokclf_probs[NAME]["ents"])
        means = [probs[s.start : s.end].mean() for s in doc.spans[NAME]]
        numpy.testing.assert_allclose(
            doc.spans[NAME].attrs["scores"], map_entity_scores(calibration, means), atol=1e-5
        )


def test_extreme_calibration_keeps_decoding(pipeline):
    """Decoding runs on the uncalibrated scores, whatever the calibration."""
    nlp, _ = pipeline
    pipe = nlp.get_pipe(NAME)
    before = predictions(nlp)
    for temps in ({"ents": 50.0, "tag": 0.02}, {"ents": 0.02, "tag": 50.0}):
        pipe.cfg["calibration"] = {
            "temperature": temps,
            "entity_map": {"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.21]},
        }
        after = predictions(nlp)
        assert same_decoding(before, after)
        assert all(0.2 <= s <= 0.21 for p in after for s in p["scores"])


def test_report_measures_what_the_pipeline_writes(pipeline):
    nlp, examples = pipeline
    gold = [eg.reference for eg in examples]

    def entity_ece() -> float:
        scores, right = [], []
        for g, doc in zip(gold, nlp.pipe(eg.reference.text for eg in examples)):
            truth = {(e.start, e.end, e.label_) for e in g.ents}
            for s, x in zip(doc.spans[NAME], doc.spans[NAME].attrs["scores"]):
                scores.append(x)
                right.append((s.start, s.end, s.label_) in truth)
        return expected_calibration_error(scores, right)

    before = entity_ece()
    report = calibrate(nlp, make_examples(nlp), method="platt")
    assert report["uncalibrated"]["entities"]["ece"] == pytest.approx(before, abs=1e-5)
    chosen = report["methods"]["platt"]
    assert chosen["in_sample"]["entities"]["ece"] == pytest.approx(entity_ece(), abs=1e-5)
    assert chosen["cross_fitted"] is not None
    assert set(report["uncalibrated"]) == {"ents_tokens", "tag_tokens", "entities"}


def test_auto_picks_the_lowest_cross_fitted_ece(pipeline):
    nlp, _ = pipeline
    report = calibrate(nlp, make_examples(nlp))
    eces = {m: info["cross_fitted"]["entities"]["ece"] for m, info in report["methods"].items()}
    assert set(eces) == {"temperature", "isotonic", "platt"}
    assert report["method"] == min(eces, key=eces.get)


def test_calibrate_errors(pipeline):
    nlp, _ = pipeline
    with pytest.raises(ValueError, match=fixed_text(CalibrationErrors.UNKNOWN_METHOD)):
        calibrate(nlp, make_examples(nlp), method="spline")
    with pytest.raises(ValueError, match=fixed_text(CalibrationErrors.NO_COMPONENT_NAMED)):
        calibrate(nlp, make_examples(nlp), component="ner")
    # Docs without entity or tag annotation: nothing to fit on.
    blank = examples_from_docs(nlp, [nlp.make_doc(t) for t in TEXTS[:2]])
    with pytest.raises(ValueError, match=re.escape(f"[{NAME}] ") + fixed_text(CalibrationErrors.NO_GOLD)):
        calibrate(nlp, blank)


def test_calibrated_pipeline_saves_and_loads(pipeline):
    nlp, _ = pipeline
    calibrate(nlp, make_examples(nlp))
    expected = predictions(nlp)
    with make_tempdir() as d:
        nlp.to_disk(d / "calibrated")
        loaded = spacy.load(d / "calibrated")
        assert_close(loaded.get_pipe(NAME).cfg["calibration"], nlp.get_pipe(NAME).cfg["calibration"])
        actual = predictions(loaded)
    assert same_decoding(expected, actual)
    for a, b in zip(expected, actual):
        numpy.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)
        for task in a["probs"]:
            numpy.testing.assert_allclose(a["probs"][task], b["probs"][task], atol=1e-6)
    from_bytes = load_model_from_config(nlp.config, auto_fill=True)
    from_bytes.from_bytes(nlp.to_bytes())
    assert_close(from_bytes.get_pipe(NAME).cfg["calibration"], nlp.get_pipe(NAME).cfg["calibration"])
    for a, b in zip(expected, predictions(from_bytes)):
        assert a["ents"] == b["ents"]
        numpy.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)


def test_pipeline_saved_before_calibration_existed_loads(pipeline):
    """A cfg without "calibration" and "threshold" (saved by an earlier
    version) loads and predicts uncalibrated."""
    nlp, _ = pipeline
    expected = predictions(nlp)
    with make_tempdir() as d:
        nlp.to_disk(d / "old")
        cfg_path = d / "old" / NAME / "cfg"
        cfg = srsly.read_json(cfg_path)
        for key in ("calibration", "threshold", "config_threshold"):
            del cfg[key]
        srsly.write_json(cfg_path, cfg)
        loaded = spacy.load(d / "old")
    assert loaded.get_pipe(NAME).cfg["calibration"] is None
    assert loaded.get_pipe(NAME).cfg["threshold"] is None
    actual = predictions(loaded)
    assert same_decoding(expected, actual)
    for a, b in zip(expected, actual):
        numpy.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)


@pytest.mark.parametrize(
    "calibration,problem",
    [
        ({"temperature": {"ents": -1.0}}, CalibrationErrors.BAD_TEMPERATURE),
        ({"temperature": {}, "entity_map": {"method": "isotonic"}}, CalibrationErrors.BAD_ISOTONIC),
    ],
)
def test_damaged_calibration_names_the_file(pipeline, calibration, problem):
    nlp, _ = pipeline
    with make_tempdir() as d:
        nlp.to_disk(d / "p")
        cfg_path = d / "p" / NAME / "cfg"
        cfg = srsly.read_json(cfg_path)
        cfg["calibration"] = calibration
        srsly.write_json(cfg_path, cfg)
        with pytest.raises(ValueError, match=fixed_text(problem)) as err:
            spacy.load(d / "p")
        assert str(cfg_path) in str(err.value)


# threshold -------------------------------------------------------------------


def test_threshold_drops_exactly_the_entities_under_it(pipeline):
    nlp, _ = pipeline
    pipe = nlp.get_pipe(NAME)
    calibrate(nlp, make_examples(nlp), method="temperature")
    full = predictions(nlp)
    scores = sorted(s for p in full for s in p["scores"])
    assert len(set(scores)) >= 3
    threshold = scores[len(scores) // 2]  # an entity scored exactly at it is kept
    pipe.cfg["threshold"] = threshold
    docs = list(nlp.pipe(ALL_TEXTS))
    for p, doc in zip(full, docs):
        kept = [(s, x) for s, x in zip(p["spans"], p["scores"]) if x >= threshold]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [s for s, _ in kept]
        assert [(s.start, s.end, s.label_) for s in doc.spans[NAME]] == [s for s, _ in kept]
        assert doc.spans[NAME].attrs["scores"] == pytest.approx([x for _, x in kept])
        dropped = [s for s, x in zip(p["spans"], p["scores"]) if x < threshold]
        for start, end, _ in dropped:
            assert all(t.ent_iob_ == "O" for t in doc[start:end])
        # Tags and token probabilities do not depend on the threshold.
        assert [t.tag_ for t in doc] == p["tags"]
        assert doc._.tokclf_probs[NAME] == p["probs"]
    n_dropped = sum(1 for p in full for x in p["scores"] if x < threshold)
    assert 0 < n_dropped < len(scores)
    pipe.cfg["threshold"] = 0.0
    assert same_decoding(full, predictions(nlp))
    pipe.cfg["threshold"] = 1.0
    assert all(p["ents"] == [] for p in predictions(nlp)) or max(scores) == 1.0


def test_threshold_setting(wordpiece):
    assert make_nlp(wordpiece).get_pipe(NAME).cfg["threshold"] is None
    assert make_nlp(wordpiece, threshold=0.8).get_pipe(NAME).cfg["threshold"] == 0.8
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match="threshold"):
            make_nlp(wordpiece, threshold=bad)


def test_threshold_saved_and_overridden_at_load(pipeline):
    nlp, _ = pipeline
    pipe = nlp.get_pipe(NAME)
    override = {"components": {NAME: {"threshold": 0.9}}}
    with make_tempdir() as d:
        # Set on the component, then saved: kept.
        pipe.cfg["threshold"] = 0.3
        nlp.to_disk(d / "a")
        assert spacy.load(d / "a").get_pipe(NAME).cfg["threshold"] == pytest.approx(0.3)
        # A threshold in the config spacy.load is given wins.
        assert spacy.load(d / "a", config=override).get_pipe(NAME).cfg["threshold"] == 0.9
    # Saved with a threshold in its config: loaded as is, or overridden.
    with make_tempdir() as d:
        nlp.to_disk(d / "b")
        cfg_path = d / "b" / NAME / "cfg"
        cfg = srsly.read_json(cfg_path)
        # As saved by a pipeline built with threshold = 0.3 (a number that
        # srsly's JSON reader reads one ulp off), then set to 0.5 on the
        # component before saving.
        cfg["threshold"], cfg["config_threshold"] = 0.5, 0.3
        srsly.write_json(cfg_path, cfg)
        config = spacy.util.load_config(d / "b" / "config.cfg")
        config["components"][NAME]["threshold"] = 0.3
        config.to_disk(d / "b" / "config.cfg")
        assert spacy.load(d / "b").get_pipe(NAME).cfg["threshold"] == 0.5
        assert spacy.load(d / "b", config=override).get_pipe(NAME).cfg["threshold"] == 0.9
        none = {"components": {NAME: {"threshold": None}}}
        assert spacy.load(d / "b", config=none).get_pipe(NAME).cfg["threshold"] is None


def test_overwrite_false_policy_holds_with_calibration(pipeline):
    """Tokens whose existing entity is kept have probability None."""
    nlp, _ = pipeline
    calibrate(nlp, make_examples(nlp))
    doc = nlp.make_doc("Angela Merkel visited New York City in 2019.")
    doc.ents = [Span(doc, 6, 8, label="DATE")]
    doc = nlp(doc)
    probs = doc._.tokclf_probs[NAME]["ents"]
    assert probs[6] is None and probs[7] is None
    assert all(p is not None for i, p in enumerate(probs) if i not in (6, 7))
    assert any(e.label_ == "DATE" for e in doc.ents)


# command line ----------------------------------------------------------------


def write_dev(nlp, path: Path) -> Path:
    DocBin(docs=[eg.reference for eg in make_examples(nlp)] * 2).to_disk(path)
    return path


def test_cli_calibrate(tmp_path, pipeline):
    nlp, _ = pipeline
    nlp.to_disk(tmp_path / "model")
    dev = write_dev(nlp, tmp_path / "dev.spacy")
    env = {**os.environ, **OFFLINE_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-calibrate", "model", "dev.spacy", "calibrated",
         "--report", "report.json", "--method", "platt"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "entity ECE" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["method"] == "platt" and report["n_docs"] == 6
    calibrated = spacy.load(tmp_path / "calibrated")
    assert_close(calibrated.get_pipe(NAME).cfg["calibration"], report["calibration"])
    original = spacy.load(tmp_path / "model")
    assert same_decoding(predictions(original), predictions(calibrated))
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-calibrate", "model", "dev.spacy", "x", "-m", "spline"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 1 and "spline" in result.stdout
    assert not (tmp_path / "x").exists()
    assert dev.exists()
