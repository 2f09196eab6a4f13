"""Error and warning texts of spacy_tokclf, in one place (spaCy's errors.py
pattern), so that their wording stays consistent and tests can assert on them.

Prefix rule: every message starts with "[<name>] ", where <name> is the
component's name when the code that raises knows it (the pipe, the Hugging
Face import/export, calibration), and "spacy-tokclf" otherwise (the encoder
layer, which several components may share). `error()` adds the prefix.

Texts are `str.format` templates: `{field}` is filled in, `{{` and `}}` are
literal braces (config and add_pipe examples).
"""
from typing import Any

PACKAGE = "spacy-tokclf"


def error(template: str, name: str = PACKAGE, **fields: Any) -> str:
    """The message of `template` with its fields (and `{name}`) filled in,
    prefixed by "[name] ": the component's name, or the package's when it is
    unknown."""
    name = name or PACKAGE
    return f"[{name}] " + template.format(name=name, **fields)


class Errors:
    # Settings of the component (pipeline.py, labels.py)
    INVALID_TASKS = (
        "Invalid setting `tasks = {tasks}`. Use a non-empty list of distinct tasks "
        'from {known}, e.g. config={{"tasks": ["ents", "tag"]}} in '
        'nlp.add_pipe("token_classifier", ...), or in a config file:\n'
        '    [components.{name}]\n    tasks = ["ents"]'
    )
    INVALID_SCHEME = (
        "Invalid setting `scheme = {scheme!r}`. Use one of {known}, e.g. in a config "
        'file:\n    [components.{name}]\n    scheme = "BIO"'
    )
    INVALID_THRESHOLD = (
        "Invalid setting `threshold = {threshold!r}`. Use null (keep every entity) or "
        "a score in [0, 1]; entities scored under it are dropped. In a config file:\n"
        "    [components.{name}]\n    threshold = 0.5"
    )
    NAME_THE_TASK = (
        "This component has tasks {tasks}: name the task, e.g. "
        'add_label("{label}", task="{first}").'
    )
    UNKNOWN_TASK = "Unknown task '{task}'; tasks are {tasks}."
    LABEL_AFTER_INITIALIZE = (
        "Cannot add label '{label}' after the component was initialized. Add it "
        "before `nlp.initialize()`, or list it in "
        "`[initialize.components.{name}.labels]`."
    )
    # initialize
    EMPTY_CORPUS = (
        "initialize got no training examples: the corpus is empty. Point "
        "`[paths.train]` (read by `[corpora.train]`) at a .spacy file or directory "
        "that holds annotated docs, e.g. `python -m spacy train config.cfg "
        "--paths.train ./train.spacy`; `python -m spacy debug data config.cfg` shows "
        "what the corpus holds. From Python, pass a function that returns the "
        "examples: nlp.initialize(lambda: examples)."
    )
    LABELS_NOT_GIVEN = (
        "The training data has {task} labels that are not in the `labels` given to "
        "initialize: {unknown}. Add them to the labels file "
        "(`[initialize.components.{name}.labels]`), or regenerate it with "
        "`spacy init labels`."
    )
    TASK_WITHOUT_GOLD = (
        "Task '{task}' is set in `tasks`, but no training example has gold {what}. "
        "Remove '{task}' from `[components.{name}] tasks`, or train on annotated data."
    )
    HEAD_SIZE_CHANGED = (
        "This component was already initialized with {n_before} output labels; the "
        "data or `labels` now give {n_now} ({labels}). A trained head cannot change "
        'size: add a new component (nlp.remove_pipe("{name}"), then '
        'nlp.add_pipe("token_classifier", ...)) and initialize that one.'
    )
    LABELS_MISSING_TASK = (
        "The `labels` given to initialize have no entry for task(s) {missing}. Give a "
        'dict of task -> labels, e.g. {{"ents": ["PER", "LOC"], "tag": ["NN", "VB"]}}, '
        "as written by `spacy init labels`."
    )
    LABELS_NOT_A_DICT = (
        "With tasks {tasks}, `labels` must be a dict of task -> labels, e.g. "
        '{{"ents": [...], "tag": [...]}}.'
    )
    # Loading a saved component
    CFG_NOT_VALID = (
        "{source} is not valid: {problem}. Copy the pipeline directory again from "
        "where it was saved, or calibrate it again (python -m spacy tokclf-calibrate)."
    )
    CFG_NO_SETTINGS = (
        '{source} does not hold valid settings: it needs "tasks" (distinct names from '
        '{tasks}), "scheme" (one of {schemes}) and "labels" (task -> list of labels), '
        "but holds {cfg}. Copy the pipeline directory again from where it was saved, "
        "or save the pipeline again with nlp.to_disk()."
    )
    CFG_MODEL_MISMATCH = (
        "{source} does not match the saved model: its labels {labels} make {n_labels} "
        'outputs (scheme "{scheme}"), but the model has {n_model}. The cfg was edited '
        "or comes from another pipeline: copy the pipeline directory again from where "
        "it was saved, or save it again with nlp.to_disk()."
    )
    CFG_FILE_SHAPE = 'it is not a JSON object with "tasks", "scheme" and "labels"'
    FILE_MISSING = (
        "Cannot load the component: the file {path} is missing. A pipeline saved with "
        "nlp.to_disk() has it: copy the whole pipeline directory again, or save the "
        "pipeline again."
    )
    FILE_UNREADABLE = (
        "Cannot load the component from the file {path}: {error}\nThe file is "
        "truncated or corrupted, or was not written for this component's config. Copy "
        "the pipeline directory again from where it was saved, or save the pipeline "
        "again with nlp.to_disk()."
    )
    THRESHOLD_IN_CFG = "threshold must be null or a number in [0, 1], not {threshold!r}"

    # Hugging Face labels (labels.read_hf_labels)
    HF_UNKNOWN_TASK = (
        'Unknown task {task!r}. Use "ents" (entities, Doc.ents), "tag" (token.tag_), '
        "or leave it unset (None / no --task) to decide from the model's labels."
    )
    HF_DUPLICATE_LABELS = (
        "The model's id2label names some labels twice: {duplicates}. Give each label "
        "id its own name in config.json (`id2label`) before importing."
    )
    HF_PLACEHOLDER_LABELS = (
        "The model's labels are transformers' placeholders ({first}, ...): its "
        "config.json has no `id2label`. Write the real label names into `id2label` "
        "and `label2id` in config.json, or import them as they are with "
        'task="tag" (CLI: --task tag).'
    )
    HF_MIXED_LABELS = (
        "Mixed labels: {prefixed} have an entity scheme prefix (B-, I-, E-, S-, L-, "
        'U-), but {plain} have none. Entity labels must all be "O" or prefix + type. '
        'Import every label as a tag with task="tag" (CLI: --task tag), or fix the '
        "label names in config.json (`id2label`, `label2id`)."
    )
    HF_PLAIN_ENTITY_LABELS = (
        'task="ents" needs entity labels ("O" or a B-/I-/E-/S-/L-/U- prefix + type), '
        'but {plain} have no prefix. Import them as tags with task="tag" '
        "(CLI: --task tag)."
    )
    HF_MIXED_SCHEMES = (
        "Unknown scheme: the labels mix BIOES (E-, S-) and BILOU (L-, U-) prefixes "
        "({prefixes}). Rename them to one scheme in config.json (`id2label`, "
        "`label2id`)."
    )
    HF_SAME_LABEL_TWICE = (
        "Labels '{first}' and '{second}' are the same label ({key}) written two ways. "
        "Keep one of them in config.json (`id2label`, `label2id`)."
    )
    HF_NO_ENTITY_LABELS = 'The model has no entity labels, only "O": there is nothing to import.'


class Warnings:
    UNSEEN_GOLD_LABEL = (
        "Gold label '{label}' (task '{task}') was not seen at initialize; its tokens "
        "are treated as missing annotation. Add it to "
        "`[initialize.components.{name}.labels]` or re-run initialize on data that "
        "contains it."
    )
