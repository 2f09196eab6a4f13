"""A saved pipeline is untrusted input (issue 26, finding 1). The saved
encoder holds its tokenizer as a table of file names -> bytes; loading wrote
each entry to `temp dir / name`, so a table naming "/abs/path" or "../../x"
wrote there. Now every name must be a plain file name, or the load stops
with an error naming it before anything is written, and the files of a valid
table are written only inside a fresh temporary directory, removed after.

Each hostile table is tried through `nlp.to_disk` -> edit the component's
model file -> `spacy.load`, and through `nlp.to_bytes` -> edit ->
`nlp.from_bytes`. Python's temporary directory is moved under the test's
tmp_path, so that "../../x" from inside it lands in tmp_path too, where the
test can see whether it was written.
"""
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Set

import pytest
import spacy
import srsly
from spacy.util import load_model_from_config

from .util import make_examples, make_nlp

NAME = "token_classifier"
PAYLOAD = b"written by a hostile pipeline"
NOT_PLAIN = "which is not a plain file name"


@pytest.fixture(scope="module")
def initialized(encoders, tmp_path_factory):
    """An initialized (untrained) pipeline, saved once."""
    nlp = make_nlp(encoders["wordpiece"])
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    path = tmp_path_factory.mktemp("untrusted") / "pipeline"
    nlp.to_disk(path)
    return nlp, path


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """Python's temporary directory, two levels under tmp_path."""
    root = tmp_path / "outer" / "temp"
    root.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def load_error(load: Callable[[], object]) -> str:
    """The message of the ValueError that `load` raises ("" if none)."""
    try:
        load()
    except ValueError as err:
        return str(err)
    return ""


def files_under(path: Path) -> Set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


def edit_tokenizer_table(model_bytes: bytes, edit: Callable[[Dict], None]) -> bytes:
    """The component's model bytes with the encoder's tokenizer table edited."""
    msg = srsly.msgpack_loads(model_bytes)
    edited = 0
    for node_shims in msg["shims"]:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            edit(shim["tokenizer"])
            node_shims[i] = srsly.msgpack_dumps(shim)
            edited += 1
    assert edited == 1
    return srsly.msgpack_dumps(msg)


# Names in the table: "{tmp}" is tmp_path. With a target: where loading used
# to write the file (outside the temporary directory it was meant for).
ESCAPING = {
    "absolute": ("{tmp}/absolute-target", "absolute-target"),
    "parent-of-parent": ("../../escaped", "outer/escaped"),
    "sibling": ("../temp-sibling", "outer/temp/temp-sibling"),
}
OTHER_BAD_NAMES = ["a/b", "..", ".", "", "a\\b", "nul\0name", "C:evil", "sub/../x"]
CASES = {**ESCAPING, **{repr(name): (name, None) for name in OTHER_BAD_NAMES}}


def bad_name(tmp_path: Path, case: str):
    """The table's name and, for an escaping one, the path it aimed at."""
    name, target = CASES[case]
    return name.replace("{tmp}", str(tmp_path)), (tmp_path / target if target else None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_tokenizer_name_on_disk_is_refused_and_writes_nothing(
    initialized, tmp_path, temp_root, case
):
    _, saved_path = initialized
    name, target = bad_name(tmp_path, case)
    copy = tmp_path / "copy"
    shutil.copytree(saved_path, copy)
    model_file = copy / NAME / "model"
    model_file.write_bytes(
        edit_tokenizer_table(model_file.read_bytes(), lambda table: table.update({name: PAYLOAD}))
    )
    before = files_under(tmp_path)
    message = load_error(lambda: spacy.load(copy))
    # Nothing written (checked first: it is what the old code got wrong).
    if target is not None:
        assert not target.exists()
    assert files_under(tmp_path) == before
    assert list(temp_root.iterdir()) == []
    assert NOT_PLAIN in message and repr(name) in message
    assert str(model_file) in message  # the file that holds the table


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_tokenizer_name_in_bytes_is_refused_and_writes_nothing(
    initialized, tmp_path, temp_root, case
):
    nlp, _ = initialized
    name, target = bad_name(tmp_path, case)
    msg = srsly.msgpack_loads(nlp.to_bytes())
    pipe_msg = srsly.msgpack_loads(msg[NAME])
    pipe_msg["model"] = edit_tokenizer_table(
        pipe_msg["model"], lambda table: table.update({name: PAYLOAD})
    )
    msg[NAME] = srsly.msgpack_dumps(pipe_msg)
    data = srsly.msgpack_dumps(msg)
    before = files_under(tmp_path)
    messages = [
        load_error(lambda: load_model_from_config(nlp.config, auto_fill=True).from_bytes(data)),
        load_error(lambda: make_nlp(Path("/no/such/encoder")).get_pipe(NAME).from_bytes(msg[NAME])),
    ]
    if target is not None:
        assert not target.exists()
    assert files_under(tmp_path) == before
    assert list(temp_root.iterdir()) == []
    for message in messages:
        assert NOT_PLAIN in message and repr(name) in message


def test_table_that_is_not_names_to_bytes_is_refused(initialized, tmp_path, temp_root):
    nlp, _ = initialized
    pipe_bytes = nlp.get_pipe(NAME).to_bytes()
    for edit, found in [
        (lambda table: table.update({"vocab.txt": "text, not bytes"}), "vocab.txt: str"),
        (lambda table: table.update({7: b"x"}), "7"),
    ]:
        msg = srsly.msgpack_loads(pipe_bytes)
        msg["model"] = edit_tokenizer_table(msg["model"], edit)
        with pytest.raises(ValueError, match="tokenizer files") as err:
            make_nlp(Path("/no/such/encoder")).get_pipe(NAME).from_bytes(srsly.msgpack_dumps(msg))
        assert found in str(err.value)
    assert list(temp_root.iterdir()) == []


def test_valid_table_is_written_only_inside_a_removed_temp_dir(initialized, tmp_path, temp_root):
    """A valid pipeline loads, and its tokenizer files went only into a
    temporary directory under Python's temp root, which is gone afterwards."""
    _, saved_path = initialized
    created = []
    original = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        created.append(Path(original(*args, **kwargs)))
        return str(created[-1])

    before = files_under(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkdtemp", mkdtemp)
        nlp = spacy.load(saved_path)
    assert nlp("Angela Merkel visited Paris.") is not None
    assert created and all(path.parent == temp_root for path in created)
    assert all(not path.exists() for path in created)
    assert files_under(tmp_path) == before


def test_code_in_a_saved_pipeline_is_not_run(initialized, tmp_path, temp_root):
    """A plain file name may hold Python, and the tokenizer and transformer
    configs may name it (`auto_map`): loading never runs it (no
    trust_remote_code), and the pipeline loads with its own classes."""
    _, saved_path = initialized
    marker = tmp_path / "code-ran"
    code = f"open({str(marker)!r}, 'w').close()\nfrom transformers import *\n"
    copy = tmp_path / "copy"
    shutil.copytree(saved_path, copy)
    model_file = copy / NAME / "model"
    msg = srsly.msgpack_loads(model_file.read_bytes())
    for node_shims in msg["shims"]:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            table = shim["tokenizer"]
            tokenizer_config = srsly.json_loads(table["tokenizer_config.json"])
            tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "evil.EvilTokenizer"]}
            table["tokenizer_config.json"] = srsly.json_dumps(tokenizer_config).encode("utf8")
            table["evil.py"] = code.encode("utf8")
            shim["config"]["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.M"}
            node_shims[i] = srsly.msgpack_dumps(shim)
    model_file.write_bytes(srsly.msgpack_dumps(msg))
    nlp = spacy.load(copy)
    shim = nlp.get_pipe(NAME).model.get_ref("tok2vec").shims[0]
    assert type(shim.tokenizer).__module__.startswith("transformers.")
    assert type(shim.transformer).__module__.startswith("transformers.")
    assert not marker.exists()
    assert list(temp_root.iterdir()) == []


def test_saved_table_holds_plain_names_only(initialized, tmp_path):
    """transformers writes extra chat templates into a subdirectory; the
    saved table leaves them out (a token classifier never applies a chat
    template), so that a pipeline's own files always load."""
    nlp, _ = initialized
    copy = load_model_from_config(nlp.config, auto_fill=True).from_bytes(nlp.to_bytes())
    shim = copy.get_pipe(NAME).model.get_ref("tok2vec").shims[0]
    shim.tokenizer.chat_template = {"default": "{{ messages }}", "tool_use": "{{ tools }}"}
    copy.to_disk(tmp_path / "p")
    msg = srsly.msgpack_loads((tmp_path / "p" / NAME / "model").read_bytes())
    [shim_bytes] = [data for node_shims in msg["shims"] for data in node_shims]
    table = srsly.msgpack_loads(shim_bytes)["tokenizer"]
    assert "tokenizer.json" in table
    assert all("/" not in name for name in table)
    spacy.load(tmp_path / "p")


@pytest.mark.parametrize("name", ["tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "a..b"])
def test_plain_file_names_pass(name):
    from spacy_tokclf.layers.hf_shim import check_file_name

    check_file_name(name)


@pytest.mark.parametrize("name", OTHER_BAD_NAMES + ["/etc/passwd", "../x", None, b"tokenizer.json"])
def test_other_names_fail(name):
    from spacy_tokclf.layers.hf_shim import check_file_name

    with pytest.raises(ValueError, match=NOT_PLAIN):
        check_file_name(name)
