"""The served memory run (scripts/loadtest/memory_run.py): its texts are new words,
the same for the same seed; a short run through the real server writes its
figures; a finished run with the same settings is not run again."""
import json

import spacy
from loadtest import memory_run
from loadtest.memory_run import main, novel_text


def test_novel_texts_are_deterministic_and_new():
    texts = [novel_text(0, i) for i in range(2000)]
    assert texts == [novel_text(0, i) for i in range(2000)]
    assert novel_text(1, 0) != texts[0]
    nlp = spacy.blank("en")
    fixed = {w for template in memory_run._TEMPLATES for w in template.split()}
    words = [w for text in texts for w in text.split() if w not in fixed]
    assert len(words) > 14_000  # about 7 a doc
    # Almost every made-up word is used once, and none is in a vocab.
    assert len(set(words)) > 0.99 * len(words)
    assert not any(w in nlp.vocab.strings for w in words[:2000])


def test_a_short_served_run_writes_its_figures_and_is_not_run_twice(encoders, tmp_path, monkeypatch, capsys):
    args = ["--encoder", str(encoders["wordpiece"]), "--docs", "60", "--every", "20", "--warmup", "10",
            "--clients", "2", "--threads", "1", "--out", str(tmp_path), "--name", "short"]
    assert main(args) == 0
    result = json.loads((tmp_path / "short.json").read_text(encoding="utf8"))
    assert [p["docs"] for p in result["checkpoints"]] == [10, 20, 40, 60]
    assert result["errors"] == 0 and result["passed"] is True
    assert result["rss_start_mb"] > 0 and result["rss_peak_mb"] >= result["rss_end_mb"]
    assert result["growth_mb"] == round(result["rss_end_mb"] - result["rss_start_mb"], 1)
    assert result["memory_zone"] is True and result["settings"]["docs"] == 60
    assert "**" in (tmp_path / "short.md").read_text(encoding="utf8")
    assert not list(tmp_path.glob(".*.tmp"))

    def no_server(*args, **kwargs):
        raise AssertionError("the run was started again")

    monkeypatch.setattr(memory_run, "start_server", no_server)
    capsys.readouterr()
    assert main(args) == 0
    assert "holds this run already" in capsys.readouterr().out
