"""The project's train / evaluate / check-package steps for each config.

    python scripts/train/jobs.py train CONFIG --encoder ENCODER --epochs N [--max-steps N] [--unit doc|chunk|sentence]
    python scripts/train/jobs.py calibrate CONFIG [--unit doc|chunk|sentence] [--method auto|isotonic|platt|temperature]
    python scripts/train/jobs.py evaluate CONFIG [--unit doc|chunk|sentence]
    python scripts/train/jobs.py check-package CONFIG --name NAME --version VERSION

CONFIG names configs/CONFIG.cfg. `train` owns the schedule: it passes
spacy train the batches (32 sentences, or with --unit doc or chunk 32
sentences' worth of words), the steps of --epochs epochs (at most
--max-steps), evaluation at each epoch's end and the learning-rate schedule
(10 % linear warm-up, linear decay) sized to the training data, and prints
the equivalent `python -m spacy train` command line (scripts/common.py,
project_overrides). `convert` keeps whole documents. --unit chunk (the
default) trains on runs of 1 to 8 consecutive sentences of them, written
beside them as *.chunks.spacy, and evaluates on the documents: with
configs/ner.cfg's sentence context this scored as high as whole documents on
CoNLL-2003 dev documents and 2.4 F1 higher on lone sentences (README,
"Sentence context"). --unit doc trains and evaluates on the documents;
--unit sentence on one doc per sentence (*.sentences.spacy).
`calibrate` fits the calibration of training/CONFIG/model-best on the dev set
(spacy_tokclf.calibration) and saves training/CONFIG/model-calibrated, which
`evaluate` compares with model-best and `package` packages.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import PROJECT, UNITS, corpora, project_overrides, spacy_train_command


def train(args) -> None:
    """spacy train configs/CONFIG.cfg with this step's corpora, encoder and
    schedule (common.project_overrides): the step owns the schedule, the
    config's [training] values are those of a plain `spacy train` on whole
    documents, and the equivalent command line is printed."""
    from spacy.cli.train import train as spacy_train

    config_path = PROJECT / "configs" / f"{args.config}.cfg"
    output = PROJECT / "training" / args.config
    overrides = project_overrides(args.config, args.unit, args.encoder, args.epochs, args.max_steps)
    command = spacy_train_command(
        config_path.relative_to(PROJECT), output.relative_to(PROJECT), overrides
    )
    print(f"As a command: {command}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spacy_train(config_path, output, use_gpu=args.gpu_id, overrides=overrides)


def calibrate(args) -> None:
    """Fit the calibration of model-best on the dev set; save model-calibrated."""
    from spacy_tokclf.calibration import calibrate_saved, summary_lines

    _, dev_path = corpora(args.config, args.unit)
    model = PROJECT / "training" / args.config / "model-best"
    output = PROJECT / "training" / args.config / "model-calibrated"
    fit_report = PROJECT / "metrics" / f"{args.config}_calibration_fit.json"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = calibrate_saved(model, dev_path, output, method=args.method, report_path=fit_report)
    print(f"Calibrated {model.name} on {dev_path.name} (method {report['method']}): {output}")
    print("\n".join(summary_lines(report)))


def evaluate(args) -> None:
    from spacy.cli.evaluate import evaluate as spacy_evaluate

    _, dev_path = corpora(args.config, args.unit)
    out = PROJECT / "metrics" / f"{args.config}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    model = PROJECT / "training" / args.config / "model-best"
    spacy_evaluate(model, dev_path, output=out, use_gpu=args.gpu_id, silent=False)
    from reports.evaluation import write_report

    write_report(model, dev_path, out.parent, args.config)
    calibrated = PROJECT / "training" / args.config / "model-calibrated"
    if calibrated.exists():
        from reports.calibration import write_calibration_report

        write_calibration_report(
            model, calibrated, dev_path, out.parent, args.config,
            fit_report=out.parent / f"{args.config}_calibration_fit.json",
        )


def check_package(args) -> None:
    """Install the built package into a temporary folder and load it offline."""
    package_dir = PROJECT / "packages" / f"en_{args.name}-{args.version}"
    artifacts = sorted((package_dir / "dist").glob("*.tar.gz"))
    if not artifacts:
        sys.exit(f"No package archive in {package_dir / 'dist'}: run `spacy package` first.")
    with tempfile.TemporaryDirectory() as target:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--no-build-isolation", "--target", target, str(artifacts[-1])],
            check=True,
        )
        code = (
            "import json, spacy\n"
            f"nlp = spacy.load('en_{args.name}')\n"
            "doc = nlp('Angela Merkel visited the European Commission in Brussels.')\n"
            "print(json.dumps({'ents': [(e.text, e.label_) for e in doc.ents],"
            " 'tags': [t.tag_ for t in doc]}))\n"
        )
        env = dict(os.environ, PYTHONPATH=target, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
    print(f"en_{args.name} installs and loads offline: {json.loads(result.stdout.splitlines()[-1])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("train")
    p.add_argument("config")
    p.add_argument("--encoder", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--unit", choices=UNITS, default="chunk")
    p.set_defaults(func=train)
    p = sub.add_parser("calibrate")
    p.add_argument("config")
    p.add_argument("--unit", choices=UNITS, default="chunk")
    p.add_argument("--method", choices=["auto", "isotonic", "platt", "temperature"], default="auto")
    p.set_defaults(func=calibrate)
    p = sub.add_parser("evaluate")
    p.add_argument("config")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--unit", choices=UNITS, default="chunk")
    p.set_defaults(func=evaluate)
    p = sub.add_parser("check-package")
    p.add_argument("config")
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True)
    p.set_defaults(func=check_package)
    args = parser.parse_args()
    args.func(args)
