"""A ``Backend`` that asks an OpenAI-compatible completions server (vLLM, llama.cpp's
server, ``myopia.generation.fake_openai_server``) for continuations.

This is how a user runs a model too large for their machine: the server samples, and
this client turns its ``/v1/completions`` answer into the same ``Continuation``s as the
local engine. The request carries ``prompt``, ``max_tokens``, ``temperature``,
``top_p``, ``n``, ``stop``, ``seed`` and ``logprobs`` (the number of alternatives); the
answer's ``choices[i].text``, ``finish_reason`` and ``logprobs`` (``tokens``,
``token_logprobs``, ``top_logprobs``) fill the continuations.

What the protocol cannot say, and what is done about it:

- ``finish_reason`` is ``"stop"`` both for a stop string and for end of text. vLLM says
  which in ``stop_reason`` (the stop string, or null for end of text) and so does
  myopia's own server; without it, ``"stop"`` reads as a stop string when stop strings
  were given and as end of text otherwise.
- Tokens come as texts without ids (``token_id`` is None), and ``top_logprobs`` is a
  mapping from text to log-probability, so two alternatives with the same text show as
  one.
- Some servers keep the tokens of a stop string in ``logprobs`` although the text is cut
  before it; the tokens are cut to the text as the local engine cuts them.
- A server that returns no ``logprobs`` gives continuations without tokens. The chat
  shape of ``logprobs`` (``content``: a list of ``{token, logprob, top_logprobs}``), which
  llama.cpp's server has used for completions too, is read as well.

Every failure is a one-line ``MyopiaError``: a server that cannot be reached, an HTTP
error (with the server's own message), an answer that is not the expected JSON.

>>> backend = OpenAIBackend("http://127.0.0.1:8000/v1", model="smollm2")  # doctest: +SKIP
>>> backend.complete("Once upon a time", SamplingSettings(max_new_tokens=8), n=2)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from myopia.errors import MyopiaError
from myopia.generation.settings import SamplingSettings
from myopia.generation.stop_strings import cut_pieces
from myopia.generation.types import Continuation, FinishReason, GeneratedToken, TokenChoice

_MESSAGE_CHARS = 300  # a server's error message is cut to this, to stay on one line


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 3] + "..."


def _server_message(body: bytes) -> str:
    """The message in an error body: OpenAI's ``{"error": {"message"}}``, FastAPI's
    ``{"detail"}``, or the text itself."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text) or "(no message)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and "message" in error:
            return _one_line(error["message"])
        if isinstance(error, str):
            return _one_line(error)
        if "detail" in data:
            return _one_line(json.dumps(data["detail"]))
    return _one_line(text)


def completion_request(
    model: str, prompt: str, settings: SamplingSettings, n: int, alternatives: int
) -> dict[str, Any]:
    """The JSON body of a ``/v1/completions`` request."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "n": n,
        "seed": settings.seed,
        "logprobs": alternatives,
    }
    if settings.stop:
        body["stop"] = list(settings.stop)
    return body


def _finish_reason(choice: dict, settings: SamplingSettings) -> FinishReason:
    reason = choice.get("finish_reason")
    if reason == "length":
        return "length"
    if reason != "stop":
        raise ValueError(f"unknown finish_reason {reason!r}")
    if "stop_reason" in choice:  # vLLM: the stop string, or null (or a token id) at eos
        return "stop" if isinstance(choice["stop_reason"], str) else "eos"
    return "stop" if settings.stop else "eos"


def _legacy_lists(logprobs: dict) -> tuple[list, list, list]:
    """Token texts, their logprobs and ``{text: logprob}`` alternatives, from either the
    completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``) or the chat shape
    that llama.cpp's server also uses (``content: [{token, logprob, top_logprobs}]``)."""
    if "content" in logprobs and "tokens" not in logprobs:
        entries = logprobs["content"]
        texts = [e["token"] for e in entries]
        chosen = [e["logprob"] for e in entries]
        tops = [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []} for e in entries]
        return texts, chosen, tops
    texts = logprobs["tokens"]
    return texts, logprobs["token_logprobs"], logprobs.get("top_logprobs") or [None] * len(texts)


def _tokens(logprobs: dict | None, text: str) -> tuple[GeneratedToken, ...]:
    if not logprobs:
        return ()
    texts, chosen, tops = _legacy_lists(logprobs)
    if not (len(texts) == len(chosen) == len(tops)):
        raise ValueError("logprobs.tokens, token_logprobs and top_logprobs differ in length")
    joined = "".join(texts)
    if len(joined) > len(text) and joined.startswith(text):  # tokens past the text: a stop's
        texts = cut_pieces(texts, len(text))
    tokens = []
    for piece, logprob, top in zip(texts, chosen, tops, strict=False):
        ranked = sorted((top or {}).items(), key=lambda item: -item[1])
        alternatives = tuple(TokenChoice(text=t, logprob=float(lp)) for t, lp in ranked)
        tokens.append(
            GeneratedToken(
                chosen=TokenChoice(text=piece, logprob=float(logprob)), alternatives=alternatives
            )
        )
    return tuple(tokens)


def parse_completions(data: Any, settings: SamplingSettings, n: int) -> list[Continuation]:
    """Continuations from a ``/v1/completions`` answer; ``ValueError``/``KeyError``/
    ``TypeError`` when it does not have the expected shape."""
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
    if len(choices) != n:
        raise ValueError(f"{len(choices)} choices for n = {n}")
    return [
        Continuation(
            text=choice["text"],
            tokens=_tokens(choice.get("logprobs"), choice["text"]),
            finish_reason=_finish_reason(choice, settings),
        )
        for choice in choices
    ]


class OpenAIBackend:
    """Continuations from the ``/completions`` endpoint under ``base_url`` (which ends in
    ``/v1``, as for OpenAI's own clients)."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"openai:{self.base_url} {model}"

    @contextmanager
    def _opened(self, path: str, body: dict) -> Iterator[Any]:
        """The server's HTTP response to ``body`` posted at ``path``, open for reading;
        every way a request can fail becomes one line naming the server."""
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                yield response
        except urllib.error.HTTPError as error:
            hint = "; does the base URL end in /v1?" if error.code == 404 else ""
            raise MyopiaError(
                f"the completions server at {url} answered HTTP {error.code}: "
                f"{_server_message(error.read())}{hint}"
            ) from None
        except (urllib.error.URLError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):
                raise MyopiaError(
                    f"the completions server at {url} did not answer within "
                    f"{self.timeout:g} s; raise the timeout or ask for fewer tokens"
                ) from None
            raise MyopiaError(
                f"cannot reach the completions server at {url} ({_one_line(reason)}); "
                "is it running, and is the URL right?"
            ) from None

    def _post(self, path: str, body: dict) -> Any:
        url = f"{self.base_url}{path}"
        with self._opened(path, body) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise MyopiaError(
                f"the completions server at {url} did not answer with JSON: "
                f"{_one_line(raw.decode('utf-8', errors='replace'))}"
            ) from None

    def complete_streaming(
        self,
        prompt: str,
        settings: SamplingSettings,
        n: int,
        alternatives: int,
        on_token: Callable[[int, GeneratedToken], bool],
    ) -> list[Continuation]:
        """``complete`` with ``"stream": true``: ``on_token(row, token)`` sees each token
        as the server sends it; when it returns False the connection is closed and every
        row keeps the tokens it had (finish reason "length"). The continuations returned
        are built from all chunks exactly as ``complete`` builds them from one answer."""
        settings.check()
        if n < 1:
            raise MyopiaError(f"n must be at least 1, not {n}")
        body = {**completion_request(self.model, prompt, settings, n, alternatives), "stream": True}
        parts: dict[int, list[dict]] = {index: [] for index in range(n)}
        try:
            with self._opened("/completions", body) as response:
                for chunk in _events(response):
                    for choice in chunk["choices"]:
                        parts[choice.get("index", 0)].append(choice)
                        for token in _tokens(choice.get("logprobs"), choice.get("text", "")):
                            if not on_token(choice.get("index", 0), token):
                                return _joined(parts, settings, stopped=True)
            return _joined(parts, settings, stopped=False)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            what = f"no field {error}" if isinstance(error, KeyError) else str(error)
            raise MyopiaError(
                f"malformed streamed answer from the completions server at {self.base_url}: "
                f"{_one_line(what)}"
            ) from None

    def complete(
        self, prompt: str, settings: SamplingSettings, n: int = 1, alternatives: int = 5
    ) -> list[Continuation]:
        """``n`` continuations of ``prompt``, sampled by the server."""
        settings.check()
        if n < 1:
            raise MyopiaError(f"n must be at least 1, not {n}")
        body = completion_request(self.model, prompt, settings, n, alternatives)
        data = self._post("/completions", body)
        try:
            return parse_completions(data, settings, n)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            what = f"no field {error}" if isinstance(error, KeyError) else str(error)
            raise MyopiaError(
                f"malformed answer from the completions server at {self.base_url}: "
                f"{_one_line(what)}"
            ) from None


def _events(response) -> Iterator[dict]:
    """The JSON chunks of a server-sent-events answer, up to ``data: [DONE]``; an error
    sent midway (vLLM's ``{"error": ...}`` once the answer has begun) is a MyopiaError."""
    for raw in response:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments and other SSE fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
            message = _server_message(data.encode())
            raise MyopiaError(f"the completions server failed while streaming: {message}")
        yield chunk


def _joined(parts: dict[int, list[dict]], settings: SamplingSettings, stopped: bool):
    """The continuations of the streamed chunks of each choice, merged into the shape of
    one non-streamed answer (so that ``parse_completions`` reads both the same way)."""
    choices = []
    for index, chunks in sorted(parts.items()):
        logprobs: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": []}
        for chunk in chunks:
            for key in logprobs:
                logprobs[key] += (chunk.get("logprobs") or {}).get(key) or []
        finished = [c for c in chunks if c.get("finish_reason")]
        choice = {
            "index": index,
            "text": "".join(c.get("text") or "" for c in chunks),
            "logprobs": logprobs if logprobs["tokens"] else None,
            "finish_reason": "length" if stopped or not finished else finished[-1]["finish_reason"],
        }
        if finished and "stop_reason" in finished[-1] and not stopped:
            choice["stop_reason"] = finished[-1]["stop_reason"]
        choices.append(choice)
    return parse_completions({"choices": choices}, settings, len(choices))
