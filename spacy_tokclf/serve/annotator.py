"""What the HTTP server (app.py) does with a request, apart from HTTP: read
the text from its body, run the pipeline inside a memory zone and turn the
doc into the JSON answer.

`parse_text` reads a body or raises BadRequest with the 4xx status.
`Annotator` holds the one loaded pipeline. `SharedMemoryZone` frees the
strings each request adds to the vocab, safely with several threads.
`annotation` is the answer format:

    {"entities": [{"start_char": 0, "end_char": 13, "label": "PER", "score": 0.97}, ...],
     "tags": [{"start_char": 0, "end_char": 6, "tag": "NNP"}, ...],
     "tokens": 5}
"""
import json
import threading
from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager, Dict, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Model

from ..errors import ServeErrors, error
from ..layers.hf_shim import HFEncoderShim
from ..pipeline import TokenClassifier

DEFAULT_ZONE_CALLS = 64
DEFAULT_COMPACT_CALLS = 10_000
WARM_UP_TEXT = "Angela Merkel visited Paris on Monday."


def token_classifiers(nlp: Language) -> List[Tuple[str, str]]:
    """(component name, spans_key) of each token_classifier, in pipeline order.

    nlp (Language): the pipeline.
    RETURNS (List[Tuple[str, str]]): the components and their doc.spans keys.
    """
    return [
        (name, pipe.cfg["spans_key"])
        for name, pipe in nlp.pipeline
        if isinstance(pipe, TokenClassifier)
    ]


def assigns_tags(nlp: Language) -> bool:
    """True if some component of the pipeline sets token.tag_: a token_classifier
    with the task "tag", or any other component that declares it assigns tags."""
    for name, pipe in nlp.pipeline:
        if isinstance(pipe, TokenClassifier):
            if "tag" in pipe.tasks:
                return True
        elif "token.tag" in nlp.get_pipe_meta(name).assigns:
            return True
    return False


def annotation(doc: Doc, spans_keys: List[str], with_tags: bool) -> Dict[str, Any]:
    """The JSON answer for one annotated doc: plain Python values only, so it
    can be kept after the memory zone that held the doc is closed.

    doc (Doc): the doc, after the pipeline.
    spans_keys (List[str]): doc.spans keys of the token_classifiers, in
        pipeline order; an entity takes the score of the first span group that
        holds the same span and label.
    with_tags (bool): include each token's tag.
    RETURNS (Dict[str, Any]): {"entities": [...], "tags": [...], "tokens": n}.
    """
    scores: Dict[Tuple[int, int, str], float] = {}
    for key in spans_keys:
        group = doc.spans.get(key)
        if group is None:
            continue
        for span, score in zip(group, group.attrs.get("scores", [])):
            scores.setdefault((span.start, span.end, span.label_), float(score))
    result: Dict[str, Any] = {
        "entities": [
            {
                "start_char": ent.start_char,
                "end_char": ent.end_char,
                "label": ent.label_,
                "score": scores.get((ent.start, ent.end, ent.label_)),
            }
            for ent in doc.ents
        ]
    }
    if with_tags:
        result["tags"] = [
            {"start_char": t.idx, "end_char": t.idx + len(t.text), "tag": t.tag_} for t in doc
        ]
    result["tokens"] = len(doc)
    return result


class BadRequest(Exception):
    """A request answered with a 4xx: its status, message, and whether the
    connection closes (the body was not read to its end)."""

    def __init__(self, status: int, message: str, *, close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


def parse_text(body: bytes, max_chars: int) -> str:
    """The text of a request body, or BadRequest with its status.

    body (bytes): the body, read whole.
    max_chars (int): the longest text accepted.
    RETURNS (str): the text.
    """
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadRequest(400, ServeErrors.ANSWER_NOT_UTF8.format(error=err))
    try:
        data = json.loads(decoded)
    except json.JSONDecodeError as err:
        raise BadRequest(400, ServeErrors.ANSWER_NOT_JSON.format(error=err))
    except RecursionError:
        raise BadRequest(400, ServeErrors.ANSWER_TOO_DEEP)
    except ValueError as err:  # e.g. an integer of more than 4,300 digits
        raise BadRequest(400, ServeErrors.ANSWER_BAD_NUMBER.format(error=err))
    if not isinstance(data, dict) or "text" not in data:
        raise BadRequest(422, ServeErrors.ANSWER_NO_TEXT.format(value=_describe(data)))
    text = data["text"]
    if not isinstance(text, str):
        raise BadRequest(
            422, ServeErrors.ANSWER_TEXT_NOT_STR.format(type=type(text).__name__, value=_describe(text))
        )
    if len(text) > max_chars:
        raise BadRequest(413, too_long_message(ServeErrors.ANSWER_TEXT_CHARS.format(n=len(text)), max_chars))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadRequest(422, ServeErrors.ANSWER_SURROGATE.format(error=err))
    return text


def too_long_message(what: str, max_chars: int) -> str:
    return ServeErrors.ANSWER_TOO_LONG.format(what=what, max_chars=max_chars)


def _describe(value: Any) -> str:
    """A short view of a JSON value, without walking into it (it may be nested
    deeper than json.dumps can go)."""
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    if isinstance(value, list):
        return f"an array of {len(value)} values"
    if isinstance(value, str) and len(value) > 60:
        value = value[:60]
    try:
        text = json.dumps(value, ensure_ascii=False)
    except ValueError:
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


class SharedMemoryZone:
    """One `nlp.memory_zone()` shared by the nlp() calls that overlap in time.

    Without a zone every new word of every text stays in the vocab for good
    (about 0.5 KB each): a server on real text grows without bound. spaCy's
    zone lives on the vocab, one at a time: zones must not nest, and a thread
    that closed its own zone would free the strings of a doc that another
    thread is still reading. So the calls that run at once share one zone: the
    first opens it, the last to leave closes it, which frees every string and
    lexeme the calls added. Under steady load the calls could overlap forever
    and the zone never close: once `max_calls` calls have entered a zone, new
    calls wait until the calls in it finish and it closes, then open the next.

    A closed zone still leaves something behind: the string store's hash table
    (preshed) marks the keys it drops as deleted and doubles when full of
    them, so it grows with every new word, slowly (most of the growth that
    remains with zones; the rest is the same in the vocab's lexeme table,
    which has no public way to be rebuilt). Every `compact_calls` calls,
    between two zones, the string store is rebuilt from its own strings.

    nlp (Language): the pipeline.
    max_calls (int): calls that may enter one zone before it must close.
    compact_calls (int): calls between two rebuilds of the string store; 0: never.
    """

    def __init__(
        self,
        nlp: Language,
        *,
        max_calls: int = DEFAULT_ZONE_CALLS,
        compact_calls: int = DEFAULT_COMPACT_CALLS,
    ):
        if max_calls < 1 or compact_calls < 0:
            raise ValueError(
                error(ServeErrors.BAD_ZONE_CALLS, max_calls=max_calls, compact_calls=compact_calls)
            )
        self.nlp = nlp
        self.max_calls = max_calls
        self.compact_calls = compact_calls
        self._since_compact = 0
        self.compactions = 0
        self._cond = threading.Condition()
        self._zone: Optional[ContextManager[Any]] = None
        self._inside = 0  # calls inside the open zone now
        self._entered = 0  # calls that entered the open zone
        self.closed = 0  # zones closed so far

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._cond:
            while self._zone is not None and self._entered >= self.max_calls:
                self._cond.wait()
            if self._zone is None:
                zone = self.nlp.memory_zone()
                zone.__enter__()
                self._zone, self._entered = zone, 0
            self._inside += 1
            self._entered += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                if self._inside == 0 and self._zone is not None:
                    closing, self._zone = self._zone, None
                    # Frees the strings of every doc made in the zone: all
                    # their answers are built by now.
                    closing.__exit__(None, None, None)
                    self.closed += 1
                    self._since_compact += self._entered
                    if self.compact_calls and self._since_compact >= self.compact_calls:
                        compact_strings(self.nlp)  # no call is running: all wait on the lock
                        self._since_compact = 0
                        self.compactions += 1
                    self._cond.notify_all()


def compact_strings(nlp: Language) -> None:
    """Rebuild the string store from its own strings: the same strings in a
    fresh hash table without the deleted keys of closed zones. Docs and
    lexemes hold hashes, not the old memory, so nothing refers to it after.
    Call it only while no nlp() call runs."""
    strings = nlp.vocab.strings
    strings.from_bytes(strings.to_bytes())


def encoders_to_eval(nlp: Language) -> int:
    """Put the torch encoder of every token_classifier in eval mode (no dropout)
    and return how many there were. A pipeline fresh from a config or an
    update is in train mode until its first prediction switches it: with
    threads, two first calls would race on it."""
    n = 0
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, HFEncoderShim) and shim.piece_encoder is not None:
                    shim.piece_encoder.eval()
                    n += 1
    return n


class Annotator:
    """One loaded pipeline and how to turn its docs into answers.

    nlp (Language): the pipeline.
    memory_zones (bool): run every call inside a memory zone (SharedMemoryZone),
        so the vocab does not grow with the new words of the texts. On the
        command line: --no-memory-zone turns it off (to measure the growth).
    zone_calls (int): calls that may enter one zone (SharedMemoryZone.max_calls).
    compact_calls (int): calls between rebuilds of the string store
        (SharedMemoryZone.compact_calls).
    """

    def __init__(
        self,
        nlp: Language,
        *,
        memory_zones: bool = True,
        zone_calls: int = DEFAULT_ZONE_CALLS,
        compact_calls: int = DEFAULT_COMPACT_CALLS,
    ):
        self.nlp = nlp
        self.components = token_classifiers(nlp)
        self.spans_keys = [key for _, key in self.components]
        self.with_tags = assigns_tags(nlp)
        self.zone = (
            SharedMemoryZone(nlp, max_calls=zone_calls, compact_calls=compact_calls)
            if memory_zones
            else None
        )
        # nlp() calls running now, the most that ever ran at once, and done:
        # shown by /health, so a load test can tell that calls overlapped.
        self._lock = threading.Lock()
        self.running = self.most_running = self.done = 0
        self.warmed_up = False

    def annotate(self, text: str) -> Dict[str, Any]:
        """The answer to one text, made inside the memory zone (if any).

        text (str): the text.
        RETURNS (Dict[str, Any]): see `annotation`.
        """
        with self.zone() if self.zone is not None else nullcontext():
            return annotation(self.nlp(text), self.spans_keys, self.with_tags)

    def warm_up(self) -> None:
        """Eval mode for the encoders and one call through the pipeline, before
        any thread makes one (not counted in `done`)."""
        encoders_to_eval(self.nlp)
        self.annotate(WARM_UP_TEXT)
        self.warmed_up = True

    def __call__(self, text: str) -> Dict[str, Any]:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return self.annotate(text)
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1
