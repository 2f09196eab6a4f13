"""Network-free tiny encoders and small training data for the tests.

Each builder writes a randomly initialised transformer and a fast tokenizer,
trained here on TEXTS, to a directory, so tests never touch the Hugging Face
hub. One builder per tokenizer family: WordPiece (BERT), byte-level BPE
(RoBERTa) and SentencePiece/Unigram (XLM-R).
"""
from pathlib import Path
from typing import Callable, Dict, List, Set, Tuple

import pytest
import spacy
from spacy.language import Language
from spacy.training import Example

from spacy_tokclf.extras import LISTENER_INSTALL, has_spacy_transformers

# Tests of the spacy-transformers listener run where the `listener` extra is
# installed; the default install (transformers 5) skips them with this reason.
needs_listener = pytest.mark.skipif(
    not has_spacy_transformers(),
    reason=f"needs spacy-transformers, the listener extra: {LISTENER_INSTALL}",
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Angela Merkel visited New York City in 2019.",
    "Café naïve résumé über façade",
    "Hello 😀 world 👍🏽",
    "東京 北京 서울",
    "https://example.com/some/very/long/path?query=1",
    "I don't like it, do you?",
    "Apple Inc. is based in Cupertino, California.",
]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=514,
)


def build_wordpiece(path: Path) -> Path:
    """A cased BERT with a character-level WordPiece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(TEXTS)) - {" "})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "New", "York"]
    vocab += chars + ["##" + c for c in chars]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf8")
    # from_pretrained reads vocab.txt in transformers 4 and 5 alike (the
    # constructor's keyword was renamed from vocab_file to vocab in 5).
    tokenizer = BertTokenizerFast.from_pretrained(
        str(path), do_lower_case=False, strip_accents=False, model_max_length=512
    )
    tokenizer.save_pretrained(str(path))
    BertModel(BertConfig(vocab_size=len(tokenizer), **TINY)).save_pretrained(str(path))
    return path


def build_bpe(path: Path) -> Path:
    """A RoBERTa with a byte-level BPE tokenizer."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        TEXTS * 5, vocab_size=400, min_frequency=1, special_tokens=SPECIALS, show_progress=False
    )
    # <s> ... </s> around every sequence, as the published RoBERTa models do.
    bpe._tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer, model_max_length=512, **_roberta_specials()
    )
    tokenizer.save_pretrained(str(path))
    config = RobertaConfig(vocab_size=len(tokenizer), pad_token_id=1, **TINY)
    RobertaModel(config).save_pretrained(str(path))
    return path


def build_unigram(path: Path) -> Path:
    """An XLM-R with a SentencePiece (Unigram, Metaspace) tokenizer."""
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(
        TEXTS * 5, vocab_size=200, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
    )
    # <s> ... </s> around every sequence, as the published XLM-R models do.
    unigram._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(t, unigram.token_to_id(t)) for t in ("<s>", "</s>")],
    )
    tokenizer = XLMRobertaTokenizerFast(
        tokenizer_object=unigram._tokenizer, model_max_length=512, **_roberta_specials()
    )
    tokenizer.save_pretrained(str(path))
    config = XLMRobertaConfig(vocab_size=len(tokenizer), pad_token_id=1, **TINY)
    XLMRobertaModel(config).save_pretrained(str(path))
    return path


def _roberta_specials() -> Dict[str, str]:
    return dict(
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


BUILDERS: Dict[str, Callable[[Path], Path]] = {
    "wordpiece": build_wordpiece,
    "bpe": build_bpe,
    "unigram": build_unigram,
}

# (text, annotations) with entities and Penn tags, for overfitting.
TRAIN_DATA: List[Tuple[str, dict]] = [
    (
        "Angela Merkel visited New York City in 2019.",
        {
            "entities": [(0, 13, "PER"), (22, 35, "LOC")],
            "tags": ["NNP", "NNP", "VBD", "NNP", "NNP", "NNP", "IN", "CD", "."],
        },
    ),
    (
        "I like London and Paris.",
        {
            "entities": [(7, 13, "LOC"), (18, 23, "LOC")],
            "tags": ["PRP", "VBP", "NNP", "CC", "NNP", "."],
        },
    ),
    (
        "Apple Inc. is based in Cupertino.",
        {
            "entities": [(0, 10, "ORG"), (23, 32, "LOC")],
            "tags": ["NNP", "NNP", "VBZ", "VBN", "IN", "NNP", "."],
        },
    ),
]


# token_classifier's tok2vec as a listener of an upstream spacy-transformers
# `transformer` component.
LISTENER_TOK2VEC = {
    "@architectures": "spacy-transformers.TransformerListener.v1",
    "grad_factor": 1.0,
    "pooling": {"@layers": "reduce_mean.v1"},
    "upstream": "*",
}


def make_nlp(encoder: Path, **config) -> Language:
    """A blank English pipeline with a token_classifier on `encoder`."""
    nlp = spacy.blank("en")
    cfg = {"model": {"tok2vec": {"name": str(encoder)}}}
    for key, value in config.items():
        if key == "tok2vec":
            cfg["model"]["tok2vec"].update(value)
        else:
            cfg[key] = value
    nlp.add_pipe("token_classifier", config=cfg)
    return nlp


def make_examples(nlp: Language) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), annots) for text, annots in TRAIN_DATA]


def train(nlp: Language, examples: List[Example], n_iter: int = 60) -> Dict[str, float]:
    """Overfit: initialize, then update n_iter times on the same batch. Seeded,
    so the result does not depend on which tests ran before."""
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    losses: Dict[str, float] = {}
    for _ in range(n_iter):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    return losses


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """A cycle of the graph as a path of names, or [] if it has none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(name: str) -> List[str]:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        path.pop()
        state[name] = 2
        return []

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return []
