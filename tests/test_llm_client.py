"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from famelog.domains.llm import LLMError, OpenAIBackend, choices_grammar

SECRET = "sk-test-do-not-leak-123"


class FakeChatServer:
    """Serves /<mode>/v1/chat/completions. Modes: ok, garbage, slow, flaky (two 500s, then ok), down (always 500),
    bad (400), huge (a 10 MB answer), nocontent."""

    def __init__(self):
        self.requests: list[dict] = []
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                mode = self.path.split("/")[1]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"mode": mode, "body": body, "auth": self.headers.get("Authorization")})
                server.hits[mode] = server.hits.get(mode, 0) + 1
                if mode == "slow":
                    time.sleep(1.0)
                if mode == "down" or (mode == "flaky" and server.hits[mode] <= 2):
                    return self._send(500, b'{"error": "overloaded"}')
                if mode == "bad":
                    return self._send(400, b'{"error": "bad request"}')
                if mode == "garbage":
                    return self._send(200, b"<html>definitely not json</html>")
                if mode == "huge":
                    return self._send(200, b'{"choices": [{"message": {"content": "' + b"x" * 10_000_000 + b'"}}]}')
                if mode == "nocontent":
                    return self._send(200, b'{"choices": []}')
                choices = body.get("guided_choice")
                answer = choices[-1] if choices else "network"
                self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}
                                           ).encode())

            def _send(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/v1"


@pytest.fixture
def server():
    fake = FakeChatServer()
    fake.thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


MESSAGES = [{"role": "user", "content": "Which domain?"}]


def test_well_formed_answer_and_guided_choices(server, monkeypatch):
    monkeypatch.setenv("FAMELOG_LLM_API_KEY", SECRET)
    backend = OpenAIBackend(server.url("ok"), "qwen", constraint="guided")
    assert backend.chat(MESSAGES, choices=["memory", "storage"]) == "storage"
    request = server.requests[-1]
    assert request["body"]["guided_choice"] == ["memory", "storage"]
    assert request["body"]["temperature"] == 0.0 and request["body"]["model"] == "qwen"
    assert request["auth"] == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(backend.describe())
    assert not any(SECRET in str(v) for v in vars(backend).values())


def test_llamacpp_server_grammar_constraint(server):
    OpenAIBackend(server.url("ok"), "m", constraint="grammar").chat(MESSAGES, choices=["a", "b"])
    assert server.requests[-1]["body"]["grammar"] == choices_grammar(["a", "b"]) == 'root ::= "a" | "b"'


def test_garbage_answer_is_a_clear_error(server):
    with pytest.raises(LLMError, match="is not JSON"):
        OpenAIBackend(server.url("garbage"), "m", retries=0).chat(MESSAGES)
    with pytest.raises(LLMError, match=r"has no choices\[0\]\.message\.content"):
        OpenAIBackend(server.url("nocontent"), "m", retries=0).chat(MESSAGES)


def test_slow_server_times_out_and_retries_are_bounded(server):
    backend = OpenAIBackend(server.url("slow"), "m", timeout=0.2, retries=1, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(LLMError, match="gave up after 2 attempt"):
        backend.chat(MESSAGES)
    assert server.hits["slow"] == 2
    assert time.monotonic() - started < 5


def test_500s_are_retried_then_succeed(server):
    backend = OpenAIBackend(server.url("flaky"), "m", retries=3, backoff=0.01)
    assert backend.chat(MESSAGES) == "network"
    assert server.hits["flaky"] == 3


def test_persistent_500s_give_up(server, monkeypatch):
    monkeypatch.setenv("FAMELOG_LLM_API_KEY", SECRET)
    with pytest.raises(LLMError, match="HTTP 500") as info:
        OpenAIBackend(server.url("down"), "m", retries=2, backoff=0.01).chat(MESSAGES)
    assert server.hits["down"] == 3
    assert SECRET not in str(info.value)


def test_4xx_is_not_retried(server):
    with pytest.raises(LLMError, match="HTTP 400"):
        OpenAIBackend(server.url("bad"), "m", retries=3, backoff=0.01).chat(MESSAGES)
    assert server.hits["bad"] == 1


def test_huge_answer_is_refused(server):
    with pytest.raises(LLMError, match="larger than"):
        OpenAIBackend(server.url("huge"), "m", retries=0).chat(MESSAGES)


def test_nothing_listening_is_a_clear_error():
    with pytest.raises(LLMError, match="no answer from http://127.0.0.1:9/v1/chat/completions"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", retries=0, timeout=1).chat(MESSAGES)


@pytest.mark.parametrize("kwargs, message", [
    ({"base_url": "ftp://x"}, "base URL"), ({"constraint": "magic"}, "constraint"), ({"timeout": 0}, "timeout")])
def test_parameters_are_validated(kwargs, message):
    arguments = {"base_url": "http://127.0.0.1:1/v1", "model": "m"} | kwargs
    with pytest.raises(ValueError, match=message):
        OpenAIBackend(**arguments)
