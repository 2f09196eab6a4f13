"""Teaching a trained pipeline a new entity type on CoNLL-2003 without
forgetting the others (configs/add_label.cfg; docs/add-label.md).

    python scripts/train/add_label.py run [--new-label MISC] [--lrs 5e-5,1e-4,2e-4] [--seeds 0]
        [--systems old,naive_o,naive_masked,distill,full] [--encoder, --epochs, --train-limit, --max-steps]
    python scripts/train/add_label.py report [--new-label MISC] [--max-drop 0.5] [the same run settings]

The data, all from the training set (dev for every number, test never): its
documents are split in two halves by a seeded shuffle of whole documents
(split_halves). The old half keeps three types, the new label's entities made
O; the new half keeps the new label's entities only, every other token
unannotated (missing), as a user's new data looks. Both are cut into the
chunks of 1-8 sentences the shipped recipe trains on (common.read_docs).

The systems:
  old           configs/ner.cfg (the shipped recipe, its rate) on the old half: knows
                the other three types;
  naive_o       (a) the old pipeline fine-tuned on the new half with configs/add_label.cfg,
                distill_weight 0, the unannotated tokens taken as O;
  naive_masked  (b) the same, the unannotated tokens masked (no loss);
  distill       (c) configs/add_label.cfg as shipped: masked, a frozen teacher distils the
                old types where the new data says nothing;
  full          (d) the upper bound: configs/ner.cfg on the whole training set with all
                four types (the shipped model's run in results/context/, made by
                scripts/train/context_sweep.py if it is not there).
(a)-(c) have the same budget: --epochs epochs of the new half, each at every
rate of --lrs; `report` takes each system's best rate by dev F1 over all
types (mean over seeds). old and full run at the shipped rate (2e-4, tuned on
the full data).

Each run writes results/add_label/<label>/<system>[_lr<LR>]_seed<S>[_...].json
(per-type counts, P/R/F1 on dev documents and lone sentences, training
seconds) and is skipped when that file exists with the same run settings, so
the workflow resumes where it stopped. `report` writes table.md, a plot of
per-type F1 (f1_per_label.png) and the forgetting gate's verdict on each
system's best run against the old one (seed 0, gate_verdicts),
and links training/add_label/<label>/best/<system> to those models (the last
report's), so that scripts/reports/forgetting.py can gate on them.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
from types import SimpleNamespace
from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
from spacy.tokens import Doc, Span

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import CHUNK_SENTENCES, CHUNK_SINGLES, DATASETS, PROJECT, chunk_docs, read_docs, schedule
from run_info import machine
from train.compare_systems import train_spacy
from train.context_sweep import OUT as CONTEXT_OUT
from train.context_sweep import context_config, evaluate
from train.context_sweep import run_name as context_run_name
from train.run_cache import add_run_arguments, cached_run, context_made_with, run_settings, run_suffix
from train.run_cache import matching_runs, settings_note, write_run

OUT = PROJECT / "results" / "add_label"
TRAINING = PROJECT / "training" / "add_label"
SYSTEMS = ("old", "naive_o", "naive_masked", "distill", "full")
FINE_TUNES = {"naive_o": 0.0, "naive_masked": 0.0, "distill": 1.0}  # system -> distill_weight
DESCRIPTIONS = {
    "old": "old model (3 types, old half)",
    "naive_o": "(a) naive fine-tune, unannotated as O",
    "naive_masked": "(b) naive fine-tune, unannotated masked",
    "distill": "(c) distillation (add_label.cfg)",
    "full": "(d) upper bound: all data, 4 types",
}
SHIPPED_LR = 2e-4  # configs/ner.cfg
CONTEXT = 16  # configs/ner.cfg
TYPES = ("PER", "LOC", "ORG", "MISC")


def split_halves(docs: List[Doc], seed: int = 0) -> List[List[Doc]]:
    """The documents in two disjoint halves, by a seeded shuffle."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    half = len(docs) // 2
    return [[docs[i] for i in sorted(order[:half])], [docs[i] for i in sorted(order[half:])]]


def relabelled(doc: Doc, keep, default: str) -> Doc:
    """A copy of the doc with only the entities `keep` accepts; every other
    token `default`: "outside" (O) or "missing" (unannotated)."""
    copy = doc.copy()
    copy.set_ents([Span(copy, e.start, e.end, e.label_) for e in doc.ents if keep(e.label_)], default=default)
    return copy


def scenario_data(new_label: str, docs: List[Doc]) -> Dict[str, List[Doc]]:
    """The training data of each system from the training documents, in
    chunks (module docstring)."""
    labels = {e.label_ for doc in docs for e in doc.ents}
    if new_label not in labels:
        raise SystemExit(f"--new-label {new_label}: the training data has the types {sorted(labels)}.")
    old_half, new_half = split_halves(docs)

    def chunks(half: List[Doc], keep, default: str) -> List[Doc]:
        return chunk_docs([relabelled(d, keep, default) for d in half], CHUNK_SENTENCES, singles=CHUNK_SINGLES)

    return {
        "old": chunks(old_half, lambda label: label != new_label, "outside"),
        "naive_o": chunks(new_half, lambda label: label == new_label, "outside"),
        "naive_masked": chunks(new_half, lambda label: label == new_label, "missing"),
        "distill": chunks(new_half, lambda label: label == new_label, "missing"),
    }


def run_name(system: str, lr: Optional[float], seed: int) -> str:
    return f"{system}_lr{lr:g}_seed{seed}" if lr is not None else f"{system}_seed{seed}"


def fine_tune_config(lr: float, seed: int, distill_weight: float):
    config = spacy.util.load_config(PROJECT / "configs" / "add_label.cfg")
    config["training"]["optimizer"]["learn_rate"]["initial_rate"] = lr
    config["system"]["seed"] = seed
    config["initialize"]["after_init"]["distill_weight"] = distill_weight
    return config


def full_run(seed: int, args) -> Dict[str, Any]:
    """System (d): the shipped recipe's run of scripts/train/context_sweep.py
    (made here if it is not there; it skips a run whose file exists)."""
    command = [sys.executable, str(PROJECT / "scripts" / "train" / "context_sweep.py"), "run", "--unit", "chunk",
               "--singles", f"{CHUNK_SINGLES:g}", "--contexts", str(CONTEXT), "--lr", f"{SHIPPED_LR:g}",
               "--averages", "--seeds", str(seed), "--encoder", args.encoder, "--epochs", str(args.epochs),
               "--train-limit", str(args.train_limit), "--max-steps", str(args.max_steps)]
    subprocess.run(command, check=True)
    sweep = SimpleNamespace(dataset="conll", unit="chunk", singles=CHUNK_SINGLES, scheme="BILUO", lr=SHIPPED_LR,
                            averages=True)
    name = context_run_name(sweep, CONTEXT, seed, "ents")
    path = CONTEXT_OUT / f"{name}{run_suffix(run_settings(args))}.json"
    result = cached_run(path, run_settings(args), context_made_with, False)
    if result is None:
        raise SystemExit(f"{path}: scripts/train/context_sweep.py wrote no result")
    return {"system": "full", "learn_rate": SHIPPED_LR, "seed": seed, "train_seconds": result["train_seconds"],
            "train_docs": result["train_docs"], "dev": result["dev"], "source": str(path.relative_to(PROJECT))}


def run(args) -> None:
    settings = run_settings(args)
    label_out = OUT / args.new_label
    label_out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = scenario_data(args.new_label, read_docs(PROJECT / DATASETS["conll"][0], "doc", args.train_limit))
    dev_docs = read_docs(PROJECT / DATASETS["conll"][1], "doc")
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise SystemExit(f"--systems: unknown {unknown}; choose from {', '.join(SYSTEMS)}")
    lrs = [float(x) for x in args.lrs.split(",")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for system in [s for s in SYSTEMS if s in systems]:  # old before the fine-tunes
            for lr in lrs if system in FINE_TUNES else [SHIPPED_LR]:
                name = run_name(system, lr if system in FINE_TUNES else None, seed)
                path = label_out / f"{name}{run_suffix(settings)}.json"
                if cached_run(path, settings, scenario_made_with, args.force) is not None:
                    print(f"skip {name}: {path} exists (--force reruns)")
                    continue
                print(f"=== {args.new_label} {name}")
                if system == "full":
                    write_run(path, {**full_run(seed, args), "new_label": args.new_label}, settings)
                    continue
                workdir = TRAINING / args.new_label / f"{name}{run_suffix(settings)}"
                overrides: Dict[str, Any] = dict(schedule(data[system], "chunk", args.epochs, args.max_steps))
                if system == "old":
                    from common import resolve_encoder

                    config = context_config("conll", CONTEXT, lr, seed, "BILUO", averages=True)
                    overrides["paths.encoder"] = resolve_encoder(args.encoder)
                else:
                    old = old_model(args.new_label, seed, settings)
                    if not old.exists():
                        raise SystemExit(f"{old} is missing: run the system `old` first (--systems old,...)")
                    config = fine_tune_config(lr, seed, FINE_TUNES[system])
                    overrides["paths.old_pipeline"] = str(old)
                start_load = os.getloadavg()[0]
                nlp: Any
                nlp, seconds = train_spacy(config, workdir, data[system], dev_docs, overrides)
                result = {
                    "new_label": args.new_label, "system": system, "learn_rate": lr, "seed": seed,
                    "epochs": args.epochs, "max_steps": args.max_steps, "train_docs": len(data[system]),
                    "train_seconds": round(seconds, 1), "machine": machine(),
                    "load_average": [round(start_load, 2), round(os.getloadavg()[0], 2)],
                    "labels": list(nlp.get_pipe("token_classifier").labels),
                    "dev": evaluate(nlp, dev_docs, "ents"),
                }
                write_run(path, result, settings)
                print(json.dumps({v: round(100 * r["ents_f"], 2) for v, r in result["dev"].items()}))


def old_model(new_label: str, seed: int, settings: Dict[str, Any]) -> Path:
    return TRAINING / new_label / f"{run_name('old', None, seed)}{run_suffix(settings)}" / "output" / "model-last"


def scenario_made_with(result: Dict[str, Any]) -> Dict[str, Any]:
    return result.get("run_settings", {})


# Report ---------------------------------------------------------------------------------


def micro_f1(per_type: Dict[str, Dict[str, float]], types, n_gold: Dict[str, int]) -> float:
    """Micro-averaged F1 (0-100) over `types`, from their counts. Runs scored
    before common.score kept counts (the shipped model's run, system full)
    have them rebuilt from P and R and the dev set's gold counts `n_gold`."""
    tp = fp = fn = 0.0
    for t in types:
        d = per_type.get(t, {"p": 0.0, "r": 0.0, "tp": 0, "fp": 0, "fn": n_gold[t]})
        if "tp" in d:
            tp, fp, fn = tp + d["tp"], fp + d["fp"], fn + d["fn"]
        else:
            t_p = round(d["r"] * n_gold[t])
            tp, fn = tp + t_p, fn + n_gold[t] - t_p
            fp += round(t_p / d["p"]) - t_p if d["p"] else 0
    return 200.0 * tp / (2 * tp + fp + fn) if tp else 0.0


def mean(values: List[float]) -> float:
    return sum(values) / len(values)


def best_runs(results: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    """Per system, the runs (all seeds) of its best rate by mean dev F1 on documents."""
    by_rate: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in results:
        by_rate.setdefault((r["system"], r["learn_rate"]), []).append(r)
    best: Dict[str, List[Dict[str, Any]]] = {}
    for (system, _), runs in sorted(by_rate.items()):
        score = mean([r["dev"]["docs_gold_sentences"]["ents_f"] for r in runs])
        if system not in best or score > mean([r["dev"]["docs_gold_sentences"]["ents_f"] for r in best[system]]):
            best[system] = runs
    return best


def model_dir(result: Dict[str, Any], settings: Dict[str, Any]) -> Path:
    """Where a run's pipeline was saved."""
    if result["system"] == "full":
        name = Path(result["source"]).stem
        return PROJECT / "training" / "context" / name / "output" / "model-last"
    name = run_name(result["system"], result["learn_rate"] if result["system"] in FINE_TUNES else None,
                    result["seed"])
    return TRAINING / result["new_label"] / f"{name}{run_suffix(settings)}" / "output" / "model-last"


def link_best(new_label: str, best: Dict[str, List[Dict[str, Any]]], settings) -> Dict[str, Path]:
    """training/add_label/<label>/best/<system> -> the system's seed-0 model at
    its best rate (for scripts/reports/forgetting.py); replaced atomically."""
    links = {}
    folder = TRAINING / new_label / "best"  # the last report's (project.yml's add-label gates on it)
    folder.mkdir(parents=True, exist_ok=True)
    for system, runs in best.items():
        target = model_dir(min(runs, key=lambda r: r["seed"]), settings)
        if not target.exists():
            continue
        tmp = folder / f".{system}.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(target.resolve(), target_is_directory=True)
        os.replace(tmp, folder / system)
        links[system] = folder / system
    return links


def gate_verdicts(best: Dict[str, List[Dict[str, Any]]], old_types: List[str], max_drop: float) -> Dict[str, str]:
    """The forgetting gate's verdict (metrics.label_drops, as
    scoring.forgetting_gate and scripts/reports/forgetting.py decide it) on
    each fine-tuned system's seed-0 run against the old model's, from the
    per-type F1 of their runs on the dev documents read as raw text (the
    gate's own view: gold words, boundaries from the sentencizer)."""
    from spacy_tokclf.metrics import label_drops

    def f1(runs: List[Dict[str, Any]]) -> Dict[str, float]:
        per_type = min(runs, key=lambda r: r["seed"])["dev"]["docs_no_sentences"]["ents_per_type"]
        return {t: 100.0 * d["f"] for t, d in per_type.items()}

    if "old" not in best:
        return {}
    verdicts = {}
    for system in [s for s in FINE_TUNES if s in best]:
        dropped = label_drops(f1(best["old"]), f1(best[system]), old_types, max_drop)
        drops = ", ".join(f"{label} {-d:+.1f}" for label, _, _, d in dropped)
        verdicts[system] = f"fails ({drops})" if dropped else "passes"
        print(f"gate {system}: {verdicts[system]}")
    return verdicts


def report(args) -> None:
    settings = run_settings(args)
    label_out = OUT / args.new_label
    results = matching_runs(sorted(label_out.glob("*.json")), settings, scenario_made_with)
    if not results:
        raise SystemExit(f"no runs in {label_out} made with these settings: run `add_label.py run` first")
    best = best_runs(results)
    old_types = [t for t in TYPES if t != args.new_label]
    dev_docs = read_docs(PROJECT / DATASETS["conll"][1], "doc")
    n_gold = {t: sum(1 for d in dev_docs for e in d.ents if e.label_ == t) for t in TYPES}
    link_best(args.new_label, best, settings)
    verdicts = gate_verdicts(best, old_types, args.max_drop)

    def figures(runs: List[Dict[str, Any]], view: str = "docs_gold_sentences") -> Dict[str, float]:
        per_run = [r["dev"][view] for r in runs]
        out = {t: mean([100 * d["ents_per_type"].get(t, {}).get("f", 0.0) for d in per_run]) for t in TYPES}
        out["old"] = mean([micro_f1(d["ents_per_type"], old_types, n_gold) for d in per_run])
        out["all"] = mean([100 * d["ents_f"] for d in per_run])
        return out

    base = figures(best["old"])["old"] if "old" in best else None
    lines = settings_note(settings) + [
        f"# Adding {args.new_label} to a pipeline that knows {', '.join(old_types)} (CoNLL-2003 dev)",
        "",
        "F1 on dev documents (gold sentence boundaries), mean over the seeds; each fine-tune at its best rate of "
        f"`--lrs` by dev F1 over all types. Forgetting gate: `--max-drop {args.max_drop:g}` F1 points per old "
        "type, seed 0, against the old model. Made by `python scripts/train/add_label.py report` "
        "(docs/add-label.md).",
        "",
        f"| system | rate | seeds | {' | '.join(old_types)} | old types (micro) | change | {args.new_label} | all | "
        "all, lone sentences | training min | gate |",
        "| --- | ---: | --- | " + "---: | " * (len(old_types) + 6) + "--- |",
    ]
    for system in SYSTEMS:
        if system not in best:
            continue
        runs = best[system]
        f, lone = figures(runs), figures(runs, "sentences")
        change = f"{f['old'] - base:+.2f}" if base is not None and system != "old" else "-"
        lines.append(
            f"| {DESCRIPTIONS[system]} | {runs[0]['learn_rate']:g} | {','.join(str(r['seed']) for r in runs)} | "
            + " | ".join(f"{f[t]:.2f}" for t in old_types)
            + f" | {f['old']:.2f} | {change} | {f[args.new_label]:.2f} | {f['all']:.2f} | {lone['all']:.2f} | "
            f"{mean([r['train_seconds'] for r in runs]) / 60:.1f} | {verdicts.get(system, '-')} |"
        )
    text = "\n".join(lines) + "\n"
    tmp = label_out / f".table{run_suffix(settings)}.md.tmp"
    tmp.write_text(text, encoding="utf8")
    os.replace(tmp, label_out / f"table{run_suffix(settings)}.md")
    plot(best, figures, label_out / f"f1_per_label{run_suffix(settings)}.png", args.new_label)
    print(text)


def plot(best, figures, path: Path, new_label: str) -> None:
    """Per-type F1 of each system at its best rate, grouped by type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in SYSTEMS if s in best]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        f = figures(best[system])
        ax.bar([x + i * width for x in range(len(TYPES))], [f[t] for t in TYPES], width, label=DESCRIPTIONS[system])
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(TYPES))])
    ax.set_xticklabels([f"{t} (new)" if t == new_label else t for t in TYPES])
    ax.set_ylabel("dev F1")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--new-label", default="MISC", choices=TYPES)
        add_run_arguments(p)
    p_run = sub.choices["run"]
    p_run.add_argument("--systems", default=",".join(SYSTEMS))
    p_run.add_argument("--lrs", default="5e-5,1e-4,2e-4", help="the fine-tunes' rates")
    p_run.add_argument("--seeds", default="0")
    p_run.add_argument("--force", action="store_true")
    sub.choices["report"].add_argument("--max-drop", type=float, default=0.5,
                                       help="F1 points an old type may lose (the forgetting gate)")
    args = parser.parse_args()
    started = time.perf_counter()
    run(args) if args.command == "run" else report(args)
    print(f"{args.command} took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
