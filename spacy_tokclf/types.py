"""Model type aliases, named once."""
from typing import List

from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d

# A per-token encoder: one row per spaCy token, one array per doc.
Tok2VecT = Model[List[Doc], List[Floats2d]]
# The full token classifier: one row of label scores per spaCy token.
TokenScoresT = Model[List[Doc], List[Floats2d]]
