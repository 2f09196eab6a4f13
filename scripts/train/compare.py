"""token_classifier and its peers, trained and scored side by side.

    python scripts/train/compare.py run --dataset conll --unit doc --systems tokclf,spacy_trf
    python scripts/train/compare.py run --dataset conll --unit sentence --systems tokclf,hf_trainer,spacy_trf
    python scripts/train/compare.py report [--encoder, --epochs, --train-limit, --max-steps of the runs]

Every system gets the same training data, the same encoder, the same number of
epochs and the same batches: 32 sentences (with --unit doc: whole documents,
batched by words, 32 sentences' worth of words per batch), with 10 % linear
warm-up and linear decay. The peers use their recipes' learning rate, 5e-5
(run_ner's default; spaCy's quickstart transformer config); token_classifier
uses its config's (configs/ner.cfg: 1e-4; configs/tagger.cfg: 5e-5). Every
system is scored by the same function on the gold tokens of the dev set, using
its weights after the last step:

- tokclf: this package's `token_classifier` (configs/ner.cfg, configs/tagger.cfg);
- hf_trainer: transformers' AutoModelForTokenClassification with the Trainer, as
  in transformers' run_ner example (label on the first sub-token of each word);
- spacy_trf: spaCy's quickstart config for a transformer: spacy-transformers
  `transformer` + spaCy's transition-based `ner` (CoNLL) or `tagger` (EWT).

--unit doc trains and predicts on whole documents (CoNLL -DOCSTART-, CoNLL-U
# newdoc), so an encoder sees context across sentences; --unit sentence makes
one doc per sentence. The run_ner recipe works one sentence at a time, so
hf_trainer only runs with --unit sentence.

Each run writes results/compare/<dataset>_<system>_<unit>[_...].json and is
skipped when that file exists and was made with the same --encoder,
--epochs, --train-limit and --max-steps (--force runs it again), so a long
comparison can be resumed. Those settings are recorded in the file and,
where not at their defaults, in its name (scripts/train/run_cache.py). `report`
builds results/compare/table.md from the runs made with the settings it is
given (the defaults: full data, all epochs), so a smoke run never enters it. The systems are
in scripts/train/compare_systems.py; data, batches, schedule and scoring in
scripts/common.py.
"""
import argparse
import json
import os
import sys
from pathlib import Path

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
from train.run_cache import compare_made_with as made_with

UNITS = ("doc", "sentence")


def run(args) -> None:
    train_path, dev_path, task, _ = DATASETS[args.dataset]
    for path in (train_path, dev_path):
        if not (PROJECT / path).exists():
            sys.exit(f"{path} is missing: run `spacy project run convert` first.")
    systems = args.systems.split(",")
    for system in systems:
        if system not in RUNNERS:
            sys.exit(f"Unknown system '{system}': use {', '.join(SYSTEMS)}.")
    if args.unit == "doc" and "hf_trainer" in systems:
        sys.exit("hf_trainer follows the run_ner recipe, one sentence at a time: run it with --unit sentence.")
    train_docs = read_docs(PROJECT / train_path, args.unit, args.train_limit)
    dev_docs = read_docs(PROJECT / dev_path, args.unit)
    _, steps_per_epoch = batching(train_docs, args.unit)
    encoder = resolve_encoder(args.encoder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out_dir = PROJECT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    gold = [gold_labels(d, task) for d in dev_docs]
    settings = run_settings(args)
    for system in systems:
        name = f"{args.dataset}_{system}_{args.unit}{run_suffix(settings)}"
        result_path = out_dir / f"{name}.json"
        if cached_run(result_path, settings, made_with, args.force) is not None:
            print(f"skip {system} on {args.dataset} ({args.unit}): {result_path} exists (--force reruns)")
            continue
        print(
            f"=== {system} on {args.dataset}: {len(train_docs)} {args.unit} docs, "
            f"{n_sentences(train_docs)} sentences, {args.epochs} epochs"
        )
        load_before = os.getloadavg()[0]
        output, seconds = RUNNERS[system](
            args.dataset, args.unit, encoder, train_docs, dev_docs, args.epochs, args.max_steps,
            PROJECT / "training" / "compare" / name,
        )
        predicted = output if isinstance(output, list) else predict_spacy(output, dev_docs, task)
        epochs_run = args.epochs
        if args.max_steps:
            epochs_run = min(args.epochs, args.max_steps / steps_per_epoch)
        result = {
            "system": system,
            "dataset": args.dataset,
            "unit": args.unit,
            "encoder": args.encoder,
            "train_docs": len(train_docs),
            "train_sentences": n_sentences(train_docs),
            "dev_docs": len(dev_docs),
            "epochs": epochs_run,
            "train_seconds": seconds,
            "seconds_per_epoch": seconds / epochs_run,
            "machine": machine(),
            # 1-minute load average before and after training: a busy machine
            # makes s/epoch meaningless, and the file says so.
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **score(gold, predicted, task),
        }
        result = write_run(result_path, result, settings)
        print(json.dumps({k: v for k, v in result.items() if k != "ents_per_type"}))
    report(args)


def report(args) -> None:
    out_dir = PROJECT / args.out
    settings = run_settings(args)
    results = {}
    for data in matching_runs(sorted(out_dir.glob("*_*.json")), settings, made_with):
        results[(data["dataset"], data["system"], data.get("unit", "sentence"))] = data
    pct = lambda x: f"{100 * x:.1f}"
    pct2 = lambda x: f"{100 * x:.2f}"
    lines = settings_note(settings) + [
        "| system | unit | CoNLL P | CoNLL R | CoNLL F1 | PER | LOC | ORG | MISC | s/epoch CoNLL "
        "| EWT tag acc | s/epoch EWT |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for system in SYSTEMS:
        for unit in UNITS:
            c, e = results.get(("conll", system, unit)), results.get(("ewt", system, unit))
            if not (c or e):
                continue
            row = [system, f"{unit}s"]
            if c:
                types = c["ents_per_type"]
                row += [pct(c["ents_p"]), pct(c["ents_r"]), f"**{pct2(c['ents_f'])}**"]
                row += [pct(types[t]["f"]) if t in types else "-" for t in ("PER", "LOC", "ORG", "MISC")]
                row.append(f"{c['seconds_per_epoch']:.0f}")
            else:
                row += ["-"] * 8
            row += [f"**{pct2(e['tag_acc'])}**", f"{e['seconds_per_epoch']:.0f}"] if e else ["-", "-"]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(machines_footer(r["machine"] for r in results.values()))
    table = "\n".join(lines) + "\n"
    (out_dir / f"table{run_suffix(settings)}.md").write_text(table, encoding="utf8")
    print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("run")
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--unit", choices=UNITS, default="doc", help="whole documents or one doc per sentence")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    add_run_arguments(p)
    p.add_argument("--out", default="results/compare")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=run)
    p = sub.add_parser("report")
    p.add_argument("--out", default="results/compare")
    add_run_arguments(p)  # the table reads only the runs made with these
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)
