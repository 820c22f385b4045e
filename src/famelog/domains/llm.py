"""Chat backends for the one-time domain proposal: a local GGUF through llama-cpp-python, or any
OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, LM Studio).

One interface, :class:`ChatBackend`: ``chat(messages, choices=…, grammar=…)`` returns the answer text. ``choices``
limits the answer to one of a few strings; ``grammar`` is a GBNF grammar. Backends that can constrain decoding do so;
callers still validate every answer, since an endpoint may ignore the constraint.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path

MAX_ANSWER_BYTES = 1_000_000  # a constrained answer is a few words; anything near this is broken


class LLMError(RuntimeError):
    """A call that produced no usable answer (after retries)."""


def choices_grammar(choices: list[str]) -> str:
    """GBNF that accepts exactly one of ``choices``."""
    if not choices:
        raise ValueError("choices must not be empty")
    return "root ::= " + " | ".join(json.dumps(choice) for choice in choices)


class ChatBackend(ABC):
    """``model_id`` names the model; ``model_sha256`` identifies its weights where they are a local file."""

    model_id: str = "unknown"
    model_sha256: str | None = None

    @abstractmethod
    def chat(self, messages: list[dict], *, choices: list[str] | None = None, grammar: str | None = None,
             max_tokens: int = 32) -> str:
        """The answer text for ``messages`` (temperature 0)."""

    def describe(self) -> dict:
        return {"backend": type(self).__name__, "model": self.model_id, "sha256": self.model_sha256}


class LlamaCppBackend(ChatBackend):
    """A local GGUF model through llama-cpp-python (``pip install -e '.[llm]'``). Decoding is grammar-constrained."""

    def __init__(self, model_path: str | Path, n_threads: int = 1, n_ctx: int = 4096, seed: int = 0,
                 sha256: str | None = None):
        from famelog.llm_fetch import verify_gguf

        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMError("the llamacpp backend needs llama-cpp-python==0.3.36 (pip install -e '.[llm]')") from None
        self.model_path = Path(model_path)
        self.model_sha256 = sha256 or verify_gguf(self.model_path)
        self.model_id = self.model_path.name
        self._llm = Llama(model_path=str(self.model_path), n_threads=n_threads, n_threads_batch=n_threads,
                          n_ctx=n_ctx, seed=seed, verbose=False)
        self._grammars: dict[str, object] = {}

    def _grammar(self, text: str):
        from llama_cpp import LlamaGrammar

        if text not in self._grammars:
            self._grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[text]

    def chat(self, messages, *, choices=None, grammar=None, max_tokens=32) -> str:
        if choices:
            grammar = choices_grammar(choices)
        result = self._llm.create_chat_completion(
            messages=messages, temperature=0.0, max_tokens=max_tokens,
            grammar=self._grammar(grammar) if grammar else None,
        )
        return (result["choices"][0]["message"].get("content") or "").strip()


class OpenAIBackend(ChatBackend):
    """An OpenAI-compatible ``/chat/completions`` endpoint.

    The API key is read from the environment variable named by ``api_key_env`` at call time and is never stored,
    written or logged. Timeouts, 429 and 5xx answers are retried with backoff; other 4xx answers are not.
    ``constraint``: ``none`` (prompt only), ``guided`` (vLLM ``guided_choice`` / ``guided_grammar``) or
    ``grammar`` (llama.cpp server ``grammar``).
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "FAMELOG_LLM_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, constraint: str = "none"):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {base_url!r}")
        if constraint not in ("none", "guided", "grammar"):
            raise ValueError(f"constraint must be none, guided or grammar, got {constraint!r}")
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model_id = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.constraint = constraint

    def describe(self) -> dict:
        return super().describe() | {"base_url": self.url.rsplit("/chat/completions", 1)[0]}

    def chat(self, messages, *, choices=None, grammar=None, max_tokens=32) -> str:
        body: dict = {"model": self.model_id, "messages": messages, "temperature": 0.0, "max_tokens": max_tokens}
        if self.constraint == "guided":
            if choices:
                body["guided_choice"] = choices
            elif grammar:
                body["guided_grammar"] = grammar
        elif self.constraint == "grammar" and (choices or grammar):
            body["grammar"] = choices_grammar(choices) if choices else grammar
        data = json.dumps(body).encode("utf-8")
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json"}
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read(MAX_ANSWER_BYTES + 1)
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code} from {self.url}"
                if exc.code == 429 or exc.code >= 500:
                    continue
                raise LLMError(last_error) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_error = f"no answer from {self.url} ({reason})"
                continue
            if len(raw) > MAX_ANSWER_BYTES:
                raise LLMError(f"answer from {self.url} is larger than {MAX_ANSWER_BYTES:,} bytes; refused")
            return _content_of(raw, self.url)
        raise LLMError(f"{last_error}; gave up after {self.retries + 1} attempt(s)")


def _content_of(raw: bytes, url: str) -> str:
    try:
        payload = json.loads(raw.decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LLMError(f"answer from {url} is not JSON") from None
    except (KeyError, IndexError, TypeError):
        raise LLMError(f"answer from {url} has no choices[0].message.content") from None
    if not isinstance(content, str):
        raise LLMError(f"answer from {url} has no text content")
    return content.strip()
