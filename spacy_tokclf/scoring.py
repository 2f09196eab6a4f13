"""The registered scorer: entity P/R/F and tag accuracy, for the tasks set;
per-label F1 and the forgetting gate of a pipeline taught new labels."""
from typing import Any, Callable, Dict, Iterable, List, Sequence

from spacy.language import Language
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from .metrics import label_drops


def score_token_classifier(
    examples: Iterable[Example], *, tasks: Sequence[str] = ("ents",), **kwargs: Any
) -> Dict[str, Any]:
    """Score the attributes the component writes.

    examples (Iterable[Example]): predicted and gold docs.
    tasks (Sequence[str]): the component's tasks ("ents", "tag").
    RETURNS (Dict[str, Any]): ents_p, ents_r, ents_f, ents_per_type (task
        "ents") and tag_acc (task "tag").
    """
    examples = list(examples)
    scores: Dict[str, Any] = {}
    if "ents" in tasks:
        scores.update(get_ner_prf(examples, **kwargs))
    if "tag" in tasks:
        scores.update(Scorer.score_token_attr(examples, "tag", **kwargs))
    return scores


@registry.scorers("spacy-tokclf.tokclf_scorer.v1")
def make_tokclf_scorer() -> Callable[..., Dict[str, Any]]:
    return score_token_classifier


def per_label_f1(examples: Iterable[Example], tasks: Sequence[str] = ("ents",)) -> Dict[str, float]:
    """F1 (0-100) per entity type ("PER") and per tag ("tag:NN") of predicted
    against gold docs: entities by exact span and type, tags token by token."""
    examples = list(examples)
    out: Dict[str, float] = {}
    if "ents" in tasks:
        for label, prf in get_ner_prf(examples)["ents_per_type"].items():
            out[label] = 100.0 * prf["f"]
    if "tag" in tasks:
        counts: Dict[str, List[int]] = {}  # tag -> [right, predicted, gold]
        for eg in examples:
            for token, gold in zip(eg.predicted, eg.get_aligned("TAG", as_string=True)):
                if token.tag_:
                    counts.setdefault(token.tag_, [0, 0, 0])[1] += 1
                if gold:
                    counts.setdefault(gold, [0, 0, 0])[2] += 1
                    counts[gold][0] += int(token.tag_ == gold)
        for tag, (right, n_pred, n_gold) in counts.items():
            out[f"tag:{tag}"] = 200.0 * right / (n_pred + n_gold) if n_pred + n_gold else 0.0
    return out


def forgetting_gate(
    old: Language,
    new: Language,
    gold: Sequence[Doc],
    *,
    max_drop: float,
    component: str = "token_classifier",
) -> Dict[str, Any]:
    """Per-label F1 of the old and the new pipeline on the gold docs (each
    predicts on their words alone), and the old component's labels whose F1
    drops by more than `max_drop` points (the gate fails when there is one).

    RETURNS (Dict[str, Any]): "before" and "after" (label -> F1), "old_labels",
        "dropped" (label, before, after, drop) and "passed".
    """
    pipe: Any = old.get_pipe(component)
    tasks = list(pipe.tasks)
    old_labels = [
        label if task == "ents" else f"tag:{label}"
        for task in tasks for label in pipe.label_data[task]
    ]
    scores = []
    for nlp in (old, new):
        words = [Doc(nlp.vocab, words=[t.text for t in g], spaces=[bool(t.whitespace_) for t in g])
                 for g in gold]
        examples = [Example(p, g) for p, g in zip(nlp.pipe(words), gold)]
        scores.append(per_label_f1(examples, tasks))
    dropped = label_drops(scores[0], scores[1], old_labels, max_drop)
    return {"before": scores[0], "after": scores[1], "old_labels": old_labels,
            "dropped": dropped, "passed": not dropped}
