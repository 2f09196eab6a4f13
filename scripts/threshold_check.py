"""The `threshold` setting on a saved pipeline, against the threshold table.

    python scripts/threshold_check.py training/ner/model-calibrated corpus/conll_dev.sentences.spacy \
        --threshold 0.9 --table metrics/ner_calibration.json --output results/calibration/threshold_check.json

Loads the pipeline twice, with `threshold` set to null and to the given value
in the config spacy.load is given, predicts on the gold tokens of the dev
file, and counts the entities in doc.ents (checking that the span group holds
the same) and the right ones (span and type). With --table (the JSON written
by scripts/calibration_report.py), both counts must equal the table's row.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any

import spacy

from common import bare_doc, read_docs
from spacy_tokclf.calibration_data import find_component


def count(pipeline: str, dev: str, threshold):
    pipe_name: str = find_component(spacy.load(pipeline)).name
    nlp = spacy.load(pipeline, config={"components": {pipe_name: {"threshold": threshold}}})
    pipe: Any = nlp.get_pipe(pipe_name)
    assert pipe.cfg["threshold"] == threshold
    gold = read_docs(Path(dev), vocab=nlp.vocab)
    docs = (bare_doc(nlp.vocab, g) for g in gold)
    kept = right = 0
    for g, doc in zip(gold, nlp.pipe(docs, batch_size=256)):
        ents = {(e.start, e.end, e.label_) for e in doc.ents}
        if ents != {(s.start, s.end, s.label_) for s in doc.spans[pipe.cfg["spans_key"]]}:
            sys.exit("doc.ents and the span group differ")
        kept += len(ents)
        right += len(ents & {(e.start, e.end, e.label_) for e in g.ents})
    return kept, right


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline")
    parser.add_argument("dev")
    parser.add_argument("--threshold", type=float, required=True)
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rows = {}
    if args.table:
        rows = {r["threshold"]: r for r in json.loads(args.table.read_text())["thresholds"]["after"]}
    out = {}
    for t in (None, args.threshold):
        kept, tp = count(args.pipeline, args.dev, t)
        out[str(t)] = {"kept": kept, "tp": tp}
        if t in rows:
            out[str(t)].update(table_kept=rows[t]["kept"], table_tp=rows[t]["tp"])
            if (kept, tp) != (rows[t]["kept"], rows[t]["tp"]):
                sys.exit(f"threshold {t}: {kept} entities, {tp} right; the table says {rows[t]['kept']}, {rows[t]['tp']}")
        print(f"threshold {t}: {kept} entities, {tp} right")
    if args.output:
        args.output.write_text(json.dumps(out, indent=2) + "\n")
    print("OK")
