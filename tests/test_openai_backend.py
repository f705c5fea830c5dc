"""The OpenAI-compatible client against myopia's own completions server: over a tiny
model in a thread, over the toy model in a real subprocess, and against broken servers."""

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from myopia.errors import MyopiaError
from myopia.generation import LocalEngine, OpenAIBackend, SamplingSettings
from myopia.generation.fake_openai_server import ToyBackend, serving
from myopia.generation.openai_backend import completion_request, parse_completions
from myopia.models.loading import load_model

TINY = "fresh-llama:d_model=64,n_layers=2,n_heads=4,n_kv_heads=2"
PROMPT = "Hello there, general"


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    model, tokenizer = load_model(TINY)
    return LocalEngine(model.eval(), tokenizer, name="tiny")


def without_ids(continuations):
    """What the protocol carries of local continuations: token texts without ids, and
    alternatives keyed by text (the best of equal texts kept)."""
    result = []
    for c in continuations:
        tokens = []
        for t in c.tokens:
            by_text: dict[str, float] = {}
            for a in t.alternatives:
                by_text.setdefault(a.text, a.logprob)
            tokens.append((t.chosen.text, t.chosen.logprob, sorted(by_text.items())))
        result.append((c.text, c.finish_reason, tokens))
    return result


@pytest.mark.parametrize(
    "settings",
    [
        SamplingSettings(max_new_tokens=8),
        SamplingSettings(max_new_tokens=8, temperature=1.0, top_p=0.9, seed=5),
    ],
)
def test_the_client_over_the_server_gives_what_the_engine_gives(engine, settings):
    local = engine.complete(PROMPT, settings, n=3, alternatives=4)
    with serving(engine) as server:
        remote = OpenAIBackend(server.base_url, model="tiny").complete(PROMPT, settings, 3, 4)
    assert without_ids(remote) == without_ids(local)
    assert all(t.chosen.token_id is None for c in remote for t in c.tokens)


def test_streaming_gives_each_token_as_it_comes_and_the_same_continuations(engine):
    settings = SamplingSettings(max_new_tokens=8, temperature=1.0, seed=3)
    seen: list[tuple[int, str]] = []
    with serving(engine) as server:
        client = OpenAIBackend(server.base_url, model="tiny")
        whole = client.complete(PROMPT, settings, 2, 3)
        streamed = client.complete_streaming(
            PROMPT, settings, 2, 3, lambda row, token: seen.append((row, token.chosen.text)) or True
        )
    assert without_ids(streamed) == without_ids(whole)
    for row, continuation in enumerate(whole):  # every token, in order, for its row
        expected = [t.chosen.text for t in continuation.tokens]
        assert [text for r, text in seen if r == row] == expected


def test_a_cancelled_stream_keeps_the_tokens_it_had(engine):
    settings = SamplingSettings(max_new_tokens=10)
    with serving(engine) as server:
        client = OpenAIBackend(server.base_url, model="tiny")
        [whole] = client.complete(PROMPT, settings)
        count = []
        [cut] = client.complete_streaming(
            PROMPT, settings, 1, 2, lambda row, token: count.append(1) or len(count) < 4
        )
        [again] = client.complete(PROMPT, settings)  # the server is fine after a hang-up
    assert len(cut.tokens) == 4 and cut.finish_reason == "length"
    assert cut.text == "".join(t.chosen.text for t in whole.tokens[:4])
    assert without_ids([again]) == without_ids([whole])


def test_the_loom_streams_through_the_openai_backend():
    from myopia.loom.weave import StreamingBackend

    assert isinstance(OpenAIBackend("http://127.0.0.1:9/v1", model="m"), StreamingBackend)


def test_stop_strings_and_end_of_text_survive_the_round_trip(engine):
    [full] = engine.complete(PROMPT, SamplingSettings(max_new_tokens=12))
    stop = full.text[5:7]
    settings = SamplingSettings(max_new_tokens=12, stop=(stop, "never seen"))
    saved = engine.end_ids
    try:
        with serving(engine) as server:
            client = OpenAIBackend(server.base_url, model="tiny")
            [stopped] = client.complete(PROMPT, settings)
            engine.end_ids = frozenset({full.tokens[3].chosen.token_id})
            # With stop strings given, only vLLM's stop_reason tells end of text apart.
            [ended] = client.complete(PROMPT, SamplingSettings(12, stop=("never seen",)))
    finally:
        engine.end_ids = saved
    assert stopped.finish_reason == "stop" and stopped.text == full.text[: full.text.find(stop)]
    assert ended.finish_reason == "eos" and len(ended.tokens) <= 3
    assert ended.text == full.text[: len(ended.text)]


def test_the_toy_server_in_a_subprocess_answers_the_client():
    process = subprocess.Popen(
        [sys.executable, "-m", "myopia.generation.fake_openai_server", "--toy", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # "serving 'toy' at http://127.0.0.1:PORT/v1"
        base_url = line.split(" at ")[-1].strip()
        client = OpenAIBackend(base_url, model="toy", timeout=10)
        [greedy] = client.complete("Go:", SamplingSettings(max_new_tokens=20), alternatives=2)
        assert greedy.text == " the cat sat on a mat.\n" and greedy.finish_reason == "eos"
        assert [t.chosen.text for t in greedy.tokens][:2] == [" the", " cat"]
        assert greedy.tokens[0].chosen.logprob == pytest.approx(torch.tensor(0.4).log().item())
        assert [a.text for a in greedy.tokens[1].alternatives] == [" cat", " sat"]
        stopped = client.complete("Go:", SamplingSettings(20, stop=("t on",)), n=2)
        assert [(c.text, c.finish_reason) for c in stopped] == [(" the cat sa", "stop")] * 2
        assert [t.chosen.text for t in stopped[0].tokens] == [" the", " cat", " sa"]
        sampled = client.complete("Go:", SamplingSettings(6, temperature=1.0, seed=1), n=8)
        assert len({c.text for c in sampled}) > 1
        with pytest.raises(MyopiaError, match="model 'gpt-4' not found; this server has 'toy'"):
            OpenAIBackend(base_url, model="gpt-4").complete("Go:", SamplingSettings())
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_toy_backend_agrees_with_itself_locally():
    settings = SamplingSettings(max_new_tokens=6, temperature=0.8, seed=3)
    assert ToyBackend().complete("x", settings, 4) == ToyBackend().complete("x", settings, 4)


def test_an_unreachable_server_is_a_one_line_error():
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIBackend(f"http://127.0.0.1:{port}/v1", model="m", timeout=5)
    with pytest.raises(MyopiaError, match="cannot reach the completions server") as error:
        client.complete("x", SamplingSettings())
    assert "\n" not in str(error.value)


def test_server_errors_carry_the_servers_message():
    with serving(ToyBackend()) as server:
        wrong_path = OpenAIBackend(server.base_url.removesuffix("/v1"), model="toy")
        with pytest.raises(MyopiaError, match="HTTP 404: no such path.*end in /v1"):
            wrong_path.complete("x", SamplingSettings())
        too_many = OpenAIBackend(server.base_url, model="toy")
        with pytest.raises(MyopiaError, match="HTTP 400: 'n' must be between 1 and 64"):
            too_many.complete("x", SamplingSettings(), n=65)


class _Canned(BaseHTTPRequestHandler):
    """Answers every POST with the server's canned bytes, after its delay."""

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.end_headers()
        try:
            self.wfile.write(self.server.body)
        except BrokenPipeError:  # the client gave up waiting (the timeout test)
            pass


def canned_server(body: bytes, status: int = 200, delay: float = 0.0):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.body, server.status, server.delay = body, status, delay
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.mark.parametrize(
    "body, status, expected",
    [
        (b"<html>not json</html>", 200, "did not answer with JSON: <html>not json</html>"),
        (json.dumps({"object": "x"}).encode(), 200, "malformed answer .* no field 'choices'"),
        (json.dumps({"choices": [{"text": "a"}]}).encode(), 200, "unknown finish_reason None"),
        (json.dumps({"detail": "bad key"}).encode(), 401, 'HTTP 401: "bad key"'),
        (b"Internal\nServer\nError", 500, "HTTP 500: Internal Server Error$"),
    ],
)
def test_broken_answers_are_one_line_errors(body, status, expected):
    server, base_url = canned_server(body, status)
    try:
        with pytest.raises(MyopiaError, match=expected) as error:
            OpenAIBackend(base_url, model="m").complete("x", SamplingSettings())
        assert "\n" not in str(error.value)
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_server_times_out():
    server, base_url = canned_server(b"{}", delay=1.0)
    try:
        with pytest.raises(MyopiaError, match="did not answer within 0.2 s"):
            OpenAIBackend(base_url, model="m", timeout=0.2).complete("x", SamplingSettings())
    finally:
        server.shutdown()
        server.server_close()


def test_the_request_carries_every_setting():
    settings = SamplingSettings(max_new_tokens=9, temperature=0.7, top_p=0.5, stop=("\n",), seed=4)
    assert completion_request("m", "p", settings, n=3, alternatives=2) == {
        "model": "m",
        "prompt": "p",
        "max_tokens": 9,
        "temperature": 0.7,
        "top_p": 0.5,
        "n": 3,
        "seed": 4,
        "logprobs": 2,
        "stop": ["\n"],
    }


def test_parsing_a_vllm_style_answer():
    """Tokens past the cut text (a stop string's) are dropped; without ``stop_reason`` a
    "stop" is a stop string when stop strings were asked for."""
    logprobs = {
        "tokens": [" Hi", " there", "\n\n"],
        "token_logprobs": [-0.5, -1.0, -0.1],
        "top_logprobs": [{" Hi": -0.5, " Hello": -1.5}, {" there": -1.0}, {"\n\n": -0.1}],
    }
    data = {
        "choices": [
            {"index": 1, "text": "x", "finish_reason": "length", "logprobs": None},
            {"index": 0, "text": " Hi the", "finish_reason": "stop", "logprobs": logprobs},
        ]
    }
    settings = SamplingSettings(stop=("re",))
    first, second = parse_completions(data, settings, n=2)
    assert (first.finish_reason, second.finish_reason) == ("stop", "length")
    assert [t.chosen.text for t in first.tokens] == [" Hi", " the"]
    assert [a.text for a in first.tokens[0].alternatives] == [" Hi", " Hello"]
    assert second.tokens == ()
    [eos] = parse_completions({"choices": [data["choices"][1]]}, SamplingSettings(), n=1)
    assert eos.finish_reason == "eos"
    with pytest.raises(ValueError, match="2 choices for n = 3"):
        parse_completions(data, settings, n=3)


def test_parsing_the_chat_shape_of_logprobs():
    logprobs = {
        "content": [
            {"token": " a", "logprob": -0.2, "top_logprobs": [{"token": " a", "logprob": -0.2}]},
            {"token": " b", "logprob": -3.0, "top_logprobs": []},
        ]
    }
    data = {"choices": [{"text": " a b", "finish_reason": "length", "logprobs": logprobs}]}
    [c] = parse_completions(data, SamplingSettings(), n=1)
    assert [(t.chosen.text, t.chosen.logprob) for t in c.tokens] == [(" a", -0.2), (" b", -3.0)]
    assert [a.text for a in c.tokens[0].alternatives] == [" a"] and c.tokens[1].alternatives == ()


def test_the_server_refuses_bad_settings_with_a_clear_message(engine):
    with serving(engine) as server:
        request = urllib.request.Request(
            f"{server.base_url}/completions",
            data=json.dumps({"model": "tiny", "prompt": "x", "max_tokens": "many"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 400
    message = json.loads(error.value.read())["error"]["message"]
    assert message == "'max_tokens' must be an integer, not \"many\""


def test_the_loom_streams_from_a_server_and_a_cancel_keeps_what_came(tmp_path):
    # The loom's page path end to end: /generate/stream over OpenAIBackend over the fake
    # server, which streams each token as its model (the demo, 20 ms a token) makes it.
    from fastapi.testclient import TestClient

    from myopia.loom.app import create_app
    from myopia.loom.demo_backend import DemoBackend
    from myopia.loom.store import LoomStore

    with serving(DemoBackend(delay_s=0.02), model_name="demo") as server:
        backend = OpenAIBackend(server.base_url, model="demo")
        with LoomStore(tmp_path / "s.sqlite") as store:
            client = TestClient(create_app(store, backend))
            root = store.edit_text(store.root_id, 1, "Once")
            body = {"version": root.version, "n": 2, "max_tokens": 300, "seed": 1}
            events, seen = [], 0
            url = f"/api/nodes/{root.id}/generate/stream"
            with client.stream("POST", url, json=body) as answer:
                for line in answer.iter_lines():
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: "):
                        data = json.loads(line[len("data: ") :])
                        events.append((event, data))
                        seen += event == "token"
                        if event == "start":
                            stream = data["stream"]
                        if event == "token" and seen == 5:
                            assert client.post(f"/api/streams/{stream}/cancel").json() == {
                                "cancelled": True
                            }
            event, done = events[-1]
            assert event == "done" and done["cancelled"], events[-3:]
            [child] = done["children"]  # the second row was never begun
            assert child["generation"]["finish_reason"] == "cancelled"
            assert child["generation"]["backend"] == backend.name
            assert 5 <= len(child["tokens"]) < 100  # the server stopped, too
            streamed = [d["text"] for e, d in events if e == "token"]
            assert "".join(t["text"] for t in child["tokens"]) == child["text"]
            assert streamed[: len(child["tokens"])] == [t["text"] for t in child["tokens"]]
            # Uncancelled, the same request gives both rows whole, token by token.
            whole = client.post(url, json={**body, "max_tokens": 4}).text
            assert whole.count("event: token") == 8 and whole.endswith('"cancelled":false}\n\n')


def test_an_error_while_streaming_is_one_line(engine):
    settings = SamplingSettings(max_new_tokens=4)
    with serving(engine) as server:
        client = OpenAIBackend(server.base_url, model="tiny")
        long_prompt = "word " * 5000  # past the tiny model's context, found once streaming
        with pytest.raises(MyopiaError, match="failed while streaming: .*context"):
            client.complete_streaming(long_prompt, settings, 1, 2, lambda row, token: True)
