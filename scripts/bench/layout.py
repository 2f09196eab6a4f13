"""`python scripts/bench/benchmark.py layout`: how token_classifier cuts CoNLL-2003
dev into windows and encoder calls (pieces encoded, overlap included, and
the share of padded positions), with the padding limits as arguments of
spacy_tokclf.layers.pieces.layout_pieces."""
from typing import Any, List, Optional

from common import CONLL_DEV, check_inputs, read_docs, resolve_encoder


def layout(args) -> None:
    """How token_classifier lays out CoNLL-2003 dev for the encoder: pieces,
    windows, encoder calls and padding, per unit, in nlp.pipe batches."""
    from transformers import AutoTokenizer

    from spacy_tokclf.layers import pieces as alignment
    from spacy_tokclf.pipeline import DEFAULT_CONFIG

    check_inputs(CONLL_DEV)
    settings = DEFAULT_CONFIG["model"]["tok2vec"]
    max_padding = alignment.MAX_PADDING if args.max_padding is None else args.max_padding
    min_padding = alignment.MIN_PADDING if args.min_padding is None else args.min_padding
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder), use_fast=True)
    tokenizer, special = alignment.prepare_tokenizer(tokenizer)  # as the component does
    print(
        f"window {settings['window']}, stride {settings['stride']}, batch_pieces "
        f"{settings['batch_pieces']}, padding limit {max_padding:.0%} "
        f"(at least {min_padding}), nlp.pipe batches of {args.batch_size} docs"
    )
    for unit in args.units:
        docs = read_docs(CONLL_DEV, unit)
        pieces = alignment.tokenize_docs(tokenizer, docs, special.unk_id)
        n_pieces = sum(len(ids) for ids, _ in pieces)
        sentence_starts: Optional[List[Any]] = None
        if args.context is not None:
            # The docs' gold sentence boundaries, as HFEncoder.v2 reads them.
            from spacy_tokclf.layers.hf_encoder import sentence_piece_starts

            sentence_starts = sentence_piece_starts(docs, pieces)
        calls = padded = real = windows = 0
        for i in range(0, len(pieces), args.batch_size):
            part = alignment.layout_pieces(
                pieces[i : i + args.batch_size],
                special,
                window=settings["window"],
                stride=settings["stride"],
                batch_pieces=settings["batch_pieces"],
                pooling=settings["pooling"],
                sentence_starts=(
                    None if sentence_starts is None else sentence_starts[i : i + args.batch_size]
                ),
                context=args.context,
                max_padding=max_padding,
                min_padding=min_padding,
            )
            calls += len(part.batches)
            padded += sum(ids.size for ids, _ in part.batches)
            real += sum(int(mask.sum()) for _, mask in part.batches)
            windows += sum(len(ids) for ids, _ in part.batches)
        encoded = real - windows * (len(special.prefix) + len(special.suffix))
        print(
            f"{unit}s: {len(docs):,} docs, {sum(len(d) for d in docs):,} words, "
            f"{n_pieces:,} pieces; {windows:,} windows encode {encoded:,} pieces "
            f"({encoded / n_pieces:.2f}x); {calls} encoder calls, {padded:,} positions, "
            f"{1 - real / padded:.1%} padding"
        )
