"""The evaluation scripts that report a calibration (scripts/reports/calibration.py,
error_page.py) on a tiny random encoder trained briefly, so its scores are far
from calibrated. The calibration itself is tested in tests/test_calibration.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from reports import calibration, error_page
from spacy_tokclf.calibration import calibrate_saved
from spacy_tokclf.metrics import expected_calibration_error

from ..util import make_examples, make_nlp, train
from .conftest import SCRIPTS

NAME = "token_classifier"


def write_dev(nlp, path: Path) -> Path:
    DocBin(docs=[eg.reference for eg in make_examples(nlp)] * 2).to_disk(path)
    return path


def test_calibration_report_and_error_page(tmp_path, pipeline):
    nlp, _ = pipeline
    nlp.to_disk(tmp_path / "before")
    dev = write_dev(nlp, tmp_path / "dev.spacy")
    calibrate_saved(tmp_path / "before", dev, tmp_path / "after", report_path=tmp_path / "fit.json")
    report = calibration.write_calibration_report(
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


def n_repaired(nlp, texts) -> int:
    return sum(sum(doc.spans[NAME].attrs["repaired"]) for doc in nlp.pipe(texts))


def with_repairs(nlp, texts):
    """The pipeline with the bias of its entity head's inside columns ("I-X")
    raised, by the smallest step of a ladder that makes decoding repair at
    least one entity on `texts` (a tag O -> I-X is not a valid sequence): a
    briefly trained pipeline repairs some entities or none depending on the
    last bits of its arithmetic, so the test makes its own repairs."""
    pipe = nlp.get_pipe(NAME)
    output_layer = pipe.model.get_ref("output_layer")
    start = pipe.layout.slices["ents"].start
    inside = [start + i for i, label in enumerate(pipe.layout.output_labels("ents")) if label.startswith("I-")]
    bias = output_layer.get_param("b").copy()
    for step in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        raised = bias.copy()
        raised[inside] += step
        output_layer.set_param("b", raised)
        if n_repaired(nlp, texts) > 0:
            return nlp
    raise AssertionError("no bias on the I- columns made decoding repair an entity")


def test_report_shows_repaired_entities_apart(tmp_path, tagging_nlp):
    """The entities whose labels decoding repaired (attrs["repaired"]) get
    their own count, precision, mean score and ECE, before and after, and
    their own threshold table (on a copy of the trained pipeline made to
    repair some entities, with_repairs)."""
    tagging_nlp.to_disk(tmp_path / "trained")
    nlp = spacy.load(tmp_path / "trained")
    dev = write_dev(nlp, tmp_path / "dev.spacy")
    with_repairs(nlp, [doc.text for doc in DocBin().from_disk(dev).get_docs(nlp.vocab)])
    nlp.to_disk(tmp_path / "before")
    calibrate_saved(tmp_path / "before", dev, tmp_path / "after", report_path=tmp_path / "fit.json")
    report = calibration.write_calibration_report(
        tmp_path / "before", tmp_path / "after", dev, tmp_path / "metrics", "ner", tmp_path / "fit.json"
    )
    repaired = report["repaired_entities"]
    # The same figures, gathered here from what the calibrated pipeline writes.
    after = spacy.load(tmp_path / "after")
    gold_docs = list(DocBin().from_disk(dev).get_docs(after.vocab))
    scores, right = [], []
    for gold, doc in zip(gold_docs, after.pipe(g.text for g in gold_docs)):
        truth = {(e.start, e.end, e.label_) for e in gold.ents}
        group = doc.spans[NAME]
        for span, score, flag in zip(group, group.attrs["scores"], group.attrs["repaired"]):
            if flag:
                scores.append(score)
                right.append((span.start, span.end, span.label_) in truth)
    assert len(scores) > 0
    assert repaired["after"]["n"] == repaired["before"]["n"] == len(scores)
    assert repaired["after"]["accuracy"] == pytest.approx(numpy.mean(right))
    assert repaired["after"]["mean_confidence"] == pytest.approx(numpy.mean(scores), abs=1e-6)
    assert repaired["after"]["ece"] == pytest.approx(expected_calibration_error(scores, right), abs=1e-6)
    assert 0 < repaired["share_of_entities"] <= 1
    assert repaired["share_of_entities"] == pytest.approx(len(scores) / report["calibration"]["entities"]["after"]["n"])
    assert repaired["thresholds"][0]["kept"] == len(scores)
    md = (tmp_path / "metrics" / "ner_calibration.md").read_text()
    assert f"| entities repaired by decoding | {len(scores):,} |" in md
    assert "Entities repaired by decoding, kept at each threshold" in md
    # scripts/reports/threshold_check.py finds the tables' rows, repaired ones too,
    # in a pipeline loaded with `threshold = 0.5`.
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "reports" / "threshold_check.py"), str(tmp_path / "after"), str(dev),
         "--threshold", "0.5", "--table", str(tmp_path / "metrics" / "ner_calibration.json"),
         "--output", str(tmp_path / "check.json")],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check = json.loads((tmp_path / "check.json").read_text())
    row = {r["threshold"]: r for r in repaired["thresholds"]}[0.5]
    assert (check["0.5"]["kept_repaired"], check["0.5"]["tp_repaired"]) == (row["kept"], row["tp"])
    assert check["0.5"]["table_repaired_kept"] == row["kept"]


def test_repaired_figures_by_hand():
    """measure() and markdown() on two docs worked out by hand: 3 entities,
    2 repaired (0.2 right, 0.9 wrong)."""
    records = [
        {"gold": [(0, 1, "PER"), (3, 5, "LOC")], "pred": [(0, 1, "PER", 0.2), (3, 4, "LOC", 0.9)]},
        {"gold": [(1, 2, "ORG")], "pred": [(1, 2, "ORG", 0.8)]},
    ]
    result = {"records": records, "repaired": [[True, True], [False]], "tags": []}
    m = calibration.measure(result)
    rep = m["repaired_entities"]
    assert (rep["n"], rep["accuracy"], rep["mean_confidence"]) == (2, 0.5, pytest.approx(0.55))
    # bin 2: 0.2 right (gap 0.8); bin 9: 0.9 wrong (gap 0.9); each weighs 1/2.
    assert rep["ece"] == pytest.approx(0.85)
    assert m["entities"]["n"] == 3
    table = calibration.repaired_report(m, m)
    assert table["share_of_entities"] == pytest.approx(2 / 3)
    by_threshold = {row["threshold"]: row for row in table["thresholds"]}
    assert (by_threshold[None]["kept"], by_threshold[0.5]["kept"], by_threshold[0.5]["tp"]) == (2, 1, 0)
    assert by_threshold[None]["r"] == 1.0 and by_threshold[0.5]["r"] == 0.0


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
    report = calibration.write_calibration_report(
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
    from spacy_tokclf.calibration import pipeline as cal
    from spacy_tokclf.calibrated import check_calibration
    from spacy_tokclf.calibration.data import EntityData, TaskData

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
    text = calibration.markdown(
        {"calibration": {"entities": summary}, "same_entities": True, "same_tags": True}
    )
    assert "| entities | 0 |" in text
    calibration._plot_reliability({"entities": summary}, tmp_path / "r.png")
    assert (tmp_path / "r.png").exists()
