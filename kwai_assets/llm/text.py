"""Prompt text shared by the prompt builder and the backends (no heavy imports: runs on a bare GPU box)."""
from __future__ import annotations

import json
import re

SYSTEM = ("You are an analyst of a short-video platform. From the JSON activity summary, write one short paragraph "
          "describing the spatio-temporal preferences: where, when and what. Do not list raw numbers.")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Estimated tokens: words and punctuation marks (close to a BPE count on these JSON prompts)."""
    return len(_TOKEN.findall(text))


def render(task: str, document: dict) -> str:
    return f"{task}\n{json.dumps(document, separators=(',', ':'), ensure_ascii=False)}"


def document_of(prompt: str) -> dict:
    """The JSON document inside a prompt built by `render`."""
    return json.loads(prompt[prompt.index("{"):])
