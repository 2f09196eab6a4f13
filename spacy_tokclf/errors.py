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
    # Teaching a trained component new labels (loss.make_extend_labels)
    EXTEND_INVALID_WEIGHT = (
        "Invalid setting `distill_weight = {weight!r}` of spacy-tokclf.extend_labels.v1. "
        "Use a number >= 0: the weight of the distillation toward the old model on tokens "
        'the new data leaves as "O" or unannotated (0: no teacher, the usual loss). In a '
        "config file:\n    [initialize.after_init]\n"
        '    @callbacks = "spacy-tokclf.extend_labels.v1"\n    distill_weight = 1.0'
    )
    EXTEND_NOT_TOKEN_CLASSIFIER = (
        "spacy-tokclf.extend_labels.v1 extends a token_classifier, but the component "
        "'{name}' is a {kind}. Set `component` in [initialize.after_init] to the name of "
        "the token_classifier."
    )
    EXTEND_NOT_TRAINED = (
        "spacy-tokclf.extend_labels.v1 teaches a trained component new labels, but this "
        "one has no trained head. Source it from the trained pipeline:\n"
        '    [components.{name}]\n    source = "path/to/old_pipeline"\n'
        "or, to train from scratch, list all labels in the data and drop the callback."
    )
    EXTEND_NO_LABELS = (
        "spacy-tokclf.extend_labels.v1 needs the labels to add: set `labels` (e.g. "
        'labels = ["MISC"]) or a `corpus` to read them from, e.g.\n'
        "    [initialize.after_init.corpus]\n"
        '    @readers = "spacy.Corpus.v1"\n    path = ${{paths.train}}'
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
    # A loading config that changes what the trained head was built for (saved.py);
    # saved/given: JSON values, as in a config file.
    SETTING_FIXED_AT_TRAINING = (
        "The saved component was trained with `{setting} = {saved}`, but the config it "
        "is loaded with sets `{setting} = {given}`. {why} Load it without overriding "
        "`{setting}`, or set it back, e.g.\n"
        '    spacy.load(path, config={{"components": {{"{name}": {{"{setting}": {saved}}}}}}})'
        "\nor, in a config file:\n    [components.{name}]\n    {setting} = {saved}\n"
        "To use `{setting} = {given}`, train a new component with it."
    )
    TASKS_FIXED = "The head has one set of outputs per task it was trained for."
    SCHEME_FIXED = "The head's entity outputs are this scheme's labels."
    HEAD_SIZE_FIXED_AT_TRAINING = (
        "The saved component's head has {n_saved} outputs (its labels {labels}, scheme "
        '"{scheme}"), but the config it is loaded with sets `model.nO = {n_given}`. The '
        "labels cannot change after training. Set `model.nO` to null (the head is sized "
        "from the saved labels), e.g.\n"
        '    spacy.load(path, config={{"components": {{"{name}": {{"model": {{"nO": None}}}}}}}})'
        "\nor, in a config file:\n    [components.{name}.model]\n    nO = null\n"
        "To use other labels, train a new component."
    )

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
    # Hugging Face import/export (hf/importing.py, hf/exporting.py)
    HF_NOT_A_MODEL_DIR = (
        "'{model_dir}' is not a directory with a Hugging Face model (no config.json). "
        "Import from a local directory written by `model.save_pretrained(DIR)` and "
        "`tokenizer.save_pretrained(DIR)` (for a model on the hub: "
        "`huggingface-cli download NAME --local-dir DIR`)."
    )
    HF_NAME_TAKEN = (
        "The pipeline already has a component '{component}'. Choose another name "
        "(name=..., CLI: --name)."
    )
    HF_IMPORT_POOLING = (
        '`model.tok2vec.pooling = "{pooling}"`: the imported head was trained on each '
        "word's first piece, so the component predicts differently from the model "
        'until it is trained. Leave pooling at "first" to predict as the model does.'
    )
    HF_MISSING_ROWS = (
        "The model has no label for {labels}: the component is never going to predict "
        "them (their head rows have bias {bias:g}), and further training barely moves "
        "them."
    )
    HF_EXPORT_TASK = (
        "Cannot export task '{task}': the component's tasks are {tasks}. Pick one of "
        "them (task=..., CLI: --task)."
    )
    HF_EXPORT_LISTENER = (
        "Only a component with its own encoder (`spacy-tokclf.HFEncoder.v1`) can be "
        "exported: this one's `model.tok2vec` is `{tok2vec}` (e.g. a listener of a "
        "shared `transformer` component), whose weights and pooling live elsewhere."
    )
    HF_EXPORT_UNTRAINED = (
        "The component is not trained or initialized yet: nothing to export. Train it "
        "(nlp.initialize() and nlp.update(), or spacy train), or load a trained "
        "pipeline with spacy.load()."
    )
    HF_EXPORT_QUANTIZED = (
        "This pipeline's encoder is quantized to int8 (spacy_tokclf.quantize_encoder), "
        "and a quantized pipeline cannot be exported: Hugging Face models hold fp32 "
        "weights. Export the fp32 pipeline (the one saved before quantize_encoder) "
        "instead."
    )
    HF_EXPORT_POOLING = (
        'Cannot export faithfully: `model.tok2vec.pooling` is "{pooling}", but a '
        "Hugging Face token-classification model labels each word by its first word "
        'piece. Train the component with pooling = "first":\n'
        '    [components.{name}.model.tok2vec]\n    pooling = "first"'
    )
    HF_EXPORT_BIOES = (
        "The component's scheme is BILUO: its labels are exported as BIOES (B-, I-, "
        "E-, S-). transformers' token-classification pipeline groups words into "
        'entities by B-/I- only, so with aggregation_strategy other than "none" it '
        "splits each E- word off its entity and merges adjacent S- words of one type. "
        'Decode the BIOES labels yourself, or train with scheme = "BIO" for an export '
        "that the pipeline decodes."
    )
    HF_EXPORT_CONTEXT_ALONE = (
        "Cannot export faithfully: `model.tok2vec.context = 0`, so the component reads "
        "each sentence of a doc with sentence boundaries alone, while the exported "
        "model has no sentence boundaries and reads each text whole: on a text of "
        "several sentences its labels can differ from the component's. To export "
        "anyway (the exported model computes what the component computes on docs "
        "without sentence boundaries), pass allow_context=True (CLI: "
        "--allow-context). To predict with the component as the export will, load it "
        "with the context off:\n"
        '    spacy.load(path, config={{"components": {{"{name}": {{"model": {{"tok2vec": '
        '{{"context": None}}}}}}}}}})'
    )
    HF_EXPORT_CONTEXT_ALLOWED = (
        "`model.tok2vec.context = 0` is not exported (allow_context=True): the exported "
        "model reads each text whole, as the component reads a doc without sentence "
        "boundaries; a doc with sentence boundaries the component reads sentence by "
        "sentence, each alone, so on a text of several sentences labels can differ."
    )
    HF_EXPORT_CONTEXT = (
        "`model.tok2vec.context = {context}` is not exported: the component reads a doc "
        "with sentence boundaries sentence by sentence, with up to {context} word pieces "
        "of its neighbours on each side; the exported model has no sentence boundaries. "
        "On a text of at most `window` ({window}) word pieces the two read the same: the "
        "component reads all its sentences together in one window, as the exported model "
        "reads the text. On a longer text the component's windows end at sentence "
        "boundaries, while transformers' pipeline reads the text in one piece, truncated "
        "at the model's maximum length, so labels can differ there."
    )
    HF_EXPORT_THRESHOLD = (
        "`threshold = {threshold}` is not exported (a Hugging Face checkpoint has no place "
        "for it): transformers' pipeline returns every entity, also those the component "
        "drops for scoring under {threshold}, and its scores are its own (with "
        'aggregation_strategy="first": the mean over the entity\'s words of the '
        "softmax probability of each word's label at its first word piece, "
        "uncalibrated), not the component's entity scores, so filtering them at "
        "{threshold} does not keep the same entities."
    )
    HF_EXPORT_CALIBRATION = (
        "The component's calibration (method '{method}') is not exported: the exported "
        "model's logits are the uncalibrated scores, and transformers' pipeline scores "
        "entities with them."
    )
    HF_CONFIG_UNREADABLE = "transformers cannot read the config.json in '{model_dir}': {err}"
    HF_NOT_TOKEN_CLASSIFICATION = (
        "'{model_dir}' holds a {architectures}, not a model fine-tuned for token "
        "classification (*ForTokenClassification). To train a token_classifier on "
        "this encoder, name it as the encoder instead:\n"
        '    nlp.add_pipe("token_classifier", config={{"model": {{"tok2vec": '
        '{{"name": "{model_dir}"}}}}}})'
    )
    HF_NO_TOKEN_CLASSIFICATION_MODEL = (
        "transformers has no token-classification model for '{model_dir}' (model type "
        "'{model_type}'): {err}"
    )
    HF_MISSING_WEIGHTS = (
        "'{model_dir}' lacks weights of its token-classification model ({missing}): "
        "it is not a fine-tuned token classifier, and these weights would be random. "
        "Import a checkpoint saved from a trained *ForTokenClassification model."
    )
    HF_HEAD_NOT_LINEAR = (
        "{model_class} has no plain Linear `classifier` from the encoder's hidden "
        "states ({hidden_size}) to its {n_labels} labels (found: {found}). "
        "token_classifier can hold only such a head (as in BERT, RoBERTa, XLM-R, "
        "DeBERTa, ELECTRA or DistilBERT *ForTokenClassification models)."
    )
    HF_IMPORT_SETS = (
        "The import decides {keys} from the model; leave them out of `config`. Choose "
        'the task with task="ents" or "tag".'
    )
    HF_ENCODER_DOES_NOT_FIT = (
        "The encoder of {model_class} does not fit {encoder_class} (weights {keys} "
        "have no place in it), so it cannot be imported."
    )
    HF_NOT_A_PIPELINE = (
        "Expected a spaCy pipeline (Language) or a token_classifier, not {found}. Load "
        "a saved pipeline with spacy.load(DIR)."
    )
    HF_NO_SUCH_COMPONENT = (
        "The pipeline has no component '{component}'; its components are {components}."
    )
    HF_NOT_A_TOKEN_CLASSIFIER = "Component '{component}' is a {found}, not a token_classifier."
    HF_WHICH_COMPONENT = (
        "The pipeline has {n} token_classifier components ({found}): name the one to "
        "export (component=..., CLI: --component)."
    )
    HF_EXPORT_NO_MODEL_TYPE = (
        "transformers has no token-classification model for the encoder's model type "
        "'{model_type}', so it cannot be exported: {err}"
    )
    HF_EXPORT_NOT_ENCODER_PLUS_LINEAR = (
        "{model_class} is not the encoder plus one Linear `classifier` (weights it "
        "would lack: {missing}), so the component's head cannot be written into it."
    )
    HF_IMPORT_HEAD_DIFFERS = (
        "{model_class}'s logits are not its `classifier` applied to its encoder's last "
        "hidden states: it has a head that token_classifier cannot hold "
        "(token_classifier imports models whose head is one Linear layer on the "
        "encoder, as BERT, RoBERTa, XLM-R, DeBERTa, ELECTRA or DistilBERT "
        "*ForTokenClassification models are)"
    )
    HF_EXPORT_DIFFERS = "the exported {model_class} does not compute what the component computes"
    HF_NOT_FAITHFUL = (
        "Cannot {direction} faithfully: {what}. Largest difference between the label "
        "scores on a sample sentence: {diff:.3g}."
    )


    # Optional dependencies (extras.py)
    LISTENER_EXTRA_MISSING = (
        "{what} needs spacy-transformers, which is not installed. Install the listener "
        "extra:\n    {install}\nIt keeps transformers below 4.53.3, as "
        "spacy-transformers 1.4 requires. Without it, give token_classifier its own "
        'encoder (`@architectures = "spacy-tokclf.HFEncoder.v1"`, as in '
        "configs/ner.cfg), which runs on the current transformers."
    )
    # metrics.py
    METRICS_LENGTHS_DIFFER = "{n_conf} confidences but {n_right} correct flags"
    METRICS_WHERE_DIFFERS = "{n_conf} confidences but {n_where} flags in `where`"


class Warnings:
    UNSEEN_GOLD_LABEL = (
        "Gold label '{label}' (task '{task}') was not seen at initialize; its tokens "
        "are treated as missing annotation. Add it to "
        "`[initialize.components.{name}.labels]` or re-run initialize on data that "
        "contains it."
    )
    # saved.py: a threshold set on the live component (pipe.cfg["threshold"] = ...)
    # is not in nlp.config, so the config's value is used at load.
    SAVED_THRESHOLD_NOT_IN_CONFIG = (
        "The saved component's threshold ({saved}) was set on the component "
        "(pipe.cfg) and is not in its config, which sets `threshold = {given}`: the "
        "config's value is used, as nlp.config shows. To use {saved}, load with\n"
        '    spacy.load(path, config={{"components": {{"{name}": {{"threshold": {saved_py}}}}}}})'
        "\nand save the pipeline again to keep it."
    )
    # An import path kept after the package was laid out by role (issue 27).
    MOVED_MODULE = (
        "`{old}` moved to `{new}`: import from `{new}` (the old path is kept only "
        "for code written before the move)."
    )


class ScaleErrors:
    """tokclf-annotate and tokclf-train-ddp: annotate/, distributed/, cli.py.
    (A row that cannot be annotated is not an error of the run: its reason is
    output data, written by annotate/input.py.)"""

    # Data-parallel training
    RANKS_DIFFER = (
        "The processes' parameters differ (largest checksum difference {diff:g}): "
        "every process must run the same config, code and library versions. Check "
        "that all ranks read the same corpus and encoder files."
    )
    NO_RAY_TRAIN = (
        "Training on Ray needs Ray Train, which is not installed ({error}). Install "
        'the ray extra:\n    pip install "spacy-tokclf[ray]"'
    )
    # Annotation
    NO_INPUT = "The input {path} does not exist."
    EMPTY_INPUT_DIR = "The input directory {path} holds no files."
    UNKNOWN_OUTPUT_FORMAT = "Unknown --format '{fmt}': use one of {formats}."
    OUTPUT_FORMAT_FROM_NAME = (
        "Cannot tell the output format from the name '{output}': end it in .jsonl, "
        ".parquet or .spacy (one file), or give --format jsonl|parquet to write a "
        "directory of files."
    )
    NO_RAY_DATA = (
        "--engine ray needs Ray Data, which is not installed ({error}). Install the "
        'ray extra:\n    pip install "spacy-tokclf[ray]"'
    )
    RAY_DOCBIN = (
        "DocBin output (.spacy) is written by --engine local only: the docs are "
        "merged in one process. Use .jsonl or .parquet with --engine ray."
    )
    # Annotation: where the output goes, --resume (annotate/resume.py)
    OUTPUT_IS_INPUT = (
        "The output {output} is the input {input}, or holds it (symlinks followed): "
        "writing it would destroy the corpus. Give another OUTPUT path."
    )
    OUTPUT_IN_INPUT = (
        "The output {output} lies inside the input directory {input}: the next run "
        "would read it as input. Give an OUTPUT path outside {input}."
    )
    RESUMING = "--resume: keeping the {parts} finished parts in {partial}."
    NOTHING_TO_RESUME = "--resume: no partial output ({partial}) to resume; starting from the beginning."
    PARTIAL_REPLACED = (
        "Replacing the partial output of an earlier run ({partial}); give --resume to "
        "continue it instead."
    )
    RESUME_MISMATCH = (
        "--resume: the partial output {partial} was written with another {setting} "
        "({was}; this run: {now}). Run with the same settings to continue it, or "
        "without --resume to start over (the partial output is then replaced)."
    )
    PARTS_MISSING = (
        "The run ended without a part for every unit of the input (missing: {missing}; "
        "unexpected: {extra}); the output was not written. Rerun with --resume to "
        "finish it ({partial} keeps the finished parts)."
    )
    DUPLICATE_IDS = (
        "{n} rows repeat the id of an earlier row of the same input file, e.g. "
        "{examples}. Every row still has its own output row, in input order; give "
        "each row a unique id (--id-field) to join the output back to the input by id."
    )
    # Command-line options
    UNKNOWN_ENGINE = "Unknown --engine '{engine}': use 'local' or 'ray'."
    WORKERS_BATCH_SIZE = "--workers, --batch-size and --checkpoint-rows must be at least 1."
    GPU_ONE_WORKER = "--gpu-id runs one process: leave --workers at 1."


class OptimizerErrors:
    """spacy-tokclf.Adam.v1: optimizers.py."""

    INVALID_SCALE = (
        "Invalid setting `{setting} = {value!r}`. Use {allowed}; 1.0 is plain Adam. "
        'In a config file:\n    [training.optimizer]\n    @optimizers = "spacy-tokclf.Adam.v1"\n'
        "    {setting} = {example}"
    )


class CalibrationErrors:
    """Calibration: calibrated.py, calibration/.
    The BAD_* texts are what check_calibration finds wrong with a stored
    calibration: the {problem} of Errors.CFG_NOT_VALID, so they have no prefix
    of their own (use str.format)."""

    UNKNOWN_ENTITY_MAP = "unknown entity map method {method!r}"
    BAD_NOT_OBJECT = "calibration is not a JSON object"
    BAD_TEMPERATURE = "calibration.temperature must map tasks {tasks} to positive numbers"
    BAD_MAP_METHOD = "calibration.entity_map.method must be one of {methods}"
    BAD_ISOTONIC = (
        "calibration.entity_map x and y must be equal-length increasing lists of numbers"
    )
    BAD_PLATT = "calibration.entity_map needs numbers a and b (platt)"
    BAD_ISOTONIC_RANGE = "calibration.entity_map y values must be probabilities in [0, 1]"
    BAD_FLAT_MAP = (
        "calibration.entity_map is flat: it gives every entity the same score, which "
        "says nothing about which entities are right"
    )
    BAD_PLATT_SLOPE = (
        "calibration.entity_map slope a = {a} is outside [{low}, {high}]: the map is "
        "flat or decreasing (a <= {low}) or unbounded"
    )
    # Why an entity map was not fitted (calibration/fit.py, MapRefused).
    REFUSED_NO_ENTITIES = "there are no predicted entities to fit it on"
    REFUSED_ONE_CLASS = (
        "all {n} predicted entities are {which}: nothing shows how being right "
        "depends on the score"
    )
    REFUSED_EQUAL_SCORES = (
        "all {n} predicted entities have the same score{after}: nothing shows how "
        "being right depends on the score"
    )
    REFUSED_NOT_INCREASING = (
        "the {method} fit is flat or decreasing: entities with higher scores are not "
        "more often right"
    )
    MAP_REFUSED = (
        "Cannot fit a '{method}' map of entity scores on these {n_docs} docs: "
        "{reason}. Calibrate on a larger or more varied dev set, or fit no map "
        "(method=\"temperature\", CLI: --method temperature); method=\"auto\" leaves "
        "out the maps it cannot fit."
    )
    UNKNOWN_METHOD = "Unknown calibration method {method!r}: use one of {methods}."
    NO_COMPONENT_NAMED = (
        "No token_classifier named '{component}' in the pipeline; its "
        "token_classifier components are {found}."
    )
    NAME_THE_COMPONENT = (
        "The pipeline has {n} token_classifier components ({found}): name one, e.g. "
        'component="{example}" (--component on the command line).'
    )
    NO_GOLD = (
        "The calibration examples have no gold annotation for the tasks {tasks}: "
        "calibrate on an annotated dev set."
    )
    NO_DEV_DOCS = "{path} holds no docs: calibrate on an annotated dev set."
    NO_LABEL_TYPES = (
        "EntityData without label_types cannot score its entities: build it with "
        "spacy_tokclf.calibration.data.collect, or pass "
        "label_types=spacy_tokclf.decoding.label_types(labels)."
    )


class ServeErrors:
    """The HTTP server, serve/. The ANSWER_* texts are the "error" of the
    server's JSON answers to its clients, not exceptions: they are sent as they
    are, without a prefix (use str.format)."""

    NO_SERVE_EXTRA = (
        "spacy_tokclf.serve needs starlette and uvicorn ({error}). Install the "
        '`serve` extra: pip install "spacy-tokclf[serve]"'
    )
    BAD_SETTING = (
        "`{name}` ({value!r}) must be {bound}: set it on the command line (--{flag}) or "
        "in make_app(..., {name}=...)."
    )
    BAD_ZONE_CALLS = (
        "SharedMemoryZone needs max_calls ({max_calls}) >= 1 and compact_calls "
        "({compact_calls}) >= 0"
    )
    ANSWER_TOO_LONG = (
        "The text is too long: {what}, and the limit is {max_chars:,} characters. "
        "Send shorter texts (split long documents), or raise the limit: "
        "`--max-chars N` on the command line, make_app(..., max_chars=N) in Python."
    )
    ANSWER_BODY_BYTES = "the body has {size:,} bytes"
    ANSWER_BODY_OVER = "the body is longer than {max_bytes:,} bytes"
    ANSWER_TEXT_CHARS = "{n:,} characters"
    ANSWER_NOT_UTF8 = "The body is not valid UTF-8 ({error}). Send UTF-8 encoded JSON."
    ANSWER_NOT_JSON = (
        'The body is not valid JSON ({error}). Send a JSON object: {{"text": "..."}}.'
    )
    ANSWER_NO_TEXT = 'The JSON body needs a "text" field: send {{"text": "..."}}, not {value}.'
    ANSWER_TEXT_NOT_STR = '"text" must be a string, not {type} ({value}).'
    ANSWER_SURROGATE = (
        '"text" holds an unpaired surrogate escape ({error}): it is not valid unicode.'
    )
    # A 500 says nothing about the failure (no exception text, no path): the
    # details are in the server's log under the same request id.
    ANSWER_INTERNAL = "internal error"
    ANSWER_TOO_DEEP = (
        'The JSON body is nested too deeply to read. Send a JSON object: {"text": "..."}.'
    )
    ANSWER_BAD_NUMBER = "The JSON body holds a number that cannot be read ({error})."
    ANSWER_BODY_TIMEOUT = (
        "The body did not arrive within {seconds:g} s. Send it at once, or raise the "
        "limit: `--body-timeout S` on the command line, make_app(..., body_timeout=S) in Python."
    )
    ANSWER_QUEUE_FULL = (
        "The server is busy: {waiting} requests are waiting for the pipeline, the limit. "
        "Retry after {retry_after} s (the Retry-After header). The limit is set by "
        "`--max-queue N` on the command line, make_app(..., max_queue=N) in Python."
    )
    LOG_FAILED = "request %s: %s failed on a text of %d characters"
    LOG_APP_FAILED = "request %s: %s %s failed"
    LOG_DISCONNECTED = "a client left before its nlp() call: nothing was run for it"


class EncoderErrors:
    """The encoder layer (layers/, architectures.py, quantization.py). The
    layer does not know its component's name: its texts go through
    error(TEXT, PACKAGE, ...) unless the caller knows the name."""

    # Settings (architectures.py)
    NO_ENCODER_NAME = (
        "No encoder set: `model.tok2vec.name` is empty. Name a Hugging Face model or "
        "a local directory, e.g.\n"
        '    nlp.add_pipe("token_classifier", config={{"model": {{"tok2vec": '
        '{{"name": "/path/to/model"}}}}}})'
    )
    UNKNOWN_POOLING = "Unknown `model.tok2vec.pooling` '{pooling}'. Use one of {known}."
    INVALID_STRIDE = (
        "`model.tok2vec.stride` ({stride}) must be between 1 and `model.tok2vec.window` "
        "({window}) so that windows overlap or touch."
    )
    INVALID_BATCH_PIECES = "`model.tok2vec.batch_pieces` must be >= 1."
    INVALID_CONTEXT = (
        "`model.tok2vec.context` ({context}) must be between 0 and "
        "`model.tok2vec.window` - 1 ({max_context}) pieces, or null to read docs whole "
        "without using their sentence boundaries."
    )
    # Loading (layers/hf_shim.py)
    LOAD_FAILED = (
        "Could not load the encoder '{model}' set in `model.tok2vec.name`: {error}\n"
        "Set it to a local directory that holds a Hugging Face model (config.json, "
        "weights, tokenizer files), e.g.\n"
        '    nlp.add_pipe("token_classifier", config={{"model": {{"tok2vec": '
        '{{"name": "/path/to/model"}}}}}})\nor, in a config file:\n'
        "    [components.token_classifier.model.tok2vec]\n"
        '    name = "/path/to/model"'
    )
    # named_by: "" or " (`<setting>`)", the setting that named the model.
    SLOW_TOKENIZER = (
        "The tokenizer of '{model}'{named_by} is a slow (Python) tokenizer ({kind}). "
        "token_classifier needs a fast tokenizer to map word pieces to spaCy tokens. "
        "Save a fast tokenizer next to the model (tokenizer.json), e.g.\n"
        "    AutoTokenizer.from_pretrained(name, use_fast=True).save_pretrained(dir)\n"
        "or, for a SentencePiece model, install `sentencepiece` so transformers can "
        "convert it."
    )
    SAVED_PART_UNREADABLE = "The saved encoder's {part} cannot be read: {type}: {error}"
    SAVED_TOKENIZER_JSON_MISSING = "tokenizer.json is missing"
    # A saved pipeline is untrusted: its tokenizer table (file name -> bytes) only
    # ever holds plain file names; nothing is written for any other.
    SAVED_TOKENIZER_FILE_NAME = (
        "its table of tokenizer files names the file {file!r}, which is not a plain "
        'file name (one without "/", "\\", ":" or NUL, other than "", "." and ".."). '
        "nlp.to_disk() never writes such a name: this pipeline was altered or made by "
        "other software. Nothing was written for it. Do not use this copy: save the "
        "pipeline again from its source."
    )
    SAVED_TOKENIZER_TABLE = (
        "its table of tokenizer files is not a map of file names to bytes ({found})"
    )
    INT8_NOT_ON_GPU = (
        "This encoder is quantized to int8 (spacy_tokclf.quantize_encoder), which runs "
        "on the CPU only, but thinc's device is {device} (spacy.require_gpu() or "
        "prefer_gpu() was called). Load the int8 pipeline without require_gpu(), or "
        "load the fp32 pipeline (saved before quantize_encoder) on the GPU."
    )
    # Using it (layers/hf_encoder.py, quantization.py; `before`: what needs the
    # weights, e.g. "using the component").
    NO_WEIGHTS = (
        "The encoder has no weights yet: call `nlp.initialize()` (or train with "
        "`spacy train`) before {before}, or load a trained pipeline with `spacy.load()`."
    )
    NO_WINDOW = (
        "The encoder ('{model}') reads no word pieces besides its special pieces "
        "(window limit {limit}): check its `max_position_embeddings` and its "
        "tokenizer's `model_max_length`."
    )
    # The tokenizer (layers/pieces.py)
    NO_STAND_IN_PIECE = (
        "The tokenizer ({kind}) has no unknown piece, no mask piece and no piece for "
        "'?': there is nothing to give a token that yields no word piece (whitespace, "
        "a control character). Set the tokenizer's `unk_token` and save it again."
    )
    TOKENIZER_TRUNCATES = (
        "The encoder's tokenizer pads or truncates (its truncation is {truncation}, "
        "padding {padding}): a long document would be cut silently. The component lays "
        "out windows and padding itself; do not change `tokenizer.backend_tokenizer` of "
        "a loaded pipeline (call no_truncation() and no_padding() to undo it)."
    )
    # int8 (layers/int8.py, quantization.py)
    INT8_INFERENCE_ONLY = (
        "This encoder was quantized to int8 (spacy_tokclf.quantize_encoder) and is for "
        "inference only. Train the fp32 pipeline, save it, then quantize after loading:\n"
        "    nlp = spacy.load(path); spacy_tokclf.quantize_encoder(nlp)"
    )
    INT8_UNSUPPORTED = (
        "int8 quantization needs torch._int_mm on CPU (torch >= 2.4); this is torch "
        "{version} ({error}). Upgrade torch, e.g. pip install -U torch."
    )
    QUANTIZE_NOT_ON_CPU = (
        "int8 quantization is for CPU inference; this encoder is on '{device}'. Load "
        "the pipeline without spacy.require_gpu() / --gpu-id to quantize it."
    )
    QUANTIZE_LISTENERS = (
        "The token_classifier component(s) {listeners} listen to an upstream "
        "`transformer` component (spacy-transformers), whose model quantize_encoder "
        "does not change. It quantizes token_classifiers with an embedded encoder "
        '(`@architectures = "spacy-tokclf.HFEncoder.v1"`).'
    )
    QUANTIZE_NOTHING = (
        "No token_classifier in the pipeline (components: {components}): nothing to "
        "quantize."
    )


class EncoderWarnings:
    MOSTLY_UNKNOWN = (
        "{share:.0%} of the word pieces of the initialization sample are the "
        "tokenizer's unknown piece: the encoder ('{model}', `model.tok2vec.name`) will "
        "see almost none of the text. Check that its tokenizer files hold the "
        "vocabulary the model was trained with (len(tokenizer) is {vocab_size})."
    )
    # Logged (spaCy's logger), once per loaded encoder.
    WINDOW_FITTED = (
        "`model.tok2vec.window` is {window} word pieces, but the encoder ('{model}') "
        "reads at most {limit} at a time (besides its special pieces): using window "
        "{fitted_window} and stride {fitted_stride}. Set `window = {fitted_window}` and "
        "`stride = {fitted_stride}` (or less) to choose them yourself; long documents "
        "are still read whole."
    )
