"""The systems of scripts/train/compare.py (and tune.py, context_sweep.py): tokclf,
hf_trainer and spacy_trf, as compare.py's docstring describes them. Each
trains on the same docs with the same batches and schedule shape and returns
(a spaCy pipeline or the predicted labels of the dev docs, training seconds).
"""
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import spacy
from spacy.tokens import Doc

from common import DATASETS, LEARN_RATE, PROJECT, gold_labels, head_sentences, schedule, write_docs
from peers import hf_token_model, hf_training_args, label_ids, run_ner_feature, spacy_trf_config

SYSTEMS = ("tokclf", "hf_trainer", "spacy_trf")
# spaCy evaluates on its dev corpus while training; a small slice keeps that
# cheap. Scores come from the final weights on the whole dev set.
TRAINING_DEV_SENTENCES = 50


def train_spacy(config, workdir: Path, train_docs, dev_docs, overrides) -> Tuple[object, float]:
    from spacy.cli.train import train as spacy_train

    config_path = workdir / "config.cfg"
    workdir.mkdir(parents=True, exist_ok=True)
    config.to_disk(config_path)
    overrides = dict(
        overrides,
        **{
            "paths.train": str(write_docs(train_docs, workdir / "train.spacy")),
            "paths.dev": str(write_docs(head_sentences(dev_docs, TRAINING_DEV_SENTENCES), workdir / "dev.spacy")),
        },
    )
    start = time.perf_counter()
    spacy_train(config_path, workdir / "output", overrides=overrides)
    seconds = time.perf_counter() - start
    return spacy.load(workdir / "output" / "model-last"), seconds


def setting_overrides(setting: Optional[Dict]) -> Dict:
    """spaCy config overrides for a tuning setting (scripts/train/tune.py):
    learning rate ("lr"), seed ("seed") and, for token_classifier, "scheme" and
    "averages" (the optimizer's parameter averaging, `use_averages`)."""
    setting = setting or {}
    overrides = {}
    if "lr" in setting:
        overrides["training.optimizer.learn_rate.initial_rate"] = setting["lr"]
    if "seed" in setting:
        overrides["system.seed"] = setting["seed"]
    if "scheme" in setting:
        overrides["components.token_classifier.scheme"] = setting["scheme"]
    if "averages" in setting:
        overrides["training.optimizer.use_averages"] = bool(setting["averages"])
    return overrides


def sentence_context(config, context: Optional[int]):
    """A token_classifier config read with `context` pieces around each
    sentence (a `sentencizer` before it, annotating, so training reads the
    sentences prediction reads, and the encoder HFEncoder.v2 with `context`),
    or with context None without sentence context: no sentencizer, each doc
    read whole in windows (HFEncoder.v2 with context null, which is v1)."""
    config = config.copy()
    pipeline = [c for c in config["nlp"]["pipeline"] if c != "sentencizer"]
    annotating = [c for c in config["training"]["annotating_components"] if c != "sentencizer"]
    if context is None:
        config["components"].pop("sentencizer", None)
    else:
        pipeline.insert(0, "sentencizer")
        annotating.insert(0, "sentencizer")
        config["components"].setdefault("sentencizer", {"factory": "sentencizer"})
        # the sentencizer's scores are not the model's: kept out of model-best
        config["training"]["score_weights"].update(sents_f=None, sents_p=None, sents_r=None)
    config["nlp"]["pipeline"] = pipeline
    config["training"]["annotating_components"] = annotating
    tok2vec = config["components"]["token_classifier"]["model"]["tok2vec"]
    tok2vec["@architectures"] = "spacy-tokclf.HFEncoder.v2"
    tok2vec["context"] = context
    return config


def scaled_learning_rates(config, setting: Optional[Dict]):
    """The config with spacy-tokclf.Adam.v1 (the same Adam) where the setting
    scales the head's learning rate ("head_lr_scale") or decays it by layer
    ("layer_decay"); else unchanged."""
    scales = {k: (setting or {})[k] for k in ("head_lr_scale", "layer_decay") if k in (setting or {})}
    if not scales:
        return config
    config = config.copy()
    config["training"]["optimizer"]["@optimizers"] = "spacy-tokclf.Adam.v1"
    config["training"]["optimizer"].update(scales)
    return config


def run_tokclf(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir,
               setting=None):
    """configs/ner.cfg or tagger.cfg with the setting's context (default:
    none, as one sentence per doc has no neighbours to read)."""
    config = spacy.util.load_config(PROJECT / "configs" / f"{DATASETS[dataset][3]}.cfg")
    config = sentence_context(config, (setting or {}).get("context"))
    config = scaled_learning_rates(config, setting)
    overrides = {"paths.encoder": encoder, **schedule(train_docs, unit, epochs, max_steps)}
    overrides.update(setting_overrides(setting))
    return train_spacy(config, workdir, train_docs, dev_docs, overrides)


def run_spacy_trf(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir,
                  setting=None):
    config = spacy_trf_config(DATASETS[dataset][3], encoder)
    # Same budget as the others: the same batches (set by schedule), no accumulation.
    config["training"]["accumulate_gradient"] = 1
    config["training"]["patience"] = 0
    config["training"]["logger"] = {
        "@loggers": "spacy.ConsoleLogger.v3",
        "progress_bar": "train",
        "console_output": True,
        "output_file": None,
    }
    overrides = schedule(train_docs, unit, epochs, max_steps)
    overrides["training.optimizer.learn_rate.initial_rate"] = LEARN_RATE
    overrides.update(setting_overrides({k: v for k, v in (setting or {}).items() if k != "scheme"}))
    return train_spacy(config, workdir, train_docs, dev_docs, overrides)


def run_hf_trainer(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir,
                   setting=None) -> Tuple[List[List[str]], float]:
    """transformers' run_ner recipe: words in, label on each word's first
    sub-token (-100 elsewhere), Trainer with the shared schedule."""
    import torch
    from transformers import AutoTokenizer, DataCollatorForTokenClassification, Trainer

    task = DATASETS[dataset][2]
    train_labels = [gold_labels(d, task) for d in train_docs]
    label_list, label2id = label_ids(train_labels)
    tokenizer = AutoTokenizer.from_pretrained(encoder, use_fast=True)
    train_features = [
        run_ner_feature(tokenizer, d, labels, label2id) for d, labels in zip(train_docs, train_labels)
    ]
    setting = setting or {}
    tuned = {"learning_rate": setting["lr"]} if "lr" in setting else {}
    if "seed" in setting:
        tuned["seed"] = setting["seed"]
        torch.manual_seed(setting["seed"])  # the head's initial weights
    model = hf_token_model(encoder, label_list)
    args = hf_training_args(
        workdir / "hf", num_train_epochs=epochs, max_steps=max_steps or -1, **tuned
    )
    collator = DataCollatorForTokenClassification(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=train_features, data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    # Kept for later use (speed benchmarks, import into token_classifier).
    trainer.save_model(str(workdir / "model"))
    tokenizer.save_pretrained(str(workdir / "model"))

    model.eval()
    predicted: List[List[str]] = []
    with torch.inference_mode():
        for i in range(0, len(dev_docs), 64):
            docs: List[Doc] = dev_docs[i : i + 64]
            batch = collator([run_ner_feature(tokenizer, d) for d in docs])
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            for j, doc in enumerate(docs):
                word_ids = tokenizer(
                    [t.text for t in doc], is_split_into_words=True, truncation=True
                ).word_ids()
                first: Dict[int, int] = {}
                for k, word in enumerate(word_ids):
                    if word is not None and word not in first:
                        first[word] = int(logits[j, k].argmax())
                # A word cut off by truncation has no prediction: "O" / no tag.
                fallback = "O" if task == "ents" else ""
                predicted.append(
                    [label_list[first[w]] if w in first else fallback for w in range(len(doc))]
                )
    return predicted, seconds


RUNNERS = {"tokclf": run_tokclf, "hf_trainer": run_hf_trainer, "spacy_trf": run_spacy_trf}
