"""Calibration of a pipeline before and after `tokclf-calibrate`, measured on
what the pipelines write (doc.spans[...].attrs["scores"], doc._.tokclf_probs).

    python scripts/reports/calibration.py BEFORE AFTER DEV.spacy OUT_DIR NAME [--fit FIT.json]

`spacy project run evaluate` calls `write_calibration_report` and writes, in
metrics/:
- <name>_calibration.json: entity ECE (10 equal bins), mean score and
  precision, and token ECE of tags, before and after; the same for the
  entities whose labels decoding repaired (doc.spans[...].attrs["repaired"]:
  "repaired_entities", with their own threshold table); the reliability bins;
  the threshold table; whether both pipelines predict the same entities and
  tags; the cross-fitted ECEs of the calibration step (--fit), if given;
- <name>_calibration.md: the same as tables;
- <name>_reliability.png: reliability diagrams, before and after;
- <name>_threshold.png: precision / recall / F1 against the threshold;
- <name>_errors.html: the error-analysis page of the calibrated pipeline
  (scripts/reports/error_page.py): every error counted, the first 1,000 docs with an
  error shown.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy
import spacy
from spacy.tokens import Doc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import bare_doc, read_docs
from reports.error_page import doc_record, write_error_page
from spacy_tokclf.calibration.data import find_component
from spacy_tokclf.metrics import THRESHOLDS, calibration_summary, threshold_table

# Docs with errors shown on the error page, at most (all are counted).
ERROR_PAGE_DOCS = 1000
# Thresholds of the plot (the table uses metrics.THRESHOLDS).
PLOT_THRESHOLDS = numpy.round(numpy.arange(0.0, 1.0, 0.01), 2).tolist() + [0.995, 0.999]


def run(nlp, gold_docs: Sequence[Doc], component: Optional[str] = None) -> Dict:
    """Predict on the gold tokens; what calibration is measured on."""
    pipe = find_component(nlp, component)
    key = pipe.cfg["spans_key"]
    docs = (bare_doc(nlp.vocab, g) for g in gold_docs)
    out: Dict = {"records": [], "repaired": [], "ents": [], "tags": [], "tag_probs": [],
                 "tasks": pipe.tasks}
    for i, (gold, doc) in enumerate(zip(gold_docs, nlp.pipe(docs, batch_size=256))):
        probs = doc._.tokclf_probs[pipe.name]
        if "ents" in pipe.tasks:
            group = doc.spans[key]
            pred = [(s.start, s.end, s.label_, float(x)) for s, x in zip(group, group.attrs["scores"])]
            # Whether decoding repaired each entity's labels (a span without
            # the flag, from an existing span group, counts as not repaired).
            out["repaired"].append([bool(r) for r in group.attrs.get("repaired", [None] * len(group))])
            out["records"].append(
                doc_record(
                    [t.text for t in doc], [bool(t.whitespace_) for t in doc],
                    [(e.start, e.end, e.label_) for e in gold.ents], pred, name=f"dev doc {i}",
                )
            )
            out["ents"].append([(e.start, e.end, e.label_) for e in doc.ents])
        if "tag" in pipe.tasks:
            out["tags"].append([(t.tag_, g.tag_) for t, g in zip(doc, gold)])
            out["tag_probs"].append(probs["tag"])
    return out


def measure(result: Dict) -> Dict:
    metrics: Dict = {}
    if result["records"]:
        scores, correct, repaired, n_gold = [], [], [], 0
        for r, flags in zip(result["records"], result["repaired"]):
            gold = set(r["gold"])
            n_gold += len(gold)
            for (start, end, label, score), flag in zip(r["pred"], flags):
                scores.append(score)
                correct.append((start, end, label) in gold)
                repaired.append(flag)
        metrics["entities"] = calibration_summary(scores, correct)
        metrics["entities"]["n_gold"] = n_gold
        metrics["repaired_entities"] = calibration_summary(scores, correct, where=repaired)
        metrics["_scores"], metrics["_correct"], metrics["_repaired"] = scores, correct, repaired
    if result["tags"]:
        conf, right = [], []
        for pairs, probs in zip(result["tags"], result["tag_probs"]):
            for (pred, gold), p in zip(pairs, probs):
                if gold and p is not None:
                    conf.append(p)
                    right.append(pred == gold)
        metrics["tag_tokens"] = calibration_summary(conf, right)
    return metrics


def repaired_report(before: Dict, after: Dict) -> Dict:
    """The entities whose labels decoding repaired: their number, precision,
    mean score and ECE before and after calibration, and which of them each
    threshold keeps (after; "r" is the share of the right ones kept)."""
    keep = numpy.asarray(after["_repaired"], dtype=bool)
    scores = numpy.asarray(after["_scores"], dtype="float64")[keep]
    correct = numpy.asarray(after["_correct"], dtype=bool)[keep]
    return {
        "before": before["repaired_entities"],
        "after": after["repaired_entities"],
        "share_of_entities": float(keep.mean()) if len(keep) else None,
        "thresholds": threshold_table(scores, correct, int(correct.sum())),
    }


def write_calibration_report(
    before_path: Path,
    after_path: Path,
    dev_path: Path,
    out_dir: Path,
    name: str,
    fit_report: Optional[Path] = None,
) -> Dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for which, path in (("before", before_path), ("after", after_path)):
        nlp = spacy.load(path)
        gold_docs = read_docs(Path(dev_path), vocab=nlp.vocab)
        results[which] = run(nlp, gold_docs)
    before, after = measure(results["before"]), measure(results["after"])
    report: Dict = {
        "dev": str(dev_path),
        "before": str(before_path),
        "after": str(after_path),
        "same_entities": results["before"]["ents"] == results["after"]["ents"],
        "same_tags": [[p for p, _ in d] for d in results["before"]["tags"]]
        == [[p for p, _ in d] for d in results["after"]["tags"]],
        "calibration": {},
    }
    for key in ("entities", "tag_tokens"):
        if key in before:
            report["calibration"][key] = {"before": before[key], "after": after[key]}
    if "entities" in after:
        n_gold = after["entities"]["n_gold"]
        report["thresholds"] = {
            which: threshold_table(m["_scores"], m["_correct"], n_gold)
            for which, m in (("before", before), ("after", after))
        }
        report["repaired_entities"] = repaired_report(before, after)
        _plot_thresholds(
            {w: threshold_table(m["_scores"], m["_correct"], n_gold, PLOT_THRESHOLDS)
             for w, m in (("before", before), ("after", after))},
            out_dir / f"{name}_threshold.png",
        )
        counts = write_error_page(
            results["after"]["records"], out_dir / f"{name}_errors.html",
            f"Entity errors: {Path(after_path).name} on {Path(dev_path).name}",
            limit=ERROR_PAGE_DOCS,
        )
        report["error_counts"] = counts
    if fit_report is not None and Path(fit_report).exists():
        fit = json.loads(Path(fit_report).read_text())
        report["fit"] = {
            "method": fit["method"],
            "temperature": fit["calibration"]["temperature"],
            "cross_fitted_ece": {
                method: {k: v["ece"] for k, v in (info["cross_fitted"] or {}).items()}
                for method, info in fit["methods"].items()
            },
            "uncalibrated_ece": {k: v["ece"] for k, v in fit["uncalibrated"].items()},
            "in_sample_ece": {
                method: {k: v["ece"] for k, v in info["in_sample"].items()}
                for method, info in fit["methods"].items()
            },
        }
    if report["calibration"]:
        _plot_reliability(report["calibration"], out_dir / f"{name}_reliability.png")
    (out_dir / f"{name}_calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (out_dir / f"{name}_calibration.md").write_text(md + "\n")
    print(md)
    return report


def markdown(report: Dict) -> str:
    lines = [
        "| what | n | ECE before | ECE after | mean score before | mean score after | accuracy (entities: precision) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("entities", "entities"), ("tag_tokens", "tags (tokens)")):
        if key not in report["calibration"]:
            continue
        b, a = report["calibration"][key]["before"], report["calibration"][key]["after"]
        lines.append(
            f"| {label} | {a['n']:,} | {b['ece']:.4f} | **{a['ece']:.4f}** | {_num(b['mean_confidence'])} "
            f"| {_num(a['mean_confidence'])} | {_num(a['accuracy'])} |"
        )
    if "repaired_entities" in report:
        b, a = report["repaired_entities"]["before"], report["repaired_entities"]["after"]
        lines.append(
            f"| entities repaired by decoding | {a['n']:,} | {b['ece']:.4f} | **{a['ece']:.4f}** "
            f"| {_num(b['mean_confidence'])} | {_num(a['mean_confidence'])} | {_num(a['accuracy'])} |"
        )
    lines.append("")
    lines.append(
        f"Same entities before and after: {report['same_entities']}; same tags: {report['same_tags']}."
    )
    if "fit" in report:
        fit, keys = report["fit"], _keys(report)
        lines += ["", "ECE of the calibration step (`*_tokens`: per token, the probability of "
                  "its decoded label against the gold label), uncalibrated, then each method "
                  "fitted and measured on the whole dev set (in-sample) and cross-fitted "
                  "(2 folds: fitted on one half of the dev docs, measured on the other):", "",
                  "| method | " + " | ".join(f"{k} in-sample | {k} cross-fitted" for k in keys) + " |",
                  "| --- |" + " ---: | ---: |" * len(keys),
                  "| uncalibrated | " + " | ".join(f"{fit['uncalibrated_ece'][k]:.4f} | -" for k in keys) + " |"]
        for method, eces in fit["cross_fitted_ece"].items():
            chosen = " (chosen)" if method == fit["method"] else ""
            lines.append(
                f"| {method}{chosen} | "
                + " | ".join(f"{fit['in_sample_ece'][method][k]:.4f} | {eces.get(k, float('nan')):.4f}" for k in keys)
                + " |"
            )
        lines.append("")
        lines.append("Temperatures: " + ", ".join(f"{t} {v:.3f}" for t, v in fit["temperature"].items()) + ".")
    if "thresholds" in report:
        lines += ["", "Threshold on the calibrated entity score (entities scored under it are dropped):", "",
                  "| threshold | entities kept | dropped | P | R | F1 |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in report["thresholds"]["after"]:
            t = "none" if row["threshold"] is None else f"{row['threshold']:.2f}"
            lines.append(
                f"| {t} | {row['kept']:,} | {row['dropped']:,} | {100 * row['p']:.2f} "
                f"| {100 * row['r']:.2f} | {100 * row['f']:.2f} |"
            )
    if report.get("repaired_entities", {}).get("after", {}).get("n"):
        lines += ["", "Entities repaired by decoding, kept at each threshold (calibrated scores; "
                  "R: the share of the right ones kept):", "",
                  "| threshold | kept | dropped | P | R |", "| ---: | ---: | ---: | ---: | ---: |"]
        for row in report["repaired_entities"]["thresholds"]:
            t = "none" if row["threshold"] is None else f"{row['threshold']:.2f}"
            lines.append(
                f"| {t} | {row['kept']:,} | {row['dropped']:,} | {100 * row['p']:.2f} | {100 * row['r']:.2f} |"
            )
    if "error_counts" in report:
        lines += ["", "Errors by kind (calibrated pipeline): "
                  + ", ".join(f"{k} {v:,}" for k, v in report["error_counts"].items())]
    return "\n".join(lines)


def _num(value: Optional[float]) -> str:
    """0.123, or "-" where there is nothing to average (no predictions)."""
    return "-" if value is None else f"{value:.3f}"


def _keys(report: Dict) -> List[str]:
    keys: List[str] = []
    for eces in report["fit"]["cross_fitted_ece"].values():
        keys += [k for k in eces if k not in keys]
    return keys


def _plot_reliability(calibration: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(calibration)
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 5.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        what = "Entities" if key == "entities" else "Tags (tokens)"
        for which, colour in (("before", "#c44e52"), ("after", "#4c72b0")):
            info = calibration[key][which]
            bins = [b for b in info["bins"] if b["n"]]
            ax.plot(
                [b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=colour,
                label=f"{which}: ECE {info['ece']:.3f}, mean score {_num(info['mean_confidence'])}",
            )
        ax.plot([0, 1], [0, 1], "--", color="#888", label="perfect calibration")
        counts = calibration[key]["after"]["bins"]
        ax2 = ax.twinx()
        ax2.bar([b["lo"] + 0.05 for b in counts], [b["n"] for b in counts], width=0.09,
                alpha=0.15, color="#4c72b0")
        if any(b["n"] for b in counts):
            ax2.set_yscale("log")
        ax2.set_ylabel("predictions per bin, after (log)")
        acc = calibration[key]["after"]["accuracy"]
        ax.set_title(f"{what}: n = {calibration[key]['after']['n']:,}, "
                     f"{'precision' if key == 'entities' else 'accuracy'} {_num(acc)}")
        ax.set_xlabel("mean score in bin (10 equal bins)")
        ax.set_ylabel("share right" if key == "entities" else "accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_thresholds(tables: Dict[str, List[Dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    rows = [r for r in tables["after"] if r["threshold"] is not None]
    t = [r["threshold"] for r in rows]
    for key, label, colour in (("p", "precision", "#4c72b0"), ("r", "recall", "#dd8452"), ("f", "F1", "#55a868")):
        ax.plot(t, [100 * r[key] for r in rows], color=colour, label=label)
    for x in THRESHOLDS:
        ax.axvline(x, color="#ddd", lw=0.8, zorder=0)
    # From the first threshold that drops anything (lower ones change nothing).
    first = next((r["threshold"] for r in rows if r["dropped"]), 0.0)
    ax.set_xlim(max(0.0, numpy.floor(first * 10) / 10 - 0.05), 1.0)
    ax.set_xlabel("threshold on the calibrated entity score")
    ax.set_ylabel("%")
    ax.set_title("Dev precision / recall / F1 against the threshold")
    ax.set_ylim(max(0, min(100 * r["r"] for r in rows) - 5), 100.5)
    ax.legend()
    for which, colour in (("before", "#c44e52"), ("after", "#4c72b0")):
        rows = [r for r in tables[which] if r["threshold"] is not None and r["kept"]]
        ax2.plot([100 * r["r"] for r in rows], [100 * r["p"] for r in rows], color=colour,
                 label=f"{which} calibration")
        marks = [r for r in rows if r["threshold"] in THRESHOLDS]
        ax2.plot([100 * r["r"] for r in marks], [100 * r["p"] for r in marks], "o", color=colour, ms=4)
        if which == "after":
            for r in marks:
                ax2.annotate(f"{r['threshold']:g}", (100 * r["r"], 100 * r["p"]), fontsize=8,
                             textcoords="offset points", xytext=(4, 2))
    ax2.set_xlabel("recall %")
    ax2.set_ylabel("precision %")
    ax2.set_title("Precision against recall (dots: thresholds of the table)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("dev")
    parser.add_argument("out_dir")
    parser.add_argument("name")
    parser.add_argument("--fit", default=None, help="the JSON report of tokclf-calibrate --report")
    args = parser.parse_args()
    write_calibration_report(
        Path(args.before), Path(args.after), Path(args.dev), Path(args.out_dir), args.name,
        Path(args.fit) if args.fit else None,
    )
