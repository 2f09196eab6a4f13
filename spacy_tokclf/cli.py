"""`python -m spacy tokclf-import`, `tokclf-export` and `tokclf-calibrate`.

Registered through the `spacy_cli` entry point group (setup.cfg): spaCy's CLI
loads every `spacy_cli` entry point before it parses the command line, and
importing this module adds the commands to spaCy's typer app.
"""
from pathlib import Path
from typing import Optional, cast

from spacy.cli._util import Arg, Opt, app
from wasabi import msg


@app.command("tokclf-import")
def import_cli(
    # fmt: off
    model_dir: Path = Arg(..., help="Directory of a fine-tuned Hugging Face token-classification model (config.json, weights, tokenizer)", exists=True, file_okay=False),
    output_dir: Path = Arg(..., help="Directory to write the spaCy pipeline to"),
    task: Optional[str] = Opt(None, "--task", "-t", help="'ents' (Doc.ents) or 'tag' (token.tag_); default: decided from the labels"),
    lang: str = Opt("en", "--lang", "-l", help="Language of the new blank pipeline"),
    name: str = Opt("token_classifier", "--name", "-n", help="Name of the component"),
    # fmt: on
):
    """Turn a Hugging Face token-classification model into a spaCy pipeline
    with a token_classifier that predicts as the model does. Train it further
    by sourcing it in a training config: [components.NAME] source = OUTPUT_DIR.
    """
    from .hf_import import from_huggingface

    try:
        nlp = from_huggingface(model_dir, lang=lang, name=name, task=task)
    except (OSError, ValueError) as err:
        msg.fail(f"Could not import '{model_dir}'", str(err), exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output_dir)
    from .pipeline import TokenClassifier

    pipe = cast(TokenClassifier, nlp.get_pipe(name))
    (task,) = pipe.tasks
    scheme = f", scheme {pipe.cfg['scheme']}" if task == "ents" else ""
    msg.good(
        f"Saved a pipeline with component '{name}' (task {task}{scheme}, "
        f"{len(pipe.labels)} labels) to {output_dir}",
        f"Load it with spacy.load('{output_dir}').",
    )


@app.command("tokclf-export")
def export_cli(
    # fmt: off
    pipeline_dir: Path = Arg(..., help="Directory of a trained spaCy pipeline with a token_classifier", exists=True, file_okay=False),
    output_dir: Path = Arg(..., help="Directory to write the Hugging Face model to"),
    component: Optional[str] = Opt(None, "--component", "-c", help="Name of the token_classifier; default: the only one"),
    task: Optional[str] = Opt(None, "--task", "-t", help="Task to export, 'ents' or 'tag'; default: 'ents' if the component has it"),
    allow_context: bool = Opt(False, "--allow-context", help="Export a component with model.tok2vec.context = 0 (each sentence read alone) anyway: the exported model reads each text whole"),
    # fmt: on
):
    """Write a trained token_classifier as a Hugging Face token-classification
    model that transformers.pipeline("token-classification", model=OUTPUT_DIR)
    loads. A checkpoint has no sentence boundaries, threshold or calibration:
    a component that reads each sentence alone (context = 0) is refused
    unless --allow-context is given; a larger context, a threshold and a
    calibration are left out with a warning that says what differs.
    """
    import spacy

    from .hf_export import to_huggingface

    nlp = spacy.load(pipeline_dir)
    try:
        to_huggingface(nlp, output_dir, component=component, task=task, allow_context=allow_context)
    except (OSError, ValueError) as err:
        msg.fail(f"Could not export '{pipeline_dir}'", str(err), exits=1)
    msg.good(
        f"Saved a Hugging Face token-classification model to {output_dir}",
        f"Load it with transformers.pipeline('token-classification', "
        f"model='{output_dir}', aggregation_strategy='first').",
    )


@app.command("tokclf-calibrate")
def calibrate_cli(
    # fmt: off
    pipeline_dir: Path = Arg(..., help="Directory of a trained spaCy pipeline with a token_classifier", exists=True, file_okay=False),
    dev_path: Path = Arg(..., help="Gold dev data (.spacy) to fit the calibration on; not the training data", exists=True),
    output_dir: Path = Arg(..., help="Directory to write the calibrated pipeline to"),
    component: Optional[str] = Opt(None, "--component", "-c", help="Name of the token_classifier; default: the only one"),
    method: str = Opt("auto", "--method", "-m", help="Entity score map: 'isotonic', 'platt', 'temperature' (none), or 'auto' (of the maps that can be fitted, the lowest cross-fitted entity ECE; the ECE it reports for auto is a nested cross-fitted estimate). A map the dev set cannot give (all entities right, equal scores, a flat or decreasing fit) is an error, and auto leaves it out"),
    report: Optional[Path] = Opt(None, "--report", "-r", help="Write the fitted calibration and the ECEs before and after to this JSON file"),
    # fmt: on
):
    """Calibrate a token_classifier's probabilities on a gold dev set: a
    temperature per task (token probabilities, doc._.tokclf_probs) and an
    increasing map of entity scores. Calibration never changes the decoded
    labels (the entities and tags that decoding finds). With a threshold set,
    which entities pass the threshold depends on the (calibrated) scores, so
    calibrating can change which entities are kept. The calibrated pipeline
    saves, loads and packages as usual.
    """
    from .calibrate_pipeline import calibrate_saved, summary_lines

    try:
        result = calibrate_saved(
            pipeline_dir, dev_path, output_dir, component=component, method=method,
            report_path=report,
        )
    except (OSError, ValueError) as err:
        msg.fail(f"Could not calibrate '{pipeline_dir}'", str(err), exits=1)
    temps = ", ".join(f"{t} {v:.3f}" for t, v in result["calibration"]["temperature"].items())
    msg.good(
        f"Saved the calibrated pipeline to {output_dir} (method {result['method']}, "
        f"temperature {temps}; fitted on {result['n_docs']} docs of {dev_path})",
        "\n".join(summary_lines(result)),
    )
