"""Calibration of a token_classifier (spacy_tokclf/calibration.py applies it,
calibrate_pipeline.py, calibration_data.py and calibration_fit.py fit it), the
`threshold` setting, `python -m spacy tokclf-calibrate`, and the evaluation
scripts that report them (scripts/calibration_report.py, error_page.py), on
a tiny random encoder trained briefly, so its scores are far from calibrated.
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

from spacy_tokclf.calibrate_pipeline import calibrate, calibrate_saved, examples_from_docs
from spacy_tokclf.calibration import map_entity_scores
from spacy_tokclf.errors import CalibrationErrors
from spacy_tokclf.metrics import expected_calibration_error

from .util import TEXTS, TRAIN_DATA, make_examples, make_nlp, train

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import calibration_report  # noqa: E402
import error_page  # noqa: E402

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


@pytest.fixture(scope="module")
def trained(encoders):
    """Briefly trained (ents + tag): scores well away from 0 and 1."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    examples = make_examples(nlp)
    train(nlp, examples, n_iter=12)
    return nlp, examples


@pytest.fixture
def pipeline(trained):
    """The trained pipeline with any calibration or threshold reset after the test."""
    nlp, examples = trained
    pipe = nlp.get_pipe(NAME)
    saved = {k: pipe.cfg[k] for k in ("calibration", "threshold", "config_threshold")}
    yield nlp, examples
    pipe.cfg.update(saved)


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


# command line and evaluation scripts ------------------------------------------


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


def test_calibration_report_and_error_page(tmp_path, pipeline):
    nlp, _ = pipeline
    nlp.to_disk(tmp_path / "before")
    dev = write_dev(nlp, tmp_path / "dev.spacy")
    calibrate_saved(tmp_path / "before", dev, tmp_path / "after", report_path=tmp_path / "fit.json")
    report = calibration_report.write_calibration_report(
        tmp_path / "before", tmp_path / "after", dev, tmp_path / "metrics", "ner", tmp_path / "fit.json"
    )
    assert report["same_entities"] and report["same_tags"]
    for name in ("calibration.json", "calibration.md", "reliability.png", "threshold.png", "errors.html"):
        assert (tmp_path / "metrics" / f"ner_{name}").stat().st_size > 0
    cal = report["calibration"]
    assert set(cal) == {"entities", "tag_tokens"}
    fit = json.loads((tmp_path / "fit.json").read_text())
    # The after-ECE measured on what the saved pipeline writes equals the
    # in-sample ECE of the calibration step.
    in_sample = fit["methods"][fit["method"]]["in_sample"]
    assert cal["entities"]["after"]["ece"] == pytest.approx(in_sample["entities"]["ece"], abs=1e-5)
    assert cal["tag_tokens"]["after"]["ece"] == pytest.approx(in_sample["tag_tokens"]["ece"], abs=1e-5)
    assert [r["threshold"] for r in report["thresholds"]["after"]][:2] == [None, 0.5]
    html = (tmp_path / "metrics" / "ner_errors.html").read_text()
    counts = json.loads(html.split('id="counts">')[1].split("</script>")[0])
    assert counts["counts"] == report["error_counts"]


def test_error_page_marks_each_kind(tmp_path):
    words = "Angela Merkel visited New York City and Paris with Apple Inc. on Monday .".split()
    spaces = [True] * (len(words) - 1) + [False]
    gold = [(0, 2, "PER"), (3, 6, "LOC"), (7, 8, "LOC"), (9, 11, "ORG")]
    pred = [(0, 2, "PER", 0.97), (3, 5, "LOC", 0.61), (7, 8, "ORG", 0.55), (12, 13, "MISC", 0.31)]
    records = [
        error_page.doc_record(words, spaces, gold, pred, "with errors"),
        error_page.doc_record(words, spaces, gold, [(*g, 0.9) for g in gold], "all right"),
    ]
    counts = error_page.write_error_page(records, tmp_path / "e.html", "Test <page>")
    assert counts == {"missed": 1, "spurious": 1, "wrong type": 1, "wrong boundary": 1}
    html = (tmp_path / "e.html").read_text()
    assert "Test &lt;page&gt;" in html
    assert html.count('class="doc"') == 1  # the doc without errors is not shown
    assert "with errors" in html and "all right" not in html
    for cls in ("missed", "spurious", "wtype", "wbound"):
        assert f'class="ent {cls}"' in html
    assert ">0.61<" in html and ">0.55<" in html and ">0.97<" in html


def test_tag_only_pipeline(tmp_path, encoders):
    """Without entities: a temperature for tags, no entity map; the report
    has token ECE for tags and no threshold table or error page."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["tag"])
    train(nlp, make_examples(nlp), n_iter=12)
    nlp.to_disk(tmp_path / "before")
    dev = write_dev(nlp, tmp_path / "dev.spacy")
    fit = calibrate_saved(tmp_path / "before", dev, tmp_path / "after", report_path=tmp_path / "fit.json")
    assert fit["method"] == "temperature" and fit["calibration"]["entity_map"] is None
    assert set(fit["uncalibrated"]) == {"tag_tokens"}
    report = calibration_report.write_calibration_report(
        tmp_path / "before", tmp_path / "after", dev, tmp_path / "metrics", "tagger", tmp_path / "fit.json"
    )
    assert report["same_tags"] and set(report["calibration"]) == {"tag_tokens"}
    cal = report["calibration"]["tag_tokens"]
    assert cal["after"]["ece"] == pytest.approx(fit["methods"]["temperature"]["in_sample"]["tag_tokens"]["ece"], abs=1e-5)
    assert (tmp_path / "metrics" / "tagger_reliability.png").exists()
    assert not (tmp_path / "metrics" / "tagger_errors.html").exists()


def test_no_predicted_entities(tmp_path):
    """A model that predicts no entity (as after a few training steps) is
    calibrated and reported without a division by zero or a format error."""
    from spacy_tokclf import calibrate_pipeline as cal
    from spacy_tokclf.calibration import check_calibration
    from spacy_tokclf.calibration_data import EntityData, TaskData

    log_probs = numpy.log(numpy.tile([[0.9, 0.05, 0.05]], (6, 1)))
    data = {"ents": TaskData(log_probs=log_probs, ids=numpy.zeros(6, dtype="int64"),
                             gold=numpy.array([0, 0, 1, 2, 0, 0]), doc=numpy.repeat([0, 1], 3))}
    entities = EntityData(start=numpy.zeros(0, dtype="int64"), end=numpy.zeros(0, dtype="int64"),
                          label=[], correct=numpy.zeros(0, dtype=bool), doc=numpy.zeros(0, dtype="int64"),
                          n_gold=1)
    for method in ("temperature", "isotonic", "platt"):
        fitted = cal.fit(data, entities, method)
        assert check_calibration(fitted, ["ents"]) is None
        crossed = cal.cross_fit(data, entities, method, n_docs=2)
        assert crossed["entities"]["n"] == 0 and crossed["entities"]["ece"] == 0.0
    measured = cal.measure(None, data, entities)
    assert measured["entities"]["mean_confidence"] is None
    report = {"uncalibrated": measured, "method": "isotonic",
              "methods": {"isotonic": {"in_sample": measured, "cross_fitted": measured}}}
    assert "mean score - -> -" in "\n".join(cal.summary_lines(report))
    summary = {"before": measured["entities"], "after": measured["entities"]}
    text = calibration_report.markdown(
        {"calibration": {"entities": summary}, "same_entities": True, "same_tags": True}
    )
    assert "| entities | 0 |" in text
    calibration_report._plot_reliability({"entities": summary}, tmp_path / "r.png")
    assert (tmp_path / "r.png").exists()


def test_fitting_names_still_import_from_calibration():
    """The fitting side moved out of calibration.py; the names that code
    imports from there (__init__.py, cli.py, scripts/) still resolve."""
    from spacy_tokclf import calibrate_pipeline, calibration, calibration_data, calibration_fit

    assert calibration.calibrate is calibrate_pipeline.calibrate
    assert calibration.calibrate_saved is calibrate_pipeline.calibrate_saved
    assert calibration.summary_lines is calibrate_pipeline.summary_lines
    assert calibration.find_component is calibration_data.find_component
    assert calibration.fit_isotonic is calibration_fit.fit_isotonic
    with pytest.raises(AttributeError):
        calibration.no_such_name  # noqa: B018
