"""Serve a spaCy pipeline over HTTP: POST /annotate and GET /health.

    python -m spacy_tokclf.serve training/ner/model-best --port 8080 [--threads 4] [--max-chars 100000]

The pipeline is loaded once and shared by all requests. `nlp()` is CPU-bound,
so each request runs it in a worker thread (at most `threads` at a time) while
the event loop keeps accepting requests: several `nlp()` calls run at once on
the one pipeline, as they do behind any threaded web server.

    POST /annotate  {"text": "Angela Merkel visited Paris."}
    -> {"entities": [{"start_char": 0, "end_char": 13, "label": "PER", "score": 0.97}, ...],
        "tags": [{"start_char": 0, "end_char": 6, "tag": "NNP"}, ...],
        "tokens": 5}

`score` is the entity's confidence from `doc.spans[spans_key].attrs["scores"]`
of the token_classifier that predicted it (null for an entity that no
token_classifier predicted, e.g. one set by an entity_ruler). `tags` is
present only when the pipeline assigns tags. A bad request gets a 4xx answer
with {"error": "..."}, and never affects the requests served beside it.

Needs the `serve` extra: pip install "spacy-tokclf[serve]".
"""
import argparse
import json
import logging
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from .errors import ServeErrors, error
from .pipeline import TokenClassifier

try:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(error(ServeErrors.NO_SERVE_EXTRA, error=err)) from err

DEFAULT_MAX_CHARS = 100_000
DEFAULT_THREADS = 4
# A JSON string may spell a character as up to 12 bytes ("\ud83d\ude00"), so a
# body longer than this cannot hold a text within the limit.
BYTES_PER_CHAR = 12
BODY_SLACK = 4096

logger = logging.getLogger("spacy_tokclf.serve")


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
    """The JSON answer for one annotated doc.

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


class Annotator:
    """One loaded pipeline and how to turn its docs into answers.

    nlp (Language): the pipeline.
    """

    def __init__(self, nlp: Language):
        self.nlp = nlp
        self.components = token_classifiers(nlp)
        self.spans_keys = [key for _, key in self.components]
        self.with_tags = assigns_tags(nlp)
        # nlp() calls running now, the most that ever ran at once, and done:
        # shown by /health, so a load test can tell that calls overlapped.
        self._lock = threading.Lock()
        self.running = self.most_running = self.done = 0

    def __call__(self, text: str) -> Dict[str, Any]:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return annotation(self.nlp(text), self.spans_keys, self.with_tags)
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def make_app(
    model_path_or_nlp: Union[str, Path, Language],
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    threads: int = DEFAULT_THREADS,
) -> Starlette:
    """A Starlette app that annotates texts with one pipeline, loaded once.

    model_path_or_nlp (Union[str, Path, Language]): a pipeline, or what
        spacy.load takes (a directory or an installed package name).
    max_chars (int): the longest text accepted, in characters; longer ones get
        413. On the command line: --max-chars.
    threads (int): nlp() calls that run at once, each in a worker thread. On
        the command line: --threads.
    RETURNS (Starlette): the app; app.state.annotator holds the pipeline.
    """
    if max_chars < 1 or threads < 1:
        raise ValueError(error(ServeErrors.BAD_LIMITS, max_chars=max_chars, threads=threads))
    if isinstance(model_path_or_nlp, Language):
        nlp, model_name = model_path_or_nlp, "(in memory)"
    else:
        nlp, model_name = spacy.load(model_path_or_nlp), str(model_path_or_nlp)
    annotator = Annotator(nlp)
    max_bytes = max_chars * BYTES_PER_CHAR + BODY_SLACK
    limiter: List[anyio.CapacityLimiter] = []  # made in the event loop, on first use

    def too_long(what: str) -> BadRequest:
        return BadRequest(413, ServeErrors.ANSWER_TOO_LONG.format(what=what, max_chars=max_chars))

    async def read_text(request: Request) -> str:
        # A body too long for any valid text is read to its end (so the client,
        # still sending, gets the answer) but not kept.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= max_bytes:
                chunks.append(chunk)
        if size > max_bytes:
            raise too_long(ServeErrors.ANSWER_BODY_BYTES.format(size=size))
        try:
            body = b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadRequest(400, ServeErrors.ANSWER_NOT_UTF8.format(error=err))
        try:
            data = json.loads(body)
        except json.JSONDecodeError as err:
            raise BadRequest(400, ServeErrors.ANSWER_NOT_JSON.format(error=err))
        if not isinstance(data, dict) or "text" not in data:
            raise BadRequest(422, ServeErrors.ANSWER_NO_TEXT.format(value=_describe(data)))
        text = data["text"]
        if not isinstance(text, str):
            raise BadRequest(
                422,
                ServeErrors.ANSWER_TEXT_NOT_STR.format(
                    type=type(text).__name__, value=_describe(text)
                ),
            )
        if len(text) > max_chars:
            raise too_long(ServeErrors.ANSWER_TEXT_CHARS.format(n=len(text)))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise BadRequest(422, ServeErrors.ANSWER_SURROGATE.format(error=err))
        return text

    async def annotate(request: Request) -> JSONResponse:
        try:
            text = await read_text(request)
        except BadRequest as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        if not limiter:
            limiter.append(anyio.CapacityLimiter(threads))
        try:
            result = await anyio.to_thread.run_sync(annotator, text, limiter=limiter[0])
        except Exception as err:
            logger.exception("nlp() failed on a text of %d characters", len(text))
            return JSONResponse(
                {
                    "error": ServeErrors.ANSWER_PIPELINE_FAILED.format(
                        type=type(err).__name__, error=err
                    )
                },
                status_code=500,
            )
        return JSONResponse(result)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model": model_name,
                "pipeline": nlp.pipe_names,
                "token_classifiers": dict(annotator.components),
                "tags": annotator.with_tags,
                "max_chars": max_chars,
                "threads": threads,
                "nlp_calls": {
                    "running": annotator.running,
                    "most_running": annotator.most_running,
                    "done": annotator.done,
                },
            }
        )

    app = Starlette(
        routes=[
            Route("/annotate", annotate, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.annotator = annotator
    return app


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def main(argv: Optional[List[str]] = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m spacy_tokclf.serve",
        description="Serve a spaCy pipeline: POST /annotate {\"text\": ...}, GET /health.",
    )
    parser.add_argument("model", help="pipeline directory or package name (spacy.load)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS,
        help=f"nlp() calls run at once, in worker threads (default: {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--max-chars", type=int, default=DEFAULT_MAX_CHARS,
        help=f"longest text accepted, in characters; longer get 413 (default: {DEFAULT_MAX_CHARS})",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    app = make_app(args.model, max_chars=args.max_chars, threads=args.threads)
    app.state.annotator("Warm up the pipeline once before the first request.")
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log
    )


if __name__ == "__main__":
    main()
