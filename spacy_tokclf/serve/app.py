"""Serve a spaCy pipeline over HTTP: POST /annotate and GET /health.

    python -m spacy_tokclf.serve training/ner/model-best --port 8080 [--threads 4]
        [--max-chars 100000] [--max-queue 64] [--limit-concurrency 256]

The pipeline is loaded once, warmed up (one call, encoders in eval mode) and
shared by all requests. `nlp()` is CPU-bound, so each request runs it in a
worker thread (at most `threads` at a time) while the event loop keeps
accepting requests: several `nlp()` calls run at once on the one pipeline, as
they do behind any threaded web server. Each call runs inside a memory zone
(annotator.SharedMemoryZone), so the new words of the texts do not stay
in the vocab.

    POST /annotate  {"text": "Angela Merkel visited Paris."}
    -> {"entities": [{"start_char": 0, "end_char": 13, "label": "PER", "score": 0.97}, ...],
        "tags": [{"start_char": 0, "end_char": 6, "tag": "NNP"}, ...],
        "tokens": 5}

`score` is the entity's confidence from `doc.spans[spans_key].attrs["scores"]`
of the token_classifier that predicted it (null for an entity that no
token_classifier predicted, e.g. one set by an entity_ruler). `tags` is
present only when the pipeline assigns tags.

Every answer that is not 200 is JSON, {"error": "..."}, and never affects the
requests served beside it: 400 for a body that is not JSON (also nested too
deeply) or not UTF-8; 422 for a body without a string "text"; 413 for a text
over `max_chars` or a body too long to hold one (the server stops reading it
and closes the connection); 408 for a body not sent within `body_timeout`;
503 with Retry-After when `max_queue` requests already wait for the pipeline;
500 "internal error" with a request id (the details are in the log only).
A request whose client has left is not run.

Needs the `serve` extra: pip install "spacy-tokclf[serve]".
"""
import argparse
import logging
import math
import time
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import spacy
from spacy.language import Language

from ..errors import ServeErrors, error
from .annotator import (
    DEFAULT_COMPACT_CALLS,
    DEFAULT_ZONE_CALLS,
    Annotator,
    BadRequest,
    parse_text,
    too_long_message,
)

try:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(error(ServeErrors.NO_SERVE_EXTRA, error=err)) from err

__all__ = ["DEFAULT_MAX_CHARS", "make_app", "main"]

DEFAULT_MAX_CHARS = 100_000
DEFAULT_THREADS = 4
DEFAULT_MAX_QUEUE = 64
DEFAULT_BODY_TIMEOUT = 30.0
# uvicorn's settings: open connections plus running requests beyond which new
# requests get uvicorn's own 503, and seconds an idle keep-alive connection stays.
DEFAULT_LIMIT_CONCURRENCY = 256
DEFAULT_TIMEOUT_KEEP_ALIVE = 5
DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN = 30
# A JSON string may spell a character as up to 12 bytes ("\ud83d\ude00"), so a
# body longer than this cannot hold a text within the limit.
BYTES_PER_CHAR = 12
BODY_SLACK = 4096
MAX_RETRY_AFTER = 60
# Answers sent before the body was read to its end close the connection, so
# uvicorn stops reading it rather than reading and discarding the rest.
CLOSE = {"Connection": "close"}

logger = logging.getLogger("spacy_tokclf.serve")


def error_response(err: BadRequest) -> JSONResponse:
    headers = CLOSE if err.close else None
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


def _check(name: str, value: float, ok: bool, bound: str, flag: str) -> None:
    if not ok:
        raise ValueError(error(ServeErrors.BAD_SETTING, name=name, value=value, bound=bound, flag=flag))


class Gate:
    """At most `threads` nlp() calls at once, and at most `max_queue` requests
    waiting for one; the figures /health shows."""

    def __init__(self, threads: int, max_queue: int):
        self.threads = threads
        self.max_queue = max_queue
        self.waiting = 0
        self.busy = 0  # requests answered 503
        self.left = 0  # requests whose client left before their nlp() call
        self.seconds_per_call = 0.1  # a running mean, for Retry-After
        self._limiters: List[anyio.CapacityLimiter] = []  # made in the event loop

    def limiters(self) -> List[anyio.CapacityLimiter]:
        """A slot to run in, and the worker threads to run in (anyio's own
        limiter of threads is 40, not `threads`)."""
        if not self._limiters:
            self._limiters = [anyio.CapacityLimiter(self.threads), anyio.CapacityLimiter(self.threads)]
        return self._limiters

    def full(self) -> bool:
        return self.limiters()[0].available_tokens < 1 and self.waiting >= self.max_queue

    def retry_after(self) -> int:
        queued = self.waiting + self.threads
        return max(1, min(MAX_RETRY_AFTER, math.ceil(self.seconds_per_call * queued / self.threads)))

    def record(self, seconds: float) -> None:
        self.seconds_per_call += 0.1 * (seconds - self.seconds_per_call)


def make_app(
    model_path_or_nlp: Union[str, Path, Language],
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    threads: int = DEFAULT_THREADS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    memory_zones: bool = True,
    zone_calls: int = DEFAULT_ZONE_CALLS,
    compact_calls: int = DEFAULT_COMPACT_CALLS,
) -> Starlette:
    """A Starlette app that annotates texts with one pipeline, loaded once,
    warmed up and in eval mode when it returns.

    model_path_or_nlp (Union[str, Path, Language]): a pipeline, or what
        spacy.load takes (a directory or an installed package name).
    max_chars (int): the longest text accepted, in characters; longer ones get
        413. On the command line: --max-chars.
    threads (int): nlp() calls that run at once, each in a worker thread. On
        the command line: --threads.
    max_queue (int): requests that may wait for a thread; beyond, 503 with a
        Retry-After header. On the command line: --max-queue.
    body_timeout (float): seconds to receive a body; then 408. On the command
        line: --body-timeout.
    memory_zones (bool): run each call in a memory zone, so the vocab does not
        grow with new words. On the command line: --no-memory-zone turns it off.
    zone_calls (int): calls that may share one memory zone before it must close
        (annotator.SharedMemoryZone). On the command line: --zone-calls.
    compact_calls (int): calls between rebuilds of the string store, 0 for
        never (SharedMemoryZone). On the command line: --compact-calls.
    RETURNS (Starlette): the app; app.state.annotator holds the pipeline.
    """
    for name, value, ok, bound in (
        ("max_chars", max_chars, max_chars >= 1, ">= 1"),
        ("threads", threads, threads >= 1, ">= 1"),
        ("max_queue", max_queue, max_queue >= 0, ">= 0"),
        ("body_timeout", body_timeout, body_timeout > 0, "> 0"),
        ("zone_calls", zone_calls, zone_calls >= 1, ">= 1"),
        ("compact_calls", compact_calls, compact_calls >= 0, ">= 0"),
    ):
        _check(name, value, ok, bound, name.replace("_", "-"))
    nlp = model_path_or_nlp if isinstance(model_path_or_nlp, Language) else spacy.load(model_path_or_nlp)
    annotator = Annotator(
        nlp, memory_zones=memory_zones, zone_calls=zone_calls, compact_calls=compact_calls
    )
    # Before the first request: no two threads race on a first call.
    annotator.warm_up()
    gate = Gate(threads, max_queue)
    max_bytes = max_chars * BYTES_PER_CHAR + BODY_SLACK

    def too_long(what: str) -> BadRequest:
        return BadRequest(413, too_long_message(what, max_chars), close=True)

    async def read_body(request: Request) -> bytes:
        # Refused by its Content-Length before a byte is read; a chunked body
        # is counted as it comes and given up on as soon as it is too long.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise too_long(ServeErrors.ANSWER_BODY_BYTES.format(size=int(length)))
        chunks: List[bytes] = []
        size = 0
        try:
            with anyio.fail_after(body_timeout):
                async with aclosing(request.stream()) as stream:
                    async for chunk in stream:
                        size += len(chunk)
                        if size > max_bytes:
                            raise too_long(ServeErrors.ANSWER_BODY_OVER.format(max_bytes=max_bytes))
                        chunks.append(chunk)
        except TimeoutError:
            raise BadRequest(408, ServeErrors.ANSWER_BODY_TIMEOUT.format(seconds=body_timeout), close=True)
        return b"".join(chunks)

    async def run(request: Request, text: str) -> Optional[Dict[str, Any]]:
        """The answer, or None if the client left before its turn."""
        slot, workers = gate.limiters()
        gate.waiting += 1
        try:
            await slot.acquire()
        finally:
            gate.waiting -= 1
        try:
            if await request.is_disconnected():
                return None
            start = time.perf_counter()
            result = await anyio.to_thread.run_sync(annotator, text, limiter=workers)
            gate.record(time.perf_counter() - start)
            return result
        finally:
            slot.release()

    async def annotate(request: Request) -> Response:
        text = ""
        try:
            text = parse_text(await read_body(request), max_chars)
            if await request.is_disconnected():
                result = None
            elif gate.full():
                gate.busy += 1
                retry = gate.retry_after()
                return JSONResponse(
                    {"error": ServeErrors.ANSWER_QUEUE_FULL.format(waiting=gate.waiting, retry_after=retry)},
                    status_code=503,
                    headers={"Retry-After": str(retry)},
                )
            else:
                result = await run(request, text)
        except BadRequest as err:
            return error_response(err)
        except ClientDisconnect:
            result = None
        except Exception:
            request_id = uuid.uuid4().hex[:16]
            logger.exception(ServeErrors.LOG_FAILED, request_id, "POST /annotate", len(text))
            return internal_error(request_id)
        if result is None:
            gate.left += 1
            logger.info(ServeErrors.LOG_DISCONNECTED)
            # Nobody is there to read it; 499 is what nginx logs for this.
            return Response(status_code=499, headers=CLOSE)
        return JSONResponse(result)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                # The pipeline's name and version, never where it was loaded from.
                "model": {"name": f"{nlp.lang}_{nlp.meta.get('name', '')}", "version": nlp.meta.get("version")},
                "pipeline": nlp.pipe_names,
                "token_classifiers": dict(annotator.components),
                "tags": annotator.with_tags,
                "max_chars": max_chars,
                "threads": threads,
                "max_queue": max_queue,
                "memory_zones": annotator.zone is not None,
                "string_store_rebuilds": annotator.zone.compactions if annotator.zone else 0,
                "warmed_up": annotator.warmed_up,
                "vocab_strings": len(nlp.vocab.strings),
                "nlp_calls": {
                    "running": annotator.running,
                    "most_running": annotator.most_running,
                    "done": annotator.done,
                },
                "requests": {"waiting": gate.waiting, "busy_503": gate.busy, "left": gate.left},
            }
        )

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:16]
        logger.error(ServeErrors.LOG_APP_FAILED, request_id, request.method, request.url.path, exc_info=exc)
        return internal_error(request_id)

    app = Starlette(
        routes=[
            Route("/annotate", annotate, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={Exception: on_error},
    )
    app.state.annotator = annotator
    app.state.gate = gate
    return app


def internal_error(request_id: str) -> JSONResponse:
    """The 500 answer: no exception text, no path; the log has the details."""
    return JSONResponse({"error": ServeErrors.ANSWER_INTERNAL, "request_id": request_id}, status_code=500)


def main(argv: Optional[List[str]] = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m spacy_tokclf.serve",
        description="Serve a spaCy pipeline: POST /annotate {\"text\": ...}, GET /health.",
    )
    add = parser.add_argument
    add("model", help="pipeline directory or package name (spacy.load)")
    add("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    add("--port", type=int, default=8080)
    add("--threads", type=int, default=DEFAULT_THREADS,
        help=f"nlp() calls run at once, in worker threads (default: {DEFAULT_THREADS})")
    add("--max-chars", type=int, default=DEFAULT_MAX_CHARS,
        help=f"longest text accepted, in characters; longer get 413 (default: {DEFAULT_MAX_CHARS})")
    add("--max-queue", type=int, default=DEFAULT_MAX_QUEUE,
        help=f"requests that may wait for a thread; beyond, 503 + Retry-After (default: {DEFAULT_MAX_QUEUE})")
    add("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT,
        help=f"seconds to receive a request body, then 408 (default: {DEFAULT_BODY_TIMEOUT:g})")
    add("--limit-concurrency", type=int, default=DEFAULT_LIMIT_CONCURRENCY,
        help="uvicorn: connections + running requests beyond which uvicorn answers 503 "
        f"(default: {DEFAULT_LIMIT_CONCURRENCY})")
    add("--timeout-keep-alive", type=int, default=DEFAULT_TIMEOUT_KEEP_ALIVE,
        help=f"uvicorn: seconds an idle keep-alive connection stays open (default: {DEFAULT_TIMEOUT_KEEP_ALIVE})")
    add("--timeout-graceful-shutdown", type=int, default=DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN,
        help="uvicorn: seconds running requests get to finish on shutdown "
        f"(default: {DEFAULT_TIMEOUT_GRACEFUL_SHUTDOWN})")
    add("--zone-calls", type=int, default=DEFAULT_ZONE_CALLS,
        help=f"nlp() calls that may share one memory zone before it closes (default: {DEFAULT_ZONE_CALLS})")
    add("--compact-calls", type=int, default=DEFAULT_COMPACT_CALLS,
        help=f"nlp() calls between rebuilds of the string store, 0: never (default: {DEFAULT_COMPACT_CALLS})")
    add("--no-memory-zone", action="store_true",
        help="no memory zone: every new word stays in the vocab (to measure the growth)")
    add("--torch-threads", type=int, default=None,
        help="torch.set_num_threads for the server (default: torch's own); with several "
        "--threads on few cores, 1 avoids the threads spinning against each other")
    add("--log-level", default="info")
    add("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    if args.torch_threads is not None:
        import torch

        _check("torch_threads", args.torch_threads, args.torch_threads >= 1, ">= 1", "torch-threads")
        torch.set_num_threads(args.torch_threads)
    app = make_app(
        args.model, max_chars=args.max_chars, threads=args.threads, max_queue=args.max_queue,
        body_timeout=args.body_timeout, memory_zones=not args.no_memory_zone,
        zone_calls=args.zone_calls, compact_calls=args.compact_calls,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
        limit_concurrency=args.limit_concurrency, timeout_keep_alive=args.timeout_keep_alive,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
    )

