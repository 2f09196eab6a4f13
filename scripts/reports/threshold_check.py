"""The `threshold` setting on a saved pipeline, against the threshold table.

    python scripts/reports/threshold_check.py training/ner/model-calibrated corpus/conll_dev.sentences.spacy \
        --threshold 0.9 --table metrics/ner_calibration.json --output results/calibration/threshold_check.json

Loads the pipeline twice, with `threshold` set to null and to the given value
in the config spacy.load is given, predicts on the gold tokens of the dev
file, and counts the entities in doc.ents (checking that the span group holds
the same) and the right ones (span and type), and the same for the entities
whose labels decoding repaired (attrs["repaired"]). With --table (the JSON
written by scripts/reports/calibration.py), the counts must equal the table's
row, and the repaired ones the row of its repaired-entity table.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any

import spacy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import bare_doc, read_docs
from spacy_tokclf.calibration.data import find_component


def count(pipeline: str, dev: str, threshold):
    pipe_name: str = find_component(spacy.load(pipeline)).name
    nlp = spacy.load(pipeline, config={"components": {pipe_name: {"threshold": threshold}}})
    pipe: Any = nlp.get_pipe(pipe_name)
    assert pipe.cfg["threshold"] == threshold
    gold = read_docs(Path(dev), vocab=nlp.vocab)
    docs = (bare_doc(nlp.vocab, g) for g in gold)
    kept = right = kept_repaired = right_repaired = 0
    for g, doc in zip(gold, nlp.pipe(docs, batch_size=256)):
        group = doc.spans[pipe.cfg["spans_key"]]
        ents = {(e.start, e.end, e.label_) for e in doc.ents}
        if ents != {(s.start, s.end, s.label_) for s in group}:
            sys.exit("doc.ents and the span group differ")
        truth = {(e.start, e.end, e.label_) for e in g.ents}
        kept += len(ents)
        right += len(ents & truth)
        repaired = {(s.start, s.end, s.label_) for s, r in zip(group, group.attrs["repaired"]) if r}
        kept_repaired += len(repaired)
        right_repaired += len(repaired & truth)
    return kept, right, kept_repaired, right_repaired


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline")
    parser.add_argument("dev")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rows, repaired_rows = {}, {}
    if args.table:
        table = json.loads(args.table.read_text())
        rows = {r["threshold"]: r for r in table["thresholds"]["after"]}
        if "repaired_entities" in table:
            repaired_rows = {r["threshold"]: r for r in table["repaired_entities"]["thresholds"]}
    out = {}
    for t in (None, args.threshold):
        kept, tp, kept_repaired, tp_repaired = count(args.pipeline, args.dev, t)
        out[str(t)] = {"kept": kept, "tp": tp, "kept_repaired": kept_repaired, "tp_repaired": tp_repaired}
        for prefix, got, table_rows in (
            ("", (kept, tp), rows), ("repaired_", (kept_repaired, tp_repaired), repaired_rows)
        ):
            if t not in table_rows:
                continue
            want = (table_rows[t]["kept"], table_rows[t]["tp"])
            out[str(t)].update({f"table_{prefix}kept": want[0], f"table_{prefix}tp": want[1]})
            if got != want:
                what = prefix.replace("_", " ") + "entities"
                sys.exit(f"threshold {t}: {got[0]} {what}, {got[1]} right; the table says {want[0]}, {want[1]}")
        print(f"threshold {t}: {kept} entities, {tp} right; {kept_repaired} repaired, {tp_repaired} of them right")
    if args.output:
        args.output.write_text(json.dumps(out, indent=2) + "\n")
    print("OK")
