"""Calibration of a token_classifier (spacy_tokclf/calibrated.py applies it,
spacy_tokclf/calibration/ fits it), the `threshold` setting and `python -m
spacy tokclf-calibrate`, on a tiny random encoder trained briefly, so its
scores are far from calibrated. The evaluation scripts that report them
(scripts/reports/calibration.py, error_page.py) are tested in
tests/scripts/test_calibration_reports.py.
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
from spacy.training import Example
from spacy.util import load_model_from_config, make_tempdir

from spacy_tokclf.calibrated import map_entity_scores
from spacy_tokclf.calibration import calibrate, examples_from_docs, summary_lines
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


DEV_TEXTS = [text for text in ALL_TEXTS if text.strip()]


def dev_examples(nlp, wrong_share: float = 1 / 3) -> List[Example]:
    """Gold examples of DEV_TEXTS on which the pipeline's entities (as it
    predicts them now) with the lowest scores, `wrong_share` of them, are
    wrong (no gold entity there) and the others right; tags are gold for the
    TRAIN_DATA texts. Being right rises with the score, so both maps can be
    fitted, whatever the tiny model predicts (a model overfitted on 3 docs
    gets them all right, and then no map can be fitted)."""
    tags = {text: annots["tags"] for text, annots in TRAIN_DATA}
    docs = list(nlp.pipe(DEV_TEXTS))
    found = [
        (float(score), d, (span.start_char, span.end_char, span.label_))
        for d, doc in enumerate(docs)
        for span, score in zip(doc.spans[NAME], doc.spans[NAME].attrs["scores"])
    ]
    assert len(found) >= 4 and len({s for s, _, _ in found}) >= 3, found
    n_wrong = max(1, int(len(found) * wrong_share)) if wrong_share > 0 else 0
    right = sorted(found, key=lambda f: f[0])[n_wrong:]
    examples = []
    for d, text in enumerate(DEV_TEXTS):
        annots: Dict[str, Any] = {"entities": [ent for _, doc, ent in right if doc == d]}
        if text in tags:
            annots["tags"] = tags[text]
        examples.append(Example.from_dict(nlp.make_doc(text), annots))
    return examples


def entity_ece(nlp, examples: List[Example]) -> float:
    """Entity ECE of what the pipeline writes on the examples' texts."""
    scores, right = entity_scores_and_flags(nlp, examples)
    return expected_calibration_error(scores, right)


def entity_scores_and_flags(nlp, examples: List[Example]):
    scores, right = [], []
    for eg, doc in zip(examples, nlp.pipe(eg.reference.text for eg in examples)):
        truth = {(e.start, e.end, e.label_) for e in eg.reference.ents}
        for s, x in zip(doc.spans[NAME], doc.spans[NAME].attrs["scores"]):
            scores.append(x)
            right.append((s.start, s.end, s.label_) in truth)
    return scores, right


def test_calibration_changes_scores_not_decoding(pipeline):
    nlp, examples = pipeline
    pipe = nlp.get_pipe(NAME)
    before = predictions(nlp)
    report = calibrate(nlp, dev_examples(nlp), method="isotonic")
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
    # Entity scores are the scores under the temperature alone, through the map.
    pipe.cfg["calibration"] = {**calibration, "entity_map": None}
    tempered = [list(doc.spans[NAME].attrs["scores"]) for doc in nlp.pipe(ALL_TEXTS)]
    pipe.cfg["calibration"] = calibration
    for doc, scores in zip(nlp.pipe(ALL_TEXTS), tempered):
        numpy.testing.assert_allclose(
            doc.spans[NAME].attrs["scores"], map_entity_scores(calibration, scores), atol=1e-5
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
    nlp, _ = pipeline
    examples = dev_examples(nlp)
    before = entity_ece(nlp, examples)
    report = calibrate(nlp, examples, method="platt")
    assert report["uncalibrated"]["entities"]["ece"] == pytest.approx(before, abs=1e-5)
    chosen = report["methods"]["platt"]
    assert chosen["in_sample"]["entities"]["ece"] == pytest.approx(entity_ece(nlp, examples), abs=1e-5)
    assert chosen["cross_fitted"] is not None or chosen["refused_in_fold"]
    assert set(report["uncalibrated"]) == {"ents_tokens", "tag_tokens", "entities"}
    assert "auto" not in report  # the nested estimate is of method="auto" only


def test_auto_picks_the_lowest_cross_fitted_ece(pipeline):
    nlp, _ = pipeline
    report = calibrate(nlp, dev_examples(nlp))
    assert report["refused"] == {}
    eces = {
        m: info["cross_fitted"]["entities"]["ece"]
        for m, info in report["methods"].items()
        if info["cross_fitted"] is not None
    }
    assert "temperature" in eces and set(report["methods"]) == {"temperature", "isotonic", "platt"}
    assert report["method"] == min(eces, key=eces.get)


def test_auto_reports_the_nested_estimate(pipeline):
    """The ECE reported for "auto" is nested: it equals, computed here with
    the public API alone, running auto on one half of the dev docs and
    measuring what the pipeline then writes on the other half, pooled over
    both halves. The chosen method's own cross-fitted ECE (the lowest of
    three) is kept in report["methods"] but not reported as the estimate."""
    nlp, _ = pipeline
    examples = dev_examples(nlp)
    report = calibrate(nlp, examples)
    nested = report["auto"]
    assert "nested" in nested["estimate"] and "optimistic" in nested["estimate"]
    n = len(examples)
    fold_of = [(i * 2) // n for i in range(n)]
    scores: List[float] = []
    right: List[bool] = []
    for k in range(2):
        train = [eg for eg, f in zip(examples, fold_of) if f != k]
        held_out = [eg for eg, f in zip(examples, fold_of) if f == k]
        assert calibrate(nlp, train)["method"] == nested["chosen_per_fold"][k]
        fold_scores, fold_right = entity_scores_and_flags(nlp, held_out)
        scores += fold_scores
        right += fold_right
    expected = expected_calibration_error(scores, right)
    assert nested["cross_fitted"]["entities"]["ece"] == pytest.approx(expected, abs=1e-5)
    assert nested["cross_fitted"]["entities"]["n"] == len(scores)
    line = next(line for line in summary_lines(report) if line.startswith("entity ECE"))
    assert f"{expected:.4f} nested cross-fitted" in line


def test_auto_never_picks_a_degenerate_map(pipeline):
    """All predicted entities right: no map can say how being right depends
    on the score. On today's main, auto chose a flat map (every entity the
    same score: ECE near 0); now both maps are refused, auto takes the
    temperature alone, and the scores keep their spread."""
    nlp, _ = pipeline
    all_right = dev_examples(nlp, wrong_share=0.0)
    assert entity_ece(nlp, all_right) > 0  # scores below 1 while all are right
    report = calibrate(nlp, all_right)
    scores, _ = entity_scores_and_flags(nlp, all_right)
    assert len(set(scores)) > 1
    assert report["method"] == "temperature"
    assert nlp.get_pipe(NAME).cfg["calibration"]["entity_map"] is None
    assert set(report["refused"]) == {"isotonic", "platt"}
    for reason in report["refused"].values():
        assert reason.startswith(CalibrationErrors.REFUSED_ONE_CLASS.split("{")[0])
    assert any(line.startswith("platt: no map fitted") for line in summary_lines(report))


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_asking_for_a_map_that_cannot_be_fitted_is_an_error(pipeline, method):
    nlp, _ = pipeline
    before = nlp.get_pipe(NAME).cfg["calibration"]
    with pytest.raises(ValueError, match=fixed_text(CalibrationErrors.MAP_REFUSED)) as err:
        calibrate(nlp, dev_examples(nlp, wrong_share=0.0), method=method)
    assert "--method temperature" in str(err.value)
    assert nlp.get_pipe(NAME).cfg["calibration"] == before  # nothing stored


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
    calibrate(nlp, dev_examples(nlp), method="isotonic")
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
        # What today's main fitted and stored: decreasing, diverged, flat.
        ({"temperature": {}, "entity_map": {"method": "platt", "a": -1.38e10, "b": 3.4e10}},
         CalibrationErrors.BAD_PLATT_SLOPE),
        ({"temperature": {}, "entity_map": {"method": "platt", "a": 1.79e9, "b": 0.0}},
         CalibrationErrors.BAD_PLATT_SLOPE),
        ({"temperature": {}, "entity_map": {"method": "isotonic", "x": [0.66], "y": [0.83]}},
         CalibrationErrors.BAD_FLAT_MAP),
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


def test_with_a_threshold_calibrating_changes_which_entities_are_kept(pipeline):
    """Calibration never changes the decoded labels: without a threshold the
    entities are the same; with one, which entities pass it depends on the
    (calibrated) scores. Here a map that lowers every score under the
    threshold drops every entity that passed it uncalibrated."""
    nlp, _ = pipeline
    pipe = nlp.get_pipe(NAME)
    lowering = {"temperature": {}, "entity_map": {"method": "isotonic", "x": [0.0, 1.0], "y": [0.01, 0.02]}}
    uncalibrated = predictions(nlp)
    threshold = min(s for p in uncalibrated for s in p["scores"])
    assert threshold > 0.02
    pipe.cfg["calibration"] = lowering
    assert same_decoding(uncalibrated, predictions(nlp))  # no threshold: the same entities
    pipe.cfg["threshold"] = threshold
    calibrated_kept = predictions(nlp)
    pipe.cfg["calibration"] = None
    uncalibrated_kept = predictions(nlp)
    assert same_decoding(uncalibrated, uncalibrated_kept)  # every entity passes it
    assert sum(len(p["ents"]) for p in uncalibrated_kept) > 0
    assert all(p["ents"] == [] and p["spans"] == [] for p in calibrated_kept)
    assert all(a["tags"] == b["tags"] for a, b in zip(calibrated_kept, uncalibrated_kept))


def test_calibrate_help_states_the_threshold_semantics():
    """The command's help said that which entities are predicted does not
    change, which is false with a threshold."""
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-calibrate", "--help"],
        env={**os.environ, **OFFLINE_ENV, "COLUMNS": "100"}, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "Calibration never changes the decoded labels" in text
    assert (
        "With a threshold set, which entities pass the threshold depends on the (calibrated) "
        "scores, so calibrating can change which entities are kept." in text
    )
    assert "predicted does not change" not in text


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
        # Set on the component only (nlp.config shows null), then saved: the
        # config's value is used, and a warning says so.
        pipe.cfg["threshold"] = 0.3
        nlp.to_disk(d / "a")
        with pytest.warns(UserWarning, match="set on the component"):
            assert spacy.load(d / "a").get_pipe(NAME).cfg["threshold"] is None
        # A threshold in the config spacy.load is given wins.
        assert spacy.load(d / "a", config=override).get_pipe(NAME).cfg["threshold"] == 0.9
        # Given at load, then saved: it is in config.cfg, and loads as saved.
        given = {"components": {NAME: {"threshold": 0.3}}}
        spacy.load(d / "a", config=given).to_disk(d / "b")
        assert spacy.load(d / "b").get_pipe(NAME).cfg["threshold"] == pytest.approx(0.3)
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


def write_dev(nlp, path: Path, wrong_share: float = 1 / 3) -> Path:
    DocBin(docs=[eg.reference for eg in dev_examples(nlp, wrong_share)]).to_disk(path)
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
    assert report["method"] == "platt" and report["n_docs"] == len(DEV_TEXTS)
    calibrated = spacy.load(tmp_path / "calibrated")
    assert_close(calibrated.get_pipe(NAME).cfg["calibration"], report["calibration"])
    original = spacy.load(tmp_path / "model")
    assert same_decoding(predictions(original), predictions(calibrated))
    assert "nested" not in result.stdout  # not auto
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-calibrate", "model", "dev.spacy", "x", "-m", "spline"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 1 and "spline" in result.stdout
    assert not (tmp_path / "x").exists()
    assert dev.exists()
    # All entities right: a map is refused by name, auto goes on without one.
    write_dev(nlp, tmp_path / "all_right.spacy", wrong_share=0.0)
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-calibrate", "model", "all_right.spacy", "y", "-m", "isotonic"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Cannot fit a 'isotonic' map" in result.stdout and "--method temperature" in result.stdout
    assert not (tmp_path / "y").exists()
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-calibrate", "model", "all_right.spacy", "z"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "method temperature" in result.stdout and "nested cross-fitted" in result.stdout
    assert "isotonic: no map fitted" in result.stdout
