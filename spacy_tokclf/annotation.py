"""Where a prediction becomes a Doc.ent: writing decoded entities, tags and
label probabilities to a Doc, by the component's overwrite policy.

The writing half of the prediction path; decoding.py turns scores into the
label ids (and ids into the entity spans) written here.
"""
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy
from spacy.attrs import TAG
from spacy.tokens import Doc, Span, SpanGroup

from .decoding import ENTITY_TOKENS, DocPrediction, Entity, entity_spans
from .labels import LabelLayout

PROBS_ATTR = "tokclf_probs"

if not Doc.has_extension(PROBS_ATTR):
    Doc.set_extension(PROBS_ATTR, default=None)


def annotate(
    doc: Doc,
    prediction: DocPrediction,
    *,
    layout: LabelLayout,
    cfg: Mapping[str, Any],
    name: str,
    tag_hashes: numpy.ndarray,
) -> None:
    """Write one doc's prediction (task -> label ids, probabilities; for
    entities also the type mass and repair flags of each token): entities
    (scored, calibrated and thresholded by the component's cfg) to doc.ents
    and doc.spans[spans_key], tags to token.tag_ (tag_hashes: the string
    hash of each tag id), probabilities to doc._.tokclf_probs[name]."""
    # Per task, the tokens whose existing annotation was kept (overwrite =
    # false): their probability is None.
    kept: Dict[str, Optional[numpy.ndarray]] = {}
    if "ents" in prediction:
        ids, probs = prediction["ents"]
        # Only a doc without tokens comes without them (predict's empty path).
        mass, repaired = prediction.get(ENTITY_TOKENS, (probs, None))
        spans = entity_spans(
            ids,
            mass,
            layout.output_labels("ents"),
            repaired=repaired,
            calibration=cfg.get("calibration"),
            threshold=cfg.get("threshold"),
        )
        kept["ents"] = set_entities(
            doc, spans, spans_key=cfg["spans_key"], overwrite=cfg["overwrite"]
        )
    if "tag" in prediction and len(doc):
        kept["tag"] = set_tags(doc, prediction["tag"][0], tag_hashes, overwrite=cfg["overwrite"])
    probs_of = {task: p for task, (_, p) in prediction.items() if task in layout.tasks}
    set_probabilities(doc, name, probs_of, kept)


def set_entities(
    doc: Doc, spans: Sequence[Entity], *, spans_key: str, overwrite: bool
) -> numpy.ndarray:
    """Write the predicted entities to doc.spans[spans_key] (with their scores
    in attrs["scores"] and whether decoding repaired them in
    attrs["repaired"]) and doc.ents, by the overwrite policy.

    overwrite = true: both are replaced. overwrite = false: what is there
    wins. doc.ents keeps its entities and takes the predicted ones that
    overlap none of them (tokens with no entity status become "O"); an
    existing span group under spans_key keeps its spans (and scores) and
    takes the predicted spans that overlap none of them, so running the
    component twice adds nothing. Without such a group, the group holds
    every predicted entity, whatever was written to doc.ents.

    RETURNS (numpy.ndarray): per token, whether its existing entity was kept.
    """
    key = spans_key
    predicted = [Span(doc, start, end, label=label) for start, end, label, *_ in spans]
    attrs: Dict[str, List[Any]] = {
        "scores": [s[3] for s in spans],
        "repaired": [s[4] for s in spans],
    }
    taken = numpy.zeros((len(doc),), dtype=bool)
    if overwrite:
        doc.spans[key] = SpanGroup(doc, name=key, spans=predicted, attrs=attrs)
        doc.set_ents(predicted, default="outside")
        return taken
    if key in doc.spans:
        group = doc.spans[key]
        in_group = numpy.zeros((len(doc),), dtype=bool)
        for span in group:
            in_group[span.start : span.end] = True
        new = [i for i, s in enumerate(predicted) if not in_group[s.start : s.end].any()]
        merged: Dict[str, Any] = dict(group.attrs)
        for name, values in attrs.items():
            # The group's own spans keep their values (None where unknown).
            old = list(group.attrs.get(name, [None] * len(group)))
            if len(old) != len(group):
                old = [None] * len(group)
            merged[name] = old + [values[i] for i in new]
        doc.spans[key] = SpanGroup(
            doc, name=key, spans=list(group) + [predicted[i] for i in new], attrs=merged
        )
    else:
        doc.spans[key] = SpanGroup(doc, name=key, spans=predicted, attrs=attrs)
    existing = list(doc.ents)
    for ent in existing:
        taken[ent.start : ent.end] = True
    added = [s for s in predicted if not taken[s.start : s.end].any()]
    doc.set_ents(existing + added, default="outside")
    return taken


def set_tags(
    doc: Doc, ids: numpy.ndarray, tag_hashes: numpy.ndarray, *, overwrite: bool
) -> Optional[numpy.ndarray]:
    """Write the predicted tags (ids into `tag_hashes`, the tags' string
    hashes) to token.tag_. overwrite = false keeps the tags already there.

    RETURNS (Optional[numpy.ndarray]): per token, whether its existing tag
        was kept; None with overwrite = true.
    """
    new = tag_hashes[ids]
    kept = None
    if not overwrite:
        old = doc.to_array(TAG)
        kept = old != 0
        new = numpy.where(kept, old, new)
    doc.from_array([TAG], new.reshape(-1, 1))
    return kept


def set_probabilities(
    doc: Doc,
    name: str,
    probs: Dict[str, numpy.ndarray],
    kept: Dict[str, Optional[numpy.ndarray]],
) -> None:
    """Store each task's per-token label probabilities under
    doc._.tokclf_probs[name][task]; None where the existing annotation was
    kept (the component assigned nothing there)."""
    stored = doc._.get(PROBS_ATTR) or {}
    stored[name] = {task: _probs_list(p, kept.get(task)) for task, p in probs.items()}
    doc._.set(PROBS_ATTR, stored)


def _probs_list(probs: numpy.ndarray, kept: Optional[numpy.ndarray]) -> List[Optional[float]]:
    """Token probabilities as a list; None where the existing annotation was kept."""
    values = probs.tolist()
    if kept is None or not kept.any():
        return values
    return [None if k else v for v, k in zip(values, kept.tolist())]
