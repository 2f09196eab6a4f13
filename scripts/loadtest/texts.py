"""The texts of scripts/loadtest/loadtest.py and scripts/loadtest/memory_run.py: sentences and
whole documents of a corpus, or generated news-like texts when there is none,
and the edge cases real traffic holds now and then."""
import random
from pathlib import Path
from typing import List, Optional, Tuple

from common import read_docs

# Texts real traffic holds now and then, sent as good requests.
EDGE_TEXTS = [
    "",
    "   ",
    "\n\n",
    "Hello 😀 world 👍🏽 from Angela Merkel",
    "東京 北京 서울 in Asia",
    "Café naïve résumé über façade",
    "a\tb\nc  d",
    "U.S.A. vs. U.K.: 3-2 (a.e.t.)",
]


def corpus_texts(path: Path) -> Optional[Tuple[List[str], List[str]]]:
    """(sentence texts, whole document texts) of a .spacy file; None if it
    does not exist. Sentences come from the docs' sentence boundaries."""
    if not path.exists():
        return None
    docs = read_docs(path)
    sentences = [
        sent.text for doc in docs if doc.has_annotation("SENT_START") for sent in doc.sents
    ]
    documents = [doc.text for doc in docs]
    return [t for t in sentences if t.strip()], [t for t in documents if t.strip()]


_FIRST = ["Angela", "Barack", "Marie", "Kofi", "Ada", "Lionel", "Jacinda", "Olaf", "Yuki"]
_LAST = ["Merkel", "Obama", "Curie", "Annan", "Lovelace", "Messi", "Ardern", "Scholz", "Tanaka"]
_PLACES = ["Paris", "New York City", "Berlin", "Tokyo", "Nairobi", "Lima", "Oslo", "Sydney"]
_ORGS = ["Apple Inc.", "the United Nations", "Reuters", "FC Barcelona", "Siemens", "NASA"]
_MISC = ["German", "Olympic", "French", "Nobel", "World Cup", "Japanese"]
_TEMPLATES = [
    "{per} visited {loc} on Monday to meet officials of {org}.",
    "{org} said on Tuesday that {per} would lead the {misc} delegation in {loc}.",
    "Shares of {org} rose 3.5 percent in {loc} after {per} spoke.",
    "{per} ( {loc} ) beat {per2} 6-4 6-3 in the {misc} Open.",
    "In {loc}, {per} and {per2} signed the agreement with {org} .",
    "The {misc} team lost 2-1 to {org} in front of 40,000 fans in {loc}.",
]


def generated_texts(n_sentences: int, n_documents: int, seed: int) -> Tuple[List[str], List[str]]:
    """News-like sentences and documents of 10-60 of them, for when no corpus
    is there."""
    rng = random.Random(seed)

    def sentence() -> str:
        return rng.choice(_TEMPLATES).format(
            per=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            per2=rng.choice(_LAST),
            loc=rng.choice(_PLACES),
            org=rng.choice(_ORGS),
            misc=rng.choice(_MISC),
        )

    sentences = [sentence() for _ in range(n_sentences)]
    documents = [
        " ".join(sentence() for _ in range(rng.randint(10, 60))) for _ in range(n_documents)
    ]
    return sentences, documents


def pick_texts(corpus: Path, distinct: int, seed: int) -> Tuple[List[str], str]:
    """`distinct` texts: about 10 % whole documents, the edge cases, the rest
    sentences; and where they come from."""
    found = corpus_texts(corpus)
    n_docs = max(1, distinct // 10)
    if found is not None and found[0] and found[1]:
        sentences, documents = found
        source = f"{corpus} ({len(sentences):,} sentences, {len(documents):,} documents)"
    else:
        sentences, documents = generated_texts(2 * distinct, n_docs, seed)
        source = f"generated ({corpus} not found)"
    rng = random.Random(seed)
    n_docs = min(n_docs, len(documents))
    n_sents = min(max(0, distinct - n_docs - len(EDGE_TEXTS)), len(sentences))
    texts = rng.sample(documents, n_docs) + rng.sample(sentences, n_sents) + EDGE_TEXTS
    return list(dict.fromkeys(texts)), source
