"""What `spacy project run evaluate` writes beside spacy evaluate's metrics.

For a trained pipeline and a gold dev corpus, predicting on the gold tokens:
- metrics/<config>_scores.json: seqeval/conlleval-compatible entity P/R/F1
  (exact spans, overall and per type) and/or tag accuracy (per tag too);
- metrics/<config>_per_type.md: the per-type (or per-tag) table;
- metrics/<config>_confusion.png: per-type F1 and a token-level confusion matrix;
- metrics/<config>_displacy.html: displaCy rendering of sample dev predictions.
"""
import json
from collections import Counter
from pathlib import Path
from typing import Dict, List

import spacy
from spacy import displacy

from common import gold_labels, predict_spacy, read_docs, score

N_DISPLACY = 25
MAX_TAGS_IN_PLOT = 20


def write_report(model_path: Path, dev_path: Path, out_dir: Path, name: str) -> Dict:
    nlp = spacy.load(model_path)
    gold_docs = read_docs(dev_path)
    tasks = _tasks(nlp)
    results: Dict = {"dev_docs": len(gold_docs)}
    tables: List[str] = []
    confusions = {}
    for task in tasks:
        gold = [gold_labels(d, task) for d in gold_docs]
        predicted = predict_spacy(nlp, gold_docs, task)
        results.update(score(gold, predicted, task))
        if task == "ents":
            tables.append(_ents_table(results))
            confusions[task] = _confusion([_types(g) for g in gold], [_types(p) for p in predicted])
        else:
            per_tag = _per_tag_accuracy(gold, predicted)
            results["tag_acc_per_tag"] = per_tag
            tables.append(_tags_table(per_tag))
            confusions[task] = _confusion(gold, predicted, keep=MAX_TAGS_IN_PLOT)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}_scores.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"{name}_per_type.md").write_text("\n\n".join(tables) + "\n")
    _plot(results, confusions, out_dir / f"{name}_confusion.png")
    sample = list(nlp.pipe(doc.text for doc in gold_docs[:N_DISPLACY]))
    style = "ent" if "ents" in tasks else "dep"
    html = displacy.render(sample, style=style, page=True, options={"compact": True})
    (out_dir / f"{name}_displacy.html").write_text(html, encoding="utf8")
    for table in tables:
        print(table)
    print(f"Wrote {name}_scores.json, _per_type.md, _confusion.png, _displacy.html to {out_dir}")
    return results


def _tasks(nlp) -> List[str]:
    tasks: List[str] = []
    for _, pipe in nlp.pipeline:
        for task in getattr(pipe, "tasks", []):
            if task not in tasks:
                tasks.append(task)
    return tasks


def _types(labels: List[str]) -> List[str]:
    return [label.partition("-")[2] or "O" for label in labels]


def _ents_table(results: Dict) -> str:
    rows = ["| type | P | R | F1 |", "| --- | ---: | ---: | ---: |"]
    for ent_type, prf in sorted(results["ents_per_type"].items()):
        rows.append(f"| {ent_type} | {100 * prf['p']:.2f} | {100 * prf['r']:.2f} | {100 * prf['f']:.2f} |")
    rows.append(
        f"| **all** | {100 * results['ents_p']:.2f} | {100 * results['ents_r']:.2f} "
        f"| {100 * results['ents_f']:.2f} |"
    )
    return "\n".join(rows)


def _per_tag_accuracy(gold: List[List[str]], predicted: List[List[str]]) -> Dict[str, Dict]:
    total: Counter = Counter()
    right: Counter = Counter()
    for gs, ps in zip(gold, predicted):
        for g, p in zip(gs, ps):
            total[g] += 1
            right[g] += g == p
    return {tag: {"n": total[tag], "acc": right[tag] / total[tag]} for tag in sorted(total)}


def _tags_table(per_tag: Dict[str, Dict]) -> str:
    rows = ["| tag | gold tokens | accuracy |", "| --- | ---: | ---: |"]
    for tag, info in sorted(per_tag.items(), key=lambda kv: -kv[1]["n"]):
        rows.append(f"| {tag} | {info['n']} | {100 * info['acc']:.2f} |")
    return "\n".join(rows)


def _confusion(gold: List[List[str]], predicted: List[List[str]], keep: int = 0):
    pairs = Counter((g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
    counts = Counter(g for gs in gold for g in gs)
    labels = [label for label, _ in counts.most_common(keep or None)]
    matrix = [[pairs[(g, p)] for p in labels] for g in labels]
    return labels, matrix


def _plot(results: Dict, confusions: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy

    n = len(confusions) + ("ents_per_type" in results)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 5))
    axes = numpy.atleast_1d(axes)
    i = 0
    if "ents_per_type" in results:
        types = sorted(results["ents_per_type"])
        f1 = [100 * results["ents_per_type"][t]["f"] for t in types]
        axes[i].bar(types, f1, color="#4c72b0")
        axes[i].set_ylim(min(f1 + [100]) - 10, 100)
        axes[i].set_title(f"Entity F1 per type (all: {100 * results['ents_f']:.1f})")
        for x, y in enumerate(f1):
            axes[i].text(x, y + 0.3, f"{y:.1f}", ha="center")
        i += 1
    for task, (labels, matrix) in confusions.items():
        m = numpy.asarray(matrix, dtype=float)
        rates = m / numpy.maximum(m.sum(axis=1, keepdims=True), 1)
        axes[i].imshow(rates, cmap="Blues", vmin=0, vmax=1)
        axes[i].set_xticks(range(len(labels)), labels, rotation=90)
        axes[i].set_yticks(range(len(labels)), labels)
        axes[i].set_xlabel("predicted")
        axes[i].set_ylabel("gold")
        what = "entity type per token" if task == "ents" else f"top {len(labels)} tags"
        axes[i].set_title(f"Confusion, {what} (row-normalised)")
        i += 1
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
