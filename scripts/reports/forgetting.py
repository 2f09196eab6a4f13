"""The forgetting gate: per-label F1 of an old pipeline and of the new one
taught new labels (spacy-tokclf.extend_labels.v1), on a gold .spacy file.

    python scripts/reports/forgetting.py training/ner/model-best training/add_label/model-best \\
        corpus/conll_dev.spacy --max-drop 0.5 --output results/add_label/forgetting.json

Both pipelines predict on the gold words alone. Prints each label's F1
before and after; exits with status 1 and names the labels when any label of
the old pipeline's component drops by more than --max-drop F1 points (a gate
to put in CI). The library function is spacy_tokclf.scoring.forgetting_gate.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import spacy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import read_docs
from spacy_tokclf.scoring import forgetting_gate


def report_lines(report: Dict[str, Any]) -> List[str]:
    """The table: label, F1 before, after, change; old labels first."""
    old = report["old_labels"]
    labels = old + sorted(set(report["after"]) - set(old))
    lines = [f"{'label':<16} {'before':>7} {'after':>7} {'change':>7}"]
    for label in labels:
        b, a = report["before"].get(label, 0.0), report["after"].get(label, 0.0)
        mark = "" if label in old else "  (new)"
        lines.append(f"{label:<16} {b:7.2f} {a:7.2f} {a - b:+7.2f}{mark}")
    return lines


def gate_message(report: Dict[str, Any], max_drop: float) -> str:
    """Why the gate failed: each label that dropped, and the bound."""
    drops = ", ".join(f"{label} {b:.2f} -> {a:.2f} ({-d:+.2f})" for label, b, a, d in report["dropped"])
    return (
        f"FORGETTING: F1 of old labels dropped by more than --max-drop {max_drop:g} points: {drops}. "
        "Train with distillation (spacy-tokclf.extend_labels.v1), or raise --max-drop if the drop is acceptable."
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="the pipeline before the labels were added")
    parser.add_argument("new", help="the pipeline taught the new labels")
    parser.add_argument("dev", type=Path, help="gold .spacy file")
    parser.add_argument("--max-drop", type=float, required=True, help="F1 points an old label may lose")
    parser.add_argument("--component", default="token_classifier")
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args(argv)
    if not args.max_drop >= 0:
        parser.error("--max-drop must be a number of F1 points >= 0")
    old, new = spacy.load(args.old), spacy.load(args.new)
    gold = read_docs(args.dev, vocab=new.vocab)
    report = forgetting_gate(old, new, gold, max_drop=args.max_drop, component=args.component)
    print("\n".join(report_lines(report)))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(json.dumps({**report, "max_drop": args.max_drop}, indent=2) + "\n")
        tmp.replace(args.output)
    if not report["passed"]:
        print(gate_message(report, args.max_drop), file=sys.stderr)
        return 1
    print(f"OK: no old label dropped by more than --max-drop {args.max_drop:g} F1 points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
