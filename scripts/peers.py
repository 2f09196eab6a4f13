"""The peers' recipes, as each project publishes them, for the scripts that
train or measure the peers (bench/systems.py, train/compare_systems.py):

- spaCy: spacy_trf_config(), the quickstart config of spacy-transformers'
  `transformer` + spaCy's `ner` or `tagger`;
- transformers' run_ner example: label_ids(), run_ner_feature(),
  hf_token_model() and hf_training_args() (the Trainer settings), with the
  batch size and schedule every system shares (common.py).
"""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from spacy.tokens import Doc

from common import BATCH_SIZE, LEARN_RATE


def spacy_trf_config(component: str, encoder: str):
    """spaCy's quickstart config for a transformer: spacy-transformers
    `transformer` + spaCy's `ner` or `tagger`, on `encoder`."""
    from spacy.cli.init_config import init_config

    config = init_config(lang="en", pipeline=[component], optimize="accuracy", gpu=True)
    config["components"]["transformer"]["model"]["name"] = encoder
    return config


def label_ids(labels: Iterable[Sequence[str]]) -> Tuple[List[str], Dict[str, int]]:
    """The sorted label list of the gold labels and its label -> id map."""
    label_list = sorted({label for doc_labels in labels for label in doc_labels})
    return label_list, {label: i for i, label in enumerate(label_list)}


def run_ner_feature(tokenizer, doc: Doc, labels=None, label2id=None) -> Dict:
    """transformers' run_ner input for a doc's words; with labels, each
    word's label on its first sub-token and -100 on the others."""
    enc = tokenizer([t.text for t in doc], is_split_into_words=True, truncation=True)
    feature = dict(enc)
    if labels is not None:
        previous = None
        ids = []
        for word in enc.word_ids():
            ids.append(-100 if word is None or word == previous else label2id[labels[word]])
            previous = word
        feature["labels"] = ids
    return feature


def hf_token_model(encoder: str, label_list: Sequence[str]):
    """AutoModelForTokenClassification of the encoder with these labels."""
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        encoder,
        num_labels=len(label_list),
        id2label=dict(enumerate(label_list)),
        label2id={label: i for i, label in enumerate(label_list)},
    )


def hf_training_args(output_dir: Path, **kwargs):
    """The Trainer settings of the run_ner recipe with the shared batch size
    and schedule (compare's hf_trainer, benchmark's training)."""
    import dataclasses

    from transformers import TrainingArguments

    # 10 % warm-up: transformers 5 dropped warmup_ratio; its warmup_steps takes
    # a float in [0, 1) as the ratio (in 4.x a float there is a step count).
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    warmup = "warmup_ratio" if "warmup_ratio" in fields else "warmup_steps"
    settings: Dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=LEARN_RATE,
        **{warmup: 0.1},
        lr_scheduler_type="linear",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    settings.update(kwargs)
    return TrainingArguments(**settings)
