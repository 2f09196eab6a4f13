"""spaCy tokens -> word pieces -> windows -> padded batches, and back
(spacy_tokclf/layers/pieces.py, windows.py), then the encoder built on it: one vector
per spaCy token, whatever the tokenizer family, the doc length or the batch.
"""
import dataclasses
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy
import pytest
import spacy
from spacy.tokens import Doc

from spacy_tokclf.architectures import build_hf_encoder
from spacy_tokclf.layers.hf_shim import load_encoder
from spacy_tokclf.layers.pieces import SpecialPieces, layout_pieces, split_by_call, tokenize_docs
from spacy_tokclf.layers.windows import window_owners, window_starts

# (words, spaces): tokens the tokenizers find hard. Built with Doc(words=...)
# so that the spaCy tokens, whitespace tokens included, are exactly these.
ODD_DOCS: List[Tuple[List[str], List[bool]]] = [
    (["Café", "naïve", "résumé", "über", "façade"], [True, True, True, True, False]),
    (["Hello", "😀", "world", "👍🏽", "!"], [True, True, True, False, False]),
    (["東京", "北京", "서울", "東京タワー"], [True, True, False, False]),
    (
        ["See", "https://example.com/some/very/long/path?query=1&x=" + "a" * 120, "."],
        [True, False, False],
    ),
    (["a", "\u200b", "b\u200dc", "\u200d", "d"], [False, False, False, False, False]),
    (["x", "\x00", "\x07", "y", "\x1f", "\t"], [False, False, False, False, False, False]),
    (["Hello", " ", "world", "\n", "  ", "end", "\n\n"], [False] * 7),
    ([" "], [False]),
    (["in", "New York", "City", "a  b"], [True, True, True, False]),  # merged tokens
    (["\u00ad", "\ufeff", "z"], [False, False, False]),
]


@pytest.fixture(scope="module")
def vocab():
    return spacy.blank("en").vocab


@pytest.fixture(scope="module")
def odd_docs(vocab) -> List[Doc]:
    return [Doc(vocab, words=words, spaces=spaces) for words, spaces in ODD_DOCS]


@lru_cache(maxsize=None)
def _tokenizer(path: str) -> Any:
    return load_encoder(path)[1]


def word_pieces(tokenizer: Any, word: str) -> List[int]:
    """What the tokenizer yields for one word on its own."""
    enc = tokenizer.backend_tokenizer.encode([word], is_pretokenized=True, add_special_tokens=False)
    return list(enc.ids)


def with_cls_sep(src: Path, dst: Path) -> Path:
    """A copy of a tiny RoBERTa / XLM-R whose tokenizer adds <s> ... </s>, as
    the tokenizers of the published checkpoints do (the fixtures' tokenizers
    have no such post-processor)."""
    from tokenizers import Tokenizer, processors

    if not dst.exists():
        shutil.copytree(src, dst)
        tok = Tokenizer.from_file(str(dst / "tokenizer.json"))
        bos, eos = ("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))
        if src.name == "bpe":
            tok.post_processor = processors.RobertaProcessing(
                eos, bos, trim_offsets=True, add_prefix_space=True
            )
        else:
            tok.post_processor = processors.TemplateProcessing(
                single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[bos, eos]
            )
        tok.save(str(dst / "tokenizer.json"))
    return dst


@pytest.fixture(params=["as_built", "cls_sep"])
def encoder_dir(request, encoder, tmp_path_factory) -> Path:
    """Each tokenizer family, as built by tests/util.py and, for RoBERTa and
    XLM-R, with the <s> ... </s> that real checkpoints add."""
    if request.param == "as_built" or encoder.name == "wordpiece":
        return encoder
    root = tmp_path_factory.getbasetemp() / "encoders_cls_sep"
    root.mkdir(exist_ok=True)
    return with_cls_sep(encoder, root / encoder.name)


# tokenize_docs ----------------------------------------------------------------


def test_tokenize_docs_every_token_owns_a_piece(encoder, odd_docs, vocab):
    tokenizer = _tokenizer(str(encoder))
    docs = [Doc(vocab, words=[])] + odd_docs[:3] + [Doc(vocab, words=[])] + odd_docs[3:]
    output = tokenize_docs(tokenizer, docs, tokenizer.unk_token_id)
    assert len(output) == len(docs)
    for doc, (ids, owners) in zip(docs, output):
        assert ids.shape == owners.shape
        if len(doc) == 0:
            assert len(ids) == 0
            continue
        assert (numpy.diff(owners) >= 0).all(), "token indices must be sorted"
        assert set(owners.tolist()) == set(range(len(doc)))


def test_tokenize_docs_pieces_are_the_words_own_pieces(encoder, odd_docs):
    tokenizer = _tokenizer(str(encoder))
    unk_id = tokenizer.unk_token_id
    output = tokenize_docs(tokenizer, odd_docs, unk_id)
    for doc, (ids, owners) in zip(odd_docs, output):
        for token in doc:
            expected = word_pieces(tokenizer, token.text) or [unk_id]
            assert ids[owners == token.i].tolist() == expected, repr(token.text)


def test_tokenize_docs_token_without_pieces_gets_exactly_unk_id(encoder, odd_docs):
    tokenizer = _tokenizer(str(encoder))
    unk_id = 12345  # not a piece id of any tiny tokenizer: it must come from the argument
    output = tokenize_docs(tokenizer, odd_docs, unk_id)
    n_empty = 0
    for doc, (ids, owners) in zip(odd_docs, output):
        for token in doc:
            if not word_pieces(tokenizer, token.text):
                n_empty += 1
                assert ids[owners == token.i].tolist() == [unk_id], repr(token.text)
            else:
                assert unk_id not in ids[owners == token.i].tolist()
    if encoder.name != "bpe":  # byte-level BPE has a piece for every byte
        assert n_empty > 0


def test_tokenize_docs_batch_equals_one_doc_at_a_time(encoder, odd_docs, vocab):
    tokenizer = _tokenizer(str(encoder))
    docs = [odd_docs[0], Doc(vocab, words=[]), *odd_docs[1:], Doc(vocab, words=[])]
    batched = tokenize_docs(tokenizer, docs, tokenizer.unk_token_id)
    for doc, (ids, owners) in zip(docs, batched):
        ids1, owners1 = tokenize_docs(tokenizer, [doc], tokenizer.unk_token_id)[0]
        assert ids.tolist() == ids1.tolist()
        assert owners.tolist() == owners1.tolist()


def test_tokenize_docs_byte_level_bpe_decodes_to_token_text(encoders, odd_docs):
    tokenizer = _tokenizer(str(encoders["bpe"]))
    output = tokenize_docs(tokenizer, odd_docs, tokenizer.unk_token_id)
    for doc, (ids, owners) in zip(odd_docs, output):
        for token in doc:
            decoded = tokenizer.decode(
                ids[owners == token.i].tolist(), clean_up_tokenization_spaces=False
            )
            # add_prefix_space puts one space before a word that has none.
            expected = token.text if token.text.startswith(" ") else " " + token.text
            assert decoded == expected
            assert decoded.strip() == token.text.strip()


# SpecialPieces ------------------------------------------------------------------


def test_special_pieces_bert(encoders):
    tokenizer = _tokenizer(str(encoders["wordpiece"]))
    special = SpecialPieces.from_tokenizer(tokenizer)
    assert special.prefix == [tokenizer.cls_token_id]
    assert special.suffix == [tokenizer.sep_token_id]
    assert special.pad_id == tokenizer.pad_token_id
    assert special.unk_id == tokenizer.unk_token_id


@pytest.mark.parametrize("family", ["bpe", "unigram"])
def test_special_pieces_roberta_and_xlmr(family, encoders, tmp_path):
    tokenizer = load_encoder(str(with_cls_sep(encoders[family], tmp_path / family)))[1]
    special = SpecialPieces.from_tokenizer(tokenizer)
    assert special.prefix == [tokenizer.cls_token_id] == [tokenizer.bos_token_id]
    assert special.suffix == [tokenizer.sep_token_id] == [tokenizer.eos_token_id]
    assert special.pad_id == tokenizer.pad_token_id
    assert special.unk_id == tokenizer.unk_token_id


def test_special_pieces_are_what_the_tokenizer_adds(encoder_dir):
    tokenizer = _tokenizer(str(encoder_dir))
    special = SpecialPieces.from_tokenizer(tokenizer)
    words = ["Hello", "world"]
    content = tokenizer(words, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    full = tokenizer(words, is_split_into_words=True)["input_ids"]
    assert full == special.prefix + content + special.suffix


# Windows ------------------------------------------------------------------------

WINDOW_CASES = [(w, s) for w in range(1, 13) for s in range(1, w + 1)]


def edge_distance(piece: int, start: int, window: int, n: int) -> int:
    """Context a piece has on its shorter side within a window; the doc's own
    start and end are not window edges."""
    end = min(start + window, n)
    left = piece - start if start > 0 else n
    right = end - 1 - piece if end < n else n
    return min(left, right)


@pytest.mark.parametrize("window,stride", WINDOW_CASES)
def test_window_starts_fitting_sequence_gets_one_window(window, stride):
    for n in range(1, window + 1):
        starts, length = window_starts(n, window, stride)
        assert starts.tolist() == [0] and length == n


@pytest.mark.parametrize("window,stride", WINDOW_CASES)
def test_window_starts_cover_long_sequences(window, stride):
    for n in range(window + 1, 4 * window + 3):
        starts, length = window_starts(n, window, stride)
        starts = starts.tolist()
        assert length <= window
        assert starts[0] == 0
        assert starts[-1] + length == n, "the last window ends at the end"
        steps = [b - a for a, b in zip(starts, starts[1:])]
        assert all(0 < step <= stride for step in steps)
        assert all(length - step >= window - stride for step in steps), "overlap kept"
        assert max(steps) - min(steps) <= 1, "spread evenly"
        # The fewest windows: one fewer could not keep the overlap, since
        # each window after the first adds at most `stride` new pieces.
        assert window + (len(starts) - 2) * stride < n
        covered = numpy.zeros((n,), dtype=int)
        for s in starts:
            assert 0 <= s and s + length <= n
            covered[s : s + length] += 1
        assert (covered >= 1).all()


def test_window_starts_encode_fewer_pieces_than_end_aligned_windows():
    # 350 pieces, window 256, stride 192: two windows either way; the last
    # one aligned to the end would read 512 pieces, even ones read 414.
    starts, length = window_starts(350, 256, 192)
    assert starts.tolist() == [0, 143] and length == 207


@pytest.mark.parametrize("window,stride", WINDOW_CASES)
def test_window_owners_pick_a_containing_window_farthest_from_its_edge(window, stride):
    for n in range(1, 4 * window + 3):
        starts, length = window_starts(n, window, stride)
        owners = window_owners(n, starts, length)
        assert owners.shape == (n,)
        assert (numpy.diff(owners) >= 0).all()
        for p in range(n):
            own = int(starts[owners[p]])
            assert own <= p < own + length
            containing = [int(s) for s in starts if s <= p < s + length]
            best = max(edge_distance(p, s, length, n) for s in containing)
            assert edge_distance(p, own, length, n) == best, (n, p, starts.tolist())


def test_window_owners_split_the_overlap_in_the_middle():
    starts, length = window_starts(10, 6, 4)
    assert starts.tolist() == [0, 4] and length == 6
    assert window_owners(10, starts, 6).tolist() == [0] * 5 + [1] * 5


# layout_pieces --------------------------------------------------------------------

SPECIALS = {
    "none": SpecialPieces(prefix=[], suffix=[], pad_id=0, unk_id=3),
    "cls_sep": SpecialPieces(prefix=[1], suffix=[2], pad_id=0, unk_id=3),
    "two_two": SpecialPieces(prefix=[1, 5], suffix=[6, 2], pad_id=0, unk_id=3),
}


def random_doc_pieces(seed: int, lengths: List[int]) -> List[Tuple[numpy.ndarray, numpy.ndarray]]:
    """Docs of the given token counts, 1-4 pieces a token, every piece id
    unique (>= 1000) so that an id says which doc and piece it is."""
    rng = numpy.random.default_rng(seed)
    next_id = 1000
    output = []
    for n_tokens in lengths:
        counts = rng.integers(1, 5, size=n_tokens)
        owners = numpy.repeat(numpy.arange(n_tokens), counts).astype("int64")
        ids = numpy.arange(next_id, next_id + len(owners), dtype="int64")
        next_id += len(owners)
        output.append((ids, owners))
    return output


def flat_ids(layout) -> numpy.ndarray:
    if not layout.batches:
        return numpy.zeros((0,), dtype="int64")
    return numpy.concatenate([ids.reshape(-1) for ids, _ in layout.batches])


def read_positions(layout) -> numpy.ndarray:
    """For each row the encoder reads, its flat index into all calls' input
    positions, from the layout's per-call selections and gather (as
    PieceEncoder reads them)."""
    offsets = numpy.cumsum([0] + [ids.size for ids, _ in layout.batches])
    flat = [rows + offset for rows, offset in zip(layout.selections, offsets)]
    joined = numpy.concatenate(flat) if flat else numpy.zeros((0,), dtype="int64")
    return joined[layout.gather]


def row_window_start(layout, special: SpecialPieces, piece_of: Dict[int, Tuple[int, int]]):
    """For each flat position: (doc, start piece) of the window in its row."""
    out: List[Tuple[int, int]] = []
    n_prefix = len(special.prefix)
    for ids, _ in layout.batches:
        for row in ids:
            out.extend([piece_of[int(row[n_prefix])]] * len(row))
    return out


LAYOUT_CASES = [
    # (doc lengths in tokens, window, stride, batch_pieces)
    ([3, 0, 7, 1, 40, 12, 0, 90], 16, 12, 64),
    ([3, 0, 7, 1, 40, 12, 0, 90], 16, 16, 1),
    ([5, 60, 2], 8, 3, 10_000),
    ([200], 32, 24, 100),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 64, 48, 40),
]


@pytest.mark.parametrize("special_name", sorted(SPECIALS))
@pytest.mark.parametrize("lengths,window,stride,batch_pieces", LAYOUT_CASES)
def test_layout_first_pooling_reads_first_piece_of_each_token(
    special_name, lengths, window, stride, batch_pieces
):
    special = SPECIALS[special_name]
    doc_pieces = random_doc_pieces(0, lengths)
    layout = layout_pieces(
        doc_pieces, special, window=window, stride=stride, batch_pieces=batch_pieces,
        pooling="first",
    )
    assert layout.n_tokens == sum(lengths)
    assert layout.token_index is None
    positions = read_positions(layout)
    assert positions.shape == (sum(lengths),)
    expected = numpy.concatenate(
        [ids[numpy.r_[True, owners[1:] != owners[:-1]]] for ids, owners in doc_pieces if len(ids)]
    )
    flat = flat_ids(layout)
    assert flat[positions].tolist() == expected.tolist()
    # Each token is read in the window that owns its first piece.
    piece_of = {int(i): (d, p) for d, (ids, _) in enumerate(doc_pieces) for p, i in enumerate(ids)}
    row_start = row_window_start(layout, special, piece_of)
    for pos in positions:
        d, p = piece_of[int(flat[pos])]
        n = len(doc_pieces[d][0])
        starts, length = window_starts(n, window, stride)
        assert row_start[pos] == (d, int(starts[window_owners(n, starts, length)[p]]))


@pytest.mark.parametrize("special_name", sorted(SPECIALS))
@pytest.mark.parametrize("lengths,window,stride,batch_pieces", LAYOUT_CASES)
def test_layout_mean_pooling_reads_every_piece(special_name, lengths, window, stride, batch_pieces):
    special = SPECIALS[special_name]
    doc_pieces = random_doc_pieces(1, lengths)
    layout = layout_pieces(
        doc_pieces, special, window=window, stride=stride, batch_pieces=batch_pieces, pooling="mean"
    )
    all_ids = numpy.concatenate([ids for ids, _ in doc_pieces])
    offsets = numpy.cumsum([0] + lengths[:-1])
    token_index = numpy.concatenate(
        [owners + offset for (_, owners), offset in zip(doc_pieces, offsets)]
    )
    assert layout.n_tokens == sum(lengths)
    assert flat_ids(layout)[read_positions(layout)].tolist() == all_ids.tolist()
    assert layout.token_index.tolist() == token_index.tolist()


@pytest.mark.parametrize("special_name", sorted(SPECIALS))
@pytest.mark.parametrize("lengths,window,stride,batch_pieces", LAYOUT_CASES)
def test_layout_batches_are_padded_windows_within_budget(
    special_name, lengths, window, stride, batch_pieces
):
    special = SPECIALS[special_name]
    doc_pieces = random_doc_pieces(2, lengths)
    layout = layout_pieces(
        doc_pieces, special, window=window, stride=stride, batch_pieces=batch_pieces,
        pooling="first",
    )
    piece_of = {int(i): (d, p) for d, (ids, _) in enumerate(doc_pieces) for p, i in enumerate(ids)}
    n_prefix, n_suffix = len(special.prefix), len(special.suffix)
    seen = set()
    for ids, mask in layout.batches:
        assert ids.shape == mask.shape and ids.ndim == 2
        assert ids.size <= batch_pieces or ids.shape[0] == 1
        for row, row_mask in zip(ids, mask):
            n_real = int(row_mask.sum())
            assert row_mask[:n_real].all() and not row_mask[n_real:].any()
            assert (row[n_real:] == special.pad_id).all()
            assert row[:n_prefix].tolist() == special.prefix
            assert row[n_real - n_suffix : n_real].tolist() == special.suffix
            content = [piece_of[int(i)] for i in row[n_prefix : n_real - n_suffix]]
            assert 1 <= len(content) <= window
            d, start = content[0]
            assert content == [(d, start + k) for k in range(len(content))]
            seen.add(content[0])
    n_windows = sum(
        len(window_starts(len(ids), window, stride)[0]) for ids, _ in doc_pieces if len(ids)
    )
    assert len(seen) == n_windows


def test_layout_empty_docs_give_no_rows():
    special = SPECIALS["cls_sep"]
    empty = (numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="int64"))
    for pooling in ("first", "mean"):
        for docs in ([], [empty], [empty, empty]):
            layout = layout_pieces(
                docs, special, window=8, stride=4, batch_pieces=64, pooling=pooling
            )
            assert layout.batches == [] and layout.selections == []
            assert read_positions(layout).shape == (0,)
            assert layout.n_tokens == 0
        ids = numpy.asarray([1000, 1001, 1002], dtype="int64")
        owners = numpy.asarray([0, 0, 1], dtype="int64")
        layout = layout_pieces(
            [empty, (ids, owners), empty], special, window=8, stride=4, batch_pieces=64,
            pooling=pooling,
        )
        assert layout.n_tokens == 2
        assert len(layout.batches) == 1 and layout.batches[0][0].shape == (1, 5)
        expected = [1000, 1002] if pooling == "first" else [1000, 1001, 1002]
        assert flat_ids(layout)[read_positions(layout)].tolist() == expected


# The encoder, end to end ------------------------------------------------------------


def make_encoder(path: Path, **kwargs):
    model = build_hf_encoder(name=str(path), **kwargs)
    model.initialize()
    return model


def one_piece_words(tokenizer: Any) -> List[str]:
    candidates = "the fox over in is do I New York a b c d e f g h i j k l m n o p".split()
    words = [w for w in candidates if len(word_pieces(tokenizer, w)) == 1]
    assert len(words) >= 3
    return words


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_encoder_one_row_per_token(encoder_dir, odd_docs, vocab, pooling):
    model = make_encoder(encoder_dir, pooling=pooling, window=32, stride=24)
    docs = [*odd_docs, Doc(vocab, words=[]), odd_docs[0]]
    Y = model.predict(docs)
    assert len(Y) == len(docs)
    for doc, y in zip(docs, Y):
        assert y.shape == (len(doc), model.get_dim("nO"))
        assert numpy.isfinite(y).all()


def test_encoder_one_row_per_token_of_a_long_doc(encoder_dir, vocab):
    window, stride = 32, 24
    model = make_encoder(encoder_dir, window=window, stride=stride)
    rng = numpy.random.default_rng(0)
    pool = [w for words, _ in ODD_DOCS for w in words] + ["word"] * 20
    long_doc = Doc(vocab, words=[pool[i] for i in rng.integers(0, len(pool), size=5000)])
    ids, _ = tokenize_docs(model.shims[0].tokenizer, [long_doc], 0)[0]
    assert len(window_starts(len(ids), window, stride)[0]) > 100
    docs = [Doc(vocab, words=["a"]), long_doc, Doc(vocab, words=[])]
    Y = model.predict(docs)
    assert [y.shape for y in Y] == [(len(doc), model.get_dim("nO")) for doc in docs]
    assert numpy.isfinite(Y[1]).all()


def test_encoder_empty_doc_alone(encoder_dir, vocab):
    model = make_encoder(encoder_dir, window=32, stride=24)
    Y = model.predict([Doc(vocab, words=[])])
    assert len(Y) == 1
    assert Y[0].shape == (0, model.get_dim("nO"))


def test_encoder_no_docs_gives_no_outputs(wordpiece):
    model = make_encoder(wordpiece, window=32, stride=24)
    assert len(model.predict([])) == 0


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_encoder_batching_and_padding_do_not_change_vectors(encoder_dir, odd_docs, vocab, pooling):
    model = make_encoder(encoder_dir, pooling=pooling, window=128, stride=96)
    docs = [
        Doc(vocab, words="Angela Merkel visited New York City in 2019 .".split()),
        odd_docs[0],
        Doc(vocab, words=["a"]),
        odd_docs[3],
        Doc(vocab, words=[]),
        odd_docs[6],
        odd_docs[1],
    ]
    batched = model.predict(docs)
    model.attrs["settings"] = dataclasses.replace(model.attrs["settings"], batch_pieces=1)  # one window per encoder call
    unbatched = model.predict(docs)
    for i, doc in enumerate(docs):
        alone = model.predict([doc])[0]
        numpy.testing.assert_allclose(batched[i], alone, atol=1e-5, rtol=0)
        numpy.testing.assert_allclose(unbatched[i], alone, atol=1e-5, rtol=0)


def test_encoder_long_doc_equals_its_windows_read_alone(encoder_dir, vocab):
    window, stride, n = 32, 24, 100
    model = make_encoder(encoder_dir, window=window, stride=stride)
    words = one_piece_words(model.shims[0].tokenizer)
    long_doc = Doc(vocab, words=[words[i % len(words)] for i in range(n)])
    ids, owners = tokenize_docs(model.shims[0].tokenizer, [long_doc], 0)[0]
    assert owners.tolist() == list(range(n)), "one piece per token"
    starts, length = window_starts(n, window, stride)
    owner = window_owners(n, starts, length)
    Y = model.predict([long_doc])[0]
    for k in (0, len(starts) - 1):
        s = int(starts[k])
        part = model.predict([long_doc[s : s + length].as_doc()])[0]
        read_here = numpy.flatnonzero(owner == k)
        assert len(read_here) >= length // 2
        numpy.testing.assert_allclose(Y[read_here], part[read_here - s], atol=1e-5, rtol=0)
    # A middle window is read with its own context only, not the doc's.
    s = int(starts[1])
    middle = model.predict([long_doc[s : s + length].as_doc()])[0]
    read_here = numpy.flatnonzero(owner == 1)
    numpy.testing.assert_allclose(Y[read_here], middle[read_here - s], atol=1e-5, rtol=0)


def test_encoder_mean_equals_first_for_one_piece_tokens(encoder_dir, odd_docs):
    model = make_encoder(encoder_dir, pooling="first", window=64, stride=48)
    tokenizer = model.shims[0].tokenizer
    first = model.predict(odd_docs)
    model.attrs["settings"] = dataclasses.replace(model.attrs["settings"], pooling="mean")
    mean = model.predict(odd_docs)
    pieces = tokenize_docs(tokenizer, odd_docs, model.shims[0].special.unk_id)
    n_multi = 0
    for y_first, y_mean, (_, owners) in zip(first, mean, pieces):
        counts = numpy.bincount(owners, minlength=len(y_first))
        single = counts == 1
        numpy.testing.assert_allclose(y_first[single], y_mean[single], atol=1e-5, rtol=0)
        if (~single).any():
            n_multi += 1
            assert not numpy.allclose(y_first[~single], y_mean[~single], atol=1e-5)
    assert n_multi > 0


@pytest.mark.parametrize("pooling", ["first", "mean"])
@pytest.mark.parametrize("lengths,window,stride,batch_pieces", LAYOUT_CASES)
def test_layout_selections_are_local_rows_of_each_call(
    pooling, lengths, window, stride, batch_pieces
):
    """Each call selects rows of its own input, and gather is a permutation
    of all selected rows."""
    special = SPECIALS[sorted(SPECIALS)[0]]
    layout = layout_pieces(
        random_doc_pieces(1, lengths), special, window=window, stride=stride,
        batch_pieces=batch_pieces, pooling=pooling,
    )
    assert len(layout.selections) == len(layout.batches)
    for (ids, _), rows in zip(layout.batches, layout.selections):
        assert ((rows >= 0) & (rows < ids.size)).all()
    n_rows = sum(len(rows) for rows in layout.selections)
    assert sorted(layout.gather.tolist()) == list(range(n_rows))


def test_split_by_call_reads_the_same_rows_as_flat_positions():
    """concat(per-call selected rows)[gather] == flat[positions], in order."""
    rng = numpy.random.default_rng(0)
    call_sizes = [6, 0, 10, 4]
    flat = rng.normal(size=(sum(call_sizes), 3))
    positions = rng.permutation(sum(call_sizes))[:12]
    selections, gather = split_by_call(positions, call_sizes)
    assert [len(rows) for rows in selections] == [
        int(((positions >= a) & (positions < a + n)).sum())
        for a, n in zip(numpy.cumsum([0] + call_sizes[:-1]), call_sizes)
    ]
    calls = numpy.split(flat, numpy.cumsum(call_sizes)[:-1])
    joined = numpy.concatenate([call[rows] for call, rows in zip(calls, selections)])
    assert (joined[gather] == flat[positions]).all()
