"""Model type aliases, named once."""
from typing import List

from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d

# One array per doc, one row per spaCy token: the encoder (token vectors,
# [len(doc), H]) and the whole token classifier (label scores, [len(doc), nO])
# both have this type, so they can be chained and swapped for listeners.
PerTokenModelT = Model[List[Doc], List[Floats2d]]
