"""A doc's word pieces -> the windows the encoder reads them in.

Without sentence boundaries (context None) a doc is read in the fewest
overlapping windows of one length (`window_starts`); with them, sentence by
sentence, each with up to `context` pieces of its neighbours
(`sentence_windows`). Either way every piece takes its vector from one
window, its owner. pieces.layout_pieces lays the windows out in padded
batches.
"""
from typing import List, Sequence, Tuple, Union

import numpy

# Piece offsets (of a doc's sentence starts), ascending.
Offsets = Union[Sequence[int], numpy.ndarray]


def window_starts(n_pieces: int, window: int, stride: int) -> Tuple[numpy.ndarray, int]:
    """Start offsets and length of the windows covering n_pieces pieces.

    A sequence that fits in one window gets exactly one, of its own length.
    A longer one gets the fewest windows of at most `window` pieces in which
    neighbours overlap by at least `window - stride` pieces, all of one
    length and spread evenly from its start to its end, so that no more
    pieces are encoded twice than that overlap needs (a 350-piece doc with
    window 256 and stride 192 is read as two windows of 207, not of 256).

    RETURNS (Tuple[numpy.ndarray, int]): the starts, ascending, and the
        windows' length.
    """
    if n_pieces <= window:
        return numpy.zeros((1,), dtype="int64"), n_pieces
    overlap = window - stride
    # Each window after the first adds at most `stride` new pieces.
    k = 1 + -(-(n_pieces - window) // stride)
    length = -(-(n_pieces + (k - 1) * overlap) // k)
    # Steps differ by at most one piece, and none exceeds length - overlap.
    starts = numpy.arange(k, dtype="int64") * (n_pieces - length) // (k - 1)
    return starts, length


def window_owners(n_pieces: int, starts: numpy.ndarray, length: int) -> numpy.ndarray:
    """For each piece, the window (of `length` pieces) whose centre it is
    closest to.

    In the overlap of two windows, the first half belongs to the earlier
    window and the second half to the later one, so every piece is read with
    as much context on both sides as the windows allow.
    """
    owners = numpy.zeros((n_pieces,), dtype="int64")
    for k in range(1, len(starts)):
        # Overlap of window k-1 and k is [starts[k], starts[k-1] + length).
        boundary = (int(starts[k]) + int(starts[k - 1]) + length) // 2
        owners[boundary:] = k
    return owners


def sentence_windows(
    n_pieces: int, sentence_starts: Offsets, *, context: int, window: int, stride: int
) -> Tuple[List[Tuple[int, int]], numpy.ndarray]:
    """Windows of one doc read sentence by sentence, with context.

    sentence_starts: piece offset of each sentence's first piece (ascending,
        the first 0).
    context == 0: each sentence is read alone. context > 0: consecutive
        sentences share a window as long as the window also holds `context`
        pieces before the first and after the last of them (or the doc's
        edge), so every sentence is read with at least `context` pieces of
        its neighbours on each side, as far as the doc and the window allow.
        Sharing keeps the extra pieces (and time) small: reading each sentence
        in its own window would encode each context piece many times over.
    A sentence longer than the window is read in overlapping windows over
    itself (window_starts), as a doc without sentences is.

    RETURNS (Tuple[List[Tuple[int, int]], numpy.ndarray]): the windows as
        (start, end) piece offsets, ascending, and for each piece the index
        of the window it takes its vector from.
    """
    edges = [int(s) for s in sentence_starts if 0 < int(s) < n_pieces]
    bounds = list(zip([0] + edges, edges + [n_pieces]))
    windows: List[Tuple[int, int]] = []
    owners = numpy.zeros((n_pieces,), dtype="int64")
    i = 0
    while i < len(bounds):
        a, b = bounds[i]
        if b - a > window:
            starts, length = window_starts(b - a, window, stride)
            owners[a:b] = window_owners(b - a, starts, length) + len(windows)
            windows.extend((a + int(s), a + int(s) + length) for s in starts)
            i += 1
            continue
        j = i + 1
        if context > 0:
            # Add the next sentence while the core and its context still fit.
            while j < len(bounds):
                end = bounds[j][1]
                if end - a + min(context, a) + min(context, n_pieces - end) > window:
                    break
                j += 1
        b = bounds[j - 1][1]
        budget = window - (b - a)
        want_left, want_right = min(context, a), min(context, n_pieces - b)
        if want_left + want_right <= budget:
            left, right = want_left, want_right
        else:
            # Too little room for both sides: share it evenly.
            left = min(want_left, max(budget // 2, budget - want_right))
            right = min(want_right, budget - left)
        owners[a:b] = len(windows)
        windows.append((a - left, b + right))
        i = j
    return windows, owners
