"""spaCy tokens -> word pieces -> windows -> padded batches, and back (the
windows of one doc are cut in windows.py).

The tokenizer sees the spaCy tokens as pre-split words (as Hugging Face's own
token-classification recipe does), so every word piece belongs to exactly one
spaCy token whatever the tokenizer family: WordPiece, byte-level BPE or
SentencePiece. No character offsets are involved, so none can be off.

A token for which the tokenizer yields no piece at all (whitespace, a lone
zero-width or control character) is given the tokenizer's unknown piece, in
place, so it still sits in context and still gets a vector.
"""
import copy
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy

from spacy.tokens import Doc

from ..errors import EncoderErrors, error
from .windows import Offsets, sentence_windows, window_owners, window_starts

# A batch is closed when padding would exceed this share of its positions
# (or MIN_PADDING positions, whichever is more): padding costs as much compute
# as real pieces, while each extra encoder call costs only a little overhead.
# Chosen by measurement (`python scripts/bench/benchmark.py layout --max-padding
# --min-padding`, CoNLL-2003 dev, MiniLM): smaller limits add calls for no gain.
MAX_PADDING = 0.05
MIN_PADDING = 32

# (piece ids [n_pieces], token index of each piece [n_pieces]) for one doc.
DocPieces = Tuple[numpy.ndarray, numpy.ndarray]


@dataclass
class SpecialPieces:
    """The ids a tokenizer puts around every sequence, and its pad/unk ids."""

    prefix: List[int]
    suffix: List[int]
    pad_id: int
    unk_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "SpecialPieces":
        # Ask the tokenizer's own post-processor, so any model family works.
        backend = tokenizer.backend_tokenizer
        enc = backend.encode(["a"], is_pretokenized=True, add_special_tokens=True)
        mask = enc.special_tokens_mask
        content = [i for i, m in enumerate(mask) if not m]
        first, last = (content[0], content[-1]) if content else (len(mask), len(mask))
        pad_id = tokenizer.pad_token_id
        return cls(
            prefix=list(enc.ids[:first]),
            suffix=list(enc.ids[last + 1 :]),
            pad_id=pad_id if pad_id is not None else 0,
            unk_id=_stand_in_piece(tokenizer),
        )


def _stand_in_piece(tokenizer: Any) -> int:
    """The piece given to a token that yields none: the unknown piece, else the
    mask piece, else the piece of "?". Never the padding piece: for RoBERTa-like
    models that id is also the padding index of the position table, so it would
    shift the positions of every piece after it.
    """
    for piece_id in (tokenizer.unk_token_id, tokenizer.mask_token_id):
        if piece_id is not None:
            return int(piece_id)
    ids = tokenizer.backend_tokenizer.encode(["?"], is_pretokenized=True, add_special_tokens=False).ids
    if ids and ids[0] != tokenizer.pad_token_id:
        return int(ids[0])
    raise ValueError(error(EncoderErrors.NO_STAND_IN_PIECE, kind=type(tokenizer).__name__))


def prepare_tokenizer(tokenizer: Any) -> Tuple[Any, SpecialPieces]:
    """A copy of the tokenizer with the padding and truncation that a
    tokenizer.json may turn on switched off (all-MiniLM-L6-v2's pads to 128):
    they would pad every window and silently cut long documents. Windows and
    padding are laid out here instead. The tokenizer given is not changed.

    RETURNS (Tuple[PreTrainedTokenizerFast, SpecialPieces]): the copy and its
        special pieces (read after padding is off, so none is counted).
    """
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    return tokenizer, SpecialPieces.from_tokenizer(tokenizer)


def check_no_truncation(tokenizer: Any) -> None:
    """Raise if padding or truncation was switched on again after
    prepare_tokenizer: a long doc would be cut, and its last tokens would get
    the stand-in piece, without a word."""
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None or backend.padding is not None:
        raise ValueError(
            error(
                EncoderErrors.TOKENIZER_TRUNCATES,
                truncation=backend.truncation,
                padding=backend.padding,
            )
        )


def tokenize_docs(tokenizer: Any, docs: Sequence[Doc], unk_id: int) -> List[DocPieces]:
    """Split each doc's tokens into word pieces, in one batched tokenizer call.

    tokenizer (PreTrainedTokenizerFast): the encoder's fast tokenizer.
    docs (Sequence[Doc]): the docs.
    unk_id (int): the piece given to a token that yields no piece.
    RETURNS (List[DocPieces]): per doc, piece ids and the token of each piece.
        Token indices are sorted and every token of the doc owns >= 1 piece.
    """
    check_no_truncation(tokenizer)
    words = [[t.text for t in doc] for doc in docs if len(doc)]
    encodings = iter(
        tokenizer.backend_tokenizer.encode_batch(
            words, is_pretokenized=True, add_special_tokens=False
        )
        if words
        else []
    )
    output: List[DocPieces] = []
    for doc in docs:
        n_tokens = len(doc)
        if n_tokens == 0:
            empty = numpy.zeros((0,), dtype="int64")
            output.append((empty, empty))
            continue
        enc = next(encodings)
        ids = numpy.asarray(enc.ids, dtype="int64")
        word_ids = enc.word_ids
        try:
            owners = numpy.fromiter(word_ids, dtype="int64", count=len(word_ids))
        except TypeError:
            # None marks special pieces; they are not asked for, but drop any.
            owners = numpy.asarray([-1 if w is None else w for w in word_ids], dtype="int64")
            keep = owners >= 0
            ids, owners = ids[keep], owners[keep]
        counts = numpy.bincount(owners, minlength=n_tokens)
        empty_tokens = numpy.flatnonzero(counts == 0)
        if len(empty_tokens):
            ids = numpy.concatenate([ids, numpy.full(len(empty_tokens), unk_id)])
            owners = numpy.concatenate([owners, empty_tokens])
            # A stable sort keeps each token's pieces in order.
            order = numpy.argsort(owners, kind="stable")
            ids, owners = ids[order], owners[order]
        output.append((ids, owners))
    return output


@dataclass
class PieceLayout:
    """Where every piece of a batch of docs sits in the padded encoder input
    (piece_encoder.EncoderInputs carries it to torch, as tensors). R is the
    number of rows read: one per token with pooling "first", one per piece
    with "mean".

    batches: per encoder call, (input ids [B, L], attention mask [B, L]).
    selections: per call, the rows of its own hidden states [B * L, H] to
        keep, so that each call's full hidden states can be dropped as soon
        as it returns.
    gather [R]: for each row read, its index into the concatenation of the
        calls' selected rows.
    token_index [R] or None: for each row read, the row of its output token
        (tokens numbered across the whole batch of docs); None when pooling
        "first", where the rows are already one per token.
    n_tokens: total number of spaCy tokens.
    """

    batches: List[Tuple[numpy.ndarray, numpy.ndarray]]
    selections: List[numpy.ndarray]
    gather: numpy.ndarray
    token_index: Optional[numpy.ndarray]
    n_tokens: int


def layout_pieces(
    doc_pieces: Sequence[DocPieces],
    special: SpecialPieces,
    *,
    window: int,
    stride: int,
    batch_pieces: int,
    pooling: str,
    sentence_starts: Optional[Sequence[Optional[Offsets]]] = None,
    context: Optional[int] = None,
    max_padding: float = MAX_PADDING,
    min_padding: int = MIN_PADDING,
) -> PieceLayout:
    """Cut each doc's pieces into windows and pack the windows into batches.

    Without sentences (sentence_starts None, or None for a doc, or context
    None) a doc is read in the fewest overlapping windows (window_starts).
    With them, it is read sentence by sentence with `context` pieces around
    each (sentence_windows); sentence_starts holds, per doc, the piece offset
    of each sentence's first piece.

    Windows are sorted by length and packed so that no call holds more than
    `batch_pieces` padded positions (at least one window a call) and little
    padding: at most `max_padding` of a call's positions, or `min_padding`
    positions, whichever is more (see MAX_PADDING), however much the lengths vary.
    """
    n_prefix, n_suffix = len(special.prefix), len(special.suffix)
    # Per window: (doc index, start, end) in that doc's pieces.
    windows: List[Tuple[int, int, int]] = []
    # Per doc: (index of its first window, owner window offset per piece).
    doc_windows: List[Tuple[int, numpy.ndarray]] = []
    for d, (ids, _) in enumerate(doc_pieces):
        n = len(ids)
        if n == 0:
            doc_windows.append((len(windows), numpy.zeros((0,), dtype="int64")))
            continue
        sents = sentence_starts[d] if sentence_starts is not None else None
        if sents is not None and context is not None:
            spans, owner = sentence_windows(
                n, sents, context=context, window=window, stride=stride
            )
            doc_windows.append((len(windows), owner))
            windows.extend((d, s, e) for s, e in spans)
            continue
        starts, length = window_starts(n, window, stride)
        doc_windows.append((len(windows), window_owners(n, starts, length)))
        for s in starts:
            windows.append((d, int(s), int(s) + length))
    order = sorted(range(len(windows)), key=lambda w: windows[w][2] - windows[w][1])
    lengths_sorted = [windows[w][2] - windows[w][1] + n_prefix + n_suffix for w in order]
    # Flat offset of position 0 of each window in the concatenated output.
    window_offset = numpy.zeros((len(windows),), dtype="int64")
    batches: List[Tuple[numpy.ndarray, numpy.ndarray]] = []
    flat = 0
    i = 0
    while i < len(order):
        # Ascending order: the batch's width is its last window's length.
        j = i + 1
        real = lengths_sorted[i]
        while j < len(order):
            padded = (j - i + 1) * lengths_sorted[j]
            if padded > batch_pieces or padded - (real + lengths_sorted[j]) > max(
                max_padding * padded, min_padding
            ):
                break
            real += lengths_sorted[j]
            j += 1
        members = order[i:j]
        d, s, e = windows[members[-1]]
        width = e - s + n_prefix + n_suffix
        ids = numpy.full((len(members), width), special.pad_id, dtype="int64")
        mask = numpy.zeros((len(members), width), dtype="int64")
        for row, w in enumerate(members):
            d, s, e = windows[w]
            seq = numpy.concatenate(
                [special.prefix, doc_pieces[d][0][s:e], special.suffix]
            )
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
            window_offset[w] = flat + row * width + n_prefix
        batches.append((ids, mask))
        flat += len(members) * width
        i = j
    # For each row read, its flat index into the concatenation of all calls'
    # hidden states reshaped to [sum(B * L), H].
    positions = []
    token_rows = []
    n_tokens = 0
    for d, (ids, owners) in enumerate(doc_pieces):
        first_window, owner = doc_windows[d]
        if len(ids) == 0:
            continue
        n_doc_tokens = int(owners[-1]) + 1
        piece_idx = numpy.arange(len(ids))
        piece_window = first_window + owner
        starts = numpy.asarray([windows[k][1] for k in range(first_window, first_window + owner[-1] + 1)])
        pos = window_offset[piece_window] + piece_idx - starts[owner]
        if pooling == "first":
            is_first = numpy.ones((len(owners),), dtype=bool)
            is_first[1:] = owners[1:] != owners[:-1]
            positions.append(pos[is_first])
        else:
            positions.append(pos)
            token_rows.append(owners + n_tokens)
        n_tokens += n_doc_tokens
    empty = numpy.zeros((0,), dtype="int64")
    flat_positions = numpy.concatenate(positions) if positions else empty
    selections, gather = split_by_call(flat_positions, [ids.size for ids, _ in batches])
    return PieceLayout(
        batches=batches,
        selections=selections,
        gather=gather,
        token_index=(
            None
            if pooling == "first"
            else (numpy.concatenate(token_rows) if token_rows else empty)
        ),
        n_tokens=n_tokens,
    )


def split_by_call(
    positions: numpy.ndarray, call_sizes: Sequence[int]
) -> Tuple[List[numpy.ndarray], numpy.ndarray]:
    """Split flat positions into per-call local positions, and the
    permutation that puts the calls' selected rows back in position order.

    positions [R]: flat indices into the concatenated [sum(B * L), H] states.
    call_sizes: B * L of each call.
    RETURNS: per call, local row indices (ascending position order within the
        call); gather [R] with concat(selected)[gather] == flat[positions].
    """
    offsets = numpy.zeros((len(call_sizes) + 1,), dtype="int64")
    numpy.cumsum(call_sizes, out=offsets[1:])
    call = numpy.searchsorted(offsets, positions, side="right") - 1
    by_call = numpy.argsort(call, kind="stable")
    bounds = numpy.searchsorted(call[by_call], numpy.arange(len(call_sizes) + 1))
    selections = [
        positions[by_call[bounds[k] : bounds[k + 1]]] - offsets[k] for k in range(len(call_sizes))
    ]
    gather = numpy.empty_like(by_call)
    gather[by_call] = numpy.arange(len(by_call))
    return selections, gather
