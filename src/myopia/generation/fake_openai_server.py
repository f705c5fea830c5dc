"""A small local server that speaks the OpenAI completions protocol over any ``Backend``.

It answers ``POST /v1/completions`` and ``GET /v1/models`` the way vLLM does, over a
loaded model (``LocalEngine``) or over ``ToyBackend``, a deterministic stand-in that
needs no weights. Tests run ``OpenAIBackend`` against it, and users can try the client
(or the loom's remote mode) without a GPU server:

    python -m myopia.generation.fake_openai_server --model smollm2 --port 8000
    python -m myopia.generation.fake_openai_server --toy          # a free port, printed

It is the standard library's threading HTTP server; one request generates at a time (a
lock), since one model's forward passes do not run well side by side. It binds to
127.0.0.1 unless told otherwise and is not meant to face a network.

Answers follow the protocol: ``choices[i]`` with ``text``, ``finish_reason`` (``"stop"``
or ``"length"``), vLLM's ``stop_reason`` (a stop string, or null at end of text; with
several stop strings it names the first given, as the backend does not record which
matched) and ``logprobs`` (``tokens``, ``token_logprobs``, ``top_logprobs``,
``text_offset``) when ``logprobs`` was asked for; with ``"stream": true`` the same answer
comes as server-sent events, a chunk per token, sent as each token is chosen when the
backend streams (``complete_streaming``) and no stop string was asked for (a client that
hangs up then stops the generation, as with vLLM). Errors are
``{"error": {"message", "type"}}`` with a 4xx status for a bad request.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from myopia.errors import MyopiaError
from myopia.generation.engine import LocalEngine
from myopia.generation.settings import SamplingSettings
from myopia.generation.stop_strings import cut_pieces, find_stop
from myopia.generation.types import Backend, Continuation, GeneratedToken, TokenChoice
from myopia.models.loading import load_model

MAX_BODY_BYTES = 1_000_000
MAX_N = 64
MAX_LOGPROBS = 20  # vLLM's default cap


class ToyBackend:
    """A deterministic toy language model over nine tokens, for tests and trials.

    After token i the next token is i + 1 with probability 0.4, i + 2 with 0.2, and so on
    (cyclically), so greedy decoding says " the cat sat on a mat.\\n" and then ends (the
    ninth token is end of text). Sampling uses ``random.Random(settings.seed)``.
    """

    WORDS = (" the", " cat", " sat", " on", " a", " mat", ".", "\n")  # then end of text
    BASE = (0.4, 0.2, 0.12, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02)  # by distance, sums to 1
    END = len(WORDS)
    name = "toy"

    def _distribution(self, previous: int) -> list[float]:
        k = len(self.BASE)
        probs = [0.0] * k
        for distance, p in enumerate(self.BASE):
            probs[(previous + 1 + distance) % k] = p
        return probs

    def _draw(self, probs: list[float], settings: SamplingSettings, rng: random.Random) -> int:
        ranked = sorted(range(len(probs)), key=lambda i: -probs[i])
        if settings.temperature == 0:
            return ranked[0]
        kept, mass = [], 0.0
        for i in ranked:  # the nucleus: most likely first, until top_p is reached
            if mass >= settings.top_p:
                break
            kept.append(i)
            mass += probs[i]
        weights = [probs[i] ** (1 / settings.temperature) for i in kept]
        return rng.choices(kept, weights=weights)[0]

    def complete(
        self, prompt: str, settings: SamplingSettings, n: int = 1, alternatives: int = 5
    ) -> list[Continuation]:
        settings.check()
        rng = random.Random(settings.seed)
        results = []
        for _ in range(n):
            previous, tokens, finish = self.END, [], "length"
            for _ in range(settings.max_new_tokens):
                probs = self._distribution(previous)
                token = self._draw(probs, settings, rng)
                if token == self.END:
                    finish = "eos"
                    break
                ranked = sorted(range(len(probs)), key=lambda i: -probs[i])[:alternatives]
                tokens.append(
                    GeneratedToken(
                        chosen=TokenChoice(self.WORDS[token], math.log(probs[token]), token),
                        alternatives=tuple(
                            TokenChoice(
                                self.WORDS[i] if i < self.END else "", math.log(probs[i]), i
                            )
                            for i in ranked
                        ),
                    )
                )
                previous = token
                text = "".join(t.chosen.text for t in tokens)
                end = find_stop(text, settings.stop)
                if end is not None:
                    pieces = cut_pieces([t.chosen.text for t in tokens], end)
                    tokens = [
                        GeneratedToken(
                            TokenChoice(p, t.chosen.logprob, t.chosen.token_id), t.alternatives
                        )
                        for p, t in zip(pieces, tokens, strict=False)
                    ]
                    finish = "stop"
                    break
            text = "".join(t.chosen.text for t in tokens)
            results.append(Continuation(text=text, tokens=tuple(tokens), finish_reason=finish))
        return results


class RequestError(Exception):
    """A bad request: its status and a one-line message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _field(body: dict, name: str, kind: type | tuple, default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if kind is int else "a number"
        raise RequestError(400, f"'{name}' must be {what}, not {json.dumps(value)[:40]}")
    return value


def settings_from_request(body: dict) -> tuple[str, SamplingSettings, int, int | None]:
    """The prompt, sampling settings, n and number of alternatives (None: no logprobs)
    of a completions request, with OpenAI's defaults."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # a batch of one prompt
    if not isinstance(prompt, str):
        raise RequestError(400, "'prompt' must be a string (one prompt per request here)")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not all(isinstance(s, str) for s in stop):
        raise RequestError(400, "'stop' must be a string or a list of strings")
    settings = SamplingSettings(
        max_new_tokens=_field(body, "max_tokens", int, 16),
        temperature=float(_field(body, "temperature", (int, float), 1.0)),
        top_p=float(_field(body, "top_p", (int, float), 1.0)),
        stop=tuple(stop),
        seed=_field(body, "seed", int, 0),
    )
    try:
        settings.check()
    except MyopiaError as error:
        raise RequestError(400, str(error)) from None
    n = _field(body, "n", int, 1)
    if not 1 <= n <= MAX_N:
        raise RequestError(400, f"'n' must be between 1 and {MAX_N}, not {n}")
    alternatives = body.get("logprobs")
    if alternatives is not None:
        alternatives = _field(body, "logprobs", int, 0)
        if not 0 <= alternatives <= MAX_LOGPROBS:
            raise RequestError(400, f"'logprobs' must be between 0 and {MAX_LOGPROBS}")
    return prompt, settings, n, alternatives


def _logprobs(continuation: Continuation, offset: int) -> dict:
    texts = [t.chosen.text for t in continuation.tokens]
    offsets = list(itertools.accumulate((len(t) for t in texts[:-1]), initial=offset))
    return {
        "tokens": texts,
        "token_logprobs": [t.chosen.logprob for t in continuation.tokens],
        "top_logprobs": [_by_text(t) for t in continuation.tokens],
        "text_offset": offsets if texts else [],
    }


def _by_text(token: GeneratedToken) -> dict[str, float]:
    """A token's alternatives as the protocol has them: text -> log-probability."""
    by_text: dict[str, float] = {}
    for alternative in token.alternatives:  # best first: keep the best of equal texts
        by_text.setdefault(alternative.text, alternative.logprob)
    return by_text


def completion_response(
    model_name: str,
    prompt: str,
    settings: SamplingSettings,
    continuations: list[Continuation],
    with_logprobs: bool,
) -> dict:
    """The JSON answer to a completions request, as vLLM gives it."""
    choices = []
    for index, c in enumerate(continuations):
        choices.append(
            {
                "index": index,
                "text": c.text,
                "finish_reason": "length" if c.finish_reason == "length" else "stop",
                "stop_reason": settings.stop[0] if c.finish_reason == "stop" else None,
                "logprobs": _logprobs(c, len(prompt)) if with_logprobs else None,
            }
        )
    generated = sum(len(c.tokens) for c in continuations)
    return {
        "id": f"cmpl-{time.time_ns()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {"completion_tokens": generated},
    }


def stream_chunks(response: dict) -> Iterator[dict]:
    """The answer ``completion_response`` gave, as the chunks of a streamed answer
    (``"stream": true``): one per token and choice, then one per choice with its finish
    reason, as vLLM and OpenAI send them."""
    for choice in response["choices"]:
        logprobs = choice["logprobs"]
        pieces = logprobs["tokens"] if logprobs else ([choice["text"]] if choice["text"] else [])
        for position, piece in enumerate(pieces):
            part = {"index": choice["index"], "text": piece, "finish_reason": None}
            if logprobs:
                part["logprobs"] = {
                    key: logprobs[key][position : position + 1]
                    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")
                }
            yield {**response, "choices": [part]}
    yield from finish_chunks(response)


def finish_chunks(response: dict) -> Iterator[dict]:
    """The last chunk of each choice of a streamed answer: its finish reason, no text."""
    for choice in response["choices"]:
        last = {k: choice[k] for k in ("index", "finish_reason", "stop_reason")}
        yield {**response, "choices": [{**last, "text": "", "logprobs": None}]}


class CompletionsServer(ThreadingHTTPServer):
    """An HTTP server holding the backend it serves and the name clients must ask for."""

    daemon_threads = True

    def __init__(self, address, backend: Backend, model_name: str, quiet: bool = True):
        super().__init__(address, _Handler)
        self.backend = backend
        self.model_name = model_name
        self.quiet = quiet
        self.generating = threading.Lock()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: CompletionsServer

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.close_connection = True

    def _event(self, chunk: dict | str) -> bool:
        """One server-sent event (a chunk, or ``[DONE]``); False once the client hung up."""
        data = chunk if isinstance(chunk, str) else json.dumps(chunk)
        try:
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _send_stream(self, answer: dict) -> None:
        """Server-sent events, one ``data:`` line per chunk, then ``data: [DONE]``; a
        client that hangs up midway (a cancelled generation) ends the stream."""
        self._start_stream()
        if all(self._event(chunk) for chunk in stream_chunks(answer)):
            self._event("[DONE]")

    def _stream_live(self, prompt: str, settings: SamplingSettings, n: int, alternatives) -> None:
        """Each token sent as the backend chooses it (its ``complete_streaming``), as a
        real server streams: a client that hangs up stops the generation there. Only
        without stop strings: one can cut tokens that were already sent."""
        name, offsets = self.server.model_name, [len(prompt)] * n
        head = {"id": f"cmpl-{time.time_ns()}", "object": "text_completion", "model": name}
        head["created"] = int(time.time())
        self._start_stream()

        def on_token(row: int, token: GeneratedToken) -> bool:
            part: dict[str, Any] = {"index": row, "text": token.chosen.text, "finish_reason": None}
            if alternatives is not None:
                part["logprobs"] = {
                    "tokens": [token.chosen.text],
                    "token_logprobs": [token.chosen.logprob],
                    "top_logprobs": [_by_text(token)],
                    "text_offset": [offsets[row]],
                }
            offsets[row] += len(token.chosen.text)
            return self._event({**head, "choices": [part]})

        try:
            with self.server.generating:
                continuations = self.server.backend.complete_streaming(
                    prompt, settings, n, alternatives or 0, on_token
                )
        except MyopiaError as error:  # the status is sent: the error comes as an event
            self._event({"error": {"message": str(error), "type": "invalid_request_error"}})
            return
        answer = completion_response(name, prompt, settings, continuations, False)
        if len(continuations) == n and all(self._event(c) for c in finish_chunks(answer)):
            self._event("[DONE]")

    def _send_error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self):  # noqa: N802 (the base class's name)
        if self.path.rstrip("/") == "/v1/models":
            model = {"id": self.server.model_name, "object": "model", "owned_by": "myopia"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"no such path {self.path}; try POST /v1/completions")

    def do_POST(self):  # noqa: N802 (the base class's name)
        try:
            if self.path.rstrip("/") != "/v1/completions":
                raise RequestError(404, f"no such path {self.path}; try POST /v1/completions")
            body = self._body()
            prompt, settings, n, alternatives = self._request(body)
            live = hasattr(self.server.backend, "complete_streaming") and not settings.stop
            if body.get("stream") is True and live:
                self._stream_live(prompt, settings, n, alternatives)
                return
            answer = self._complete(prompt, settings, n, alternatives)
            if body.get("stream") is True:
                self._send_stream(answer)
            else:
                self._send(200, answer)
        except RequestError as error:
            self._send_error(error.status, str(error))
        except MyopiaError as error:  # e.g. a prompt too long for the model
            self._send_error(400, str(error))
        except Exception as error:  # a server bug: still answer, in one line
            self._send_error(500, f"{type(error).__name__}: {' '.join(str(error).split())}")

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            raise RequestError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def _request(self, body: dict) -> tuple[str, SamplingSettings, int, int | None]:
        """The request's prompt, settings, n and logprobs, checked (4xx before any answer)."""
        name = self.server.model_name
        if body.get("model") != name:
            raise RequestError(
                404, f"model {body.get('model')!r} not found; this server has {name!r}"
            )
        return settings_from_request(body)

    def _complete(
        self, prompt: str, settings: SamplingSettings, n: int, alternatives: int | None
    ) -> dict:
        name = self.server.model_name
        with self.server.generating:
            continuations = self.server.backend.complete(prompt, settings, n, alternatives or 0)
        return completion_response(name, prompt, settings, continuations, alternatives is not None)


def make_server(
    backend: Backend,
    model_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    quiet: bool = True,
) -> CompletionsServer:
    """A server for ``backend`` (not yet serving); ``port=0`` picks a free port."""
    return CompletionsServer((host, port), backend, model_name or backend.name, quiet)


@contextlib.contextmanager
def serving(backend: Backend, model_name: str | None = None) -> Iterator[CompletionsServer]:
    """Serve ``backend`` on a free local port in a background thread while in the block."""
    server = make_server(backend, model_name)
    # A short poll interval: shutting down waits for the server's next poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", default="smollm2", help="a load_model spec (default smollm2)")
    which.add_argument("--toy", action="store_true", help="serve the toy model (no weights)")
    parser.add_argument("--name", help="the model name clients ask for (default: the spec)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.toy:
        backend: Backend = ToyBackend()
    else:
        model, tokenizer = load_model(args.model)
        backend = LocalEngine(model.eval(), tokenizer, name=args.model)
    server = make_server(backend, args.name, args.host, args.port, quiet=not args.verbose)
    print(f"serving {server.model_name!r} at {server.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
