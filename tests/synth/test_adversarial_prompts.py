"""Issue 13.8: a prompt's length is capped (a 100 KB prompt became 2.3 h of audio)."""

from __future__ import annotations

import json

import pytest

from synth.refusals import MAX_FOLLOWUPS, MAX_TEXT_CHARS, PromptError, parse_prompt


def test_a_100_kb_prompt_is_refused_with_its_length() -> None:
    line = json.dumps({"id": "p", "category": "c", "text": "word " * 20_000})
    with pytest.raises(PromptError, match=f"100000 characters; at most {MAX_TEXT_CHARS}"):
        parse_prompt(line, 1)


def test_too_many_followups_are_refused() -> None:
    line = json.dumps({"id": "p", "category": "c", "text": "hello", "followups": ["more"] * (MAX_FOLLOWUPS + 1)})
    with pytest.raises(PromptError, match="followups"):
        parse_prompt(line, 1)


def test_a_prompt_at_the_cap_is_accepted() -> None:
    text = ("word " * MAX_TEXT_CHARS)[: MAX_TEXT_CHARS - 1] + "x"
    assert parse_prompt(json.dumps({"id": "p", "category": "c", "text": text}), 1).text == text.strip()
