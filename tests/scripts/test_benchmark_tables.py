"""The arithmetic of scripts/bench/benchmark.py's tables (scripts/bench/tables.py):
ratios are taken within one repetition and then the median over
repetitions, and the first and the second pass are kept apart."""
import pytest
from bench import tables


def measurement(system, rep, second, first, unit="sentence"):
    return {
        "system": system, "unit": unit, "rep": rep, "words_per_s": second,
        "first_words_per_s": first, "peak_rss_mb": 100.0,
    }


def test_ratios_are_medians_of_per_repetition_ratios():
    # A busy spell in repetition 1 slows both systems: the per-repetition
    # ratio stays 2, while the ratio of medians would not.
    ms = [
        measurement("tokclf_ents", 0, 200.0, 100.0), measurement("spacy_trf_ner", 0, 100.0, 100.0),
        measurement("tokclf_ents", 1, 60.0, 30.0), measurement("spacy_trf_ner", 1, 30.0, 30.0),
        measurement("tokclf_ents", 2, 220.0, 110.0), measurement("spacy_trf_ner", 2, 110.0, 55.0),
    ]
    rows = {r["what"]: r for r in tables.comparisons(ms)}
    row = rows["token_classifier (ents) speed / spacy-transformers + ner"]
    assert row["words_per_s"] == pytest.approx(2.0)
    assert row["words_per_s_reps"] == pytest.approx([2.0, 2.0, 2.0])
    assert row["first_words_per_s"] == pytest.approx(1.0)  # median of 1, 1, 2
    # Pairs with a system that was not measured are left out.
    assert "int8 speed / fp32 speed (ents)" not in rows


def test_failed_measurements_are_skipped_and_counted():
    ms = [
        measurement("bare", 0, 100.0, 90.0), measurement("tokclf_ents", 0, 95.0, 80.0),
        measurement("bare", 1, 100.0, 90.0), {"system": "tokclf_ents", "unit": "sentence",
                                               "rep": 1, "error": "exit code 1"},
    ]
    rows = {r["system"]: r for r in tables.summarize(ms, ["bare"])}
    assert rows["tokclf_ents"]["runs"] == 1 and rows["tokclf_ents"]["failed"] == 1
    assert rows["tokclf_ents"]["x_bare"] == pytest.approx(0.95)
    assert rows["tokclf_ents"]["first_words_per_s"] == pytest.approx(80.0)
    ratio = {r["what"]: r for r in tables.comparisons(ms)}
    assert ratio["token_classifier (ents) speed / bare forward"]["words_per_s_reps"] == [0.95]
    md = tables.comparison_table(tables.comparisons(ms))
    assert "| token_classifier (ents) speed / bare forward | sentences | 0.95 | 0.89 | 0.95 |" in md
