"""The registered scorer: entity P/R/F and tag accuracy, for the tasks set."""
from typing import Any, Callable, Dict, Iterable, Sequence

from spacy.scorer import Scorer, get_ner_prf
from spacy.training import Example
from spacy.util import registry


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
