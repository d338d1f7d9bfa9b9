"""Checking one answer: IFEval-style instructions through `if-verifiable`, exact answers after normalization."""

from __future__ import annotations

import functools
import re
import string
from typing import Any

from llm_ladder.data import DATA_DIR

NLTK_DATA = DATA_DIR / "nltk_data"
"""Punkt parameters for if-verifiable's sentence counts; NLTK's own are an internet download (see its README)."""


@functools.cache
def _registry() -> dict[str, Any]:
    """IFEval's instruction checkers; imported on first use (if-verifiable pulls in `datasets` and nltk)."""
    import nltk
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # the case checkers call langdetect, which samples: same answer, same verdict
    if str(NLTK_DATA) not in nltk.data.path:
        nltk.data.path.insert(0, str(NLTK_DATA))
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return INSTRUCTION_DICT


def _checker(instruction_id: str, kwargs: dict[str, Any], prompt: str) -> Any:
    checker = _registry()[instruction_id](instruction_id)
    checker.build_description(**kwargs)
    if "prompt" in (checker.get_instruction_args() or {}):
        checker.build_description(prompt=prompt)
    return checker


def validate_instruction(instruction_id: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError unless the id is known and every argument is given: if-verifiable skips unknown ids
    (the item would always pass) and fills missing arguments with random values (a different test each run)."""
    registry = _registry()
    if instruction_id not in registry:
        raise ValueError(f"unknown instruction {instruction_id!r}")
    checker = registry[instruction_id](instruction_id)
    try:
        checker.build_description(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{instruction_id}: {err}") from None
    missing = [k for k in checker.get_instruction_args_keys() if k != "prompt" and k not in kwargs]
    if missing:
        raise ValueError(f"{instruction_id} needs {', '.join(missing)}")


def loose_variants(response: str) -> list[str]:
    """IFEval's loose mode: the response, without its first and/or last line, and without markdown asterisks."""
    from if_verifiable.common import get_loose_transformations

    return get_loose_transformations(response)


def check_instructions(
    prompt: str, response: str, instruction_ids: list[str], kwargs: list[dict[str, Any]]
) -> dict[str, tuple[bool, bool]]:
    """Per instruction: (strict pass, loose pass). A reasoning model's <think> block is not part of the answer."""
    from if_verifiable.common import strip_thinking

    response = strip_thinking(response)
    variants = [v for v in loose_variants(response) if v.strip()]
    results = {}
    for instruction_id, args in zip(instruction_ids, kwargs, strict=True):
        checker = _checker(instruction_id, args, prompt)
        strict = bool(response.strip()) and bool(checker.check_following(response))
        loose = strict or any(checker.check_following(v) for v in variants)
        results[instruction_id] = (strict, bool(loose))
    return results


_WORDS = """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
sixteen seventeen eighteen nineteen twenty"""
NUMBER_WORDS = {w: str(i) for i, w in enumerate(_WORDS.split())}
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|\b(?:" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)


def first_line(response: str) -> str:
    return next((line.strip() for line in response.splitlines() if line.strip()), "")


def last_number(text: str) -> float | None:
    """The last number in `text`: digits with thousands commas and decimals, or a number word up to twenty."""
    found = NUMBER.findall(text)
    if not found:
        return None
    token = found[-1].lower()
    return float(NUMBER_WORDS.get(token, token.replace(",", "")))


def normalize(text: str) -> str:
    """SQuAD-style: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(w for w in text.split() if w not in {"a", "an", "the"})


def check_exact(response: str, kind: str, answers: list[str]) -> tuple[bool, str]:
    """(passed, what was extracted from the response's first non-empty line)."""
    line = first_line(response)
    if kind == "number":
        value = last_number(line)
        return value is not None and any(value == float(a) for a in answers), "" if value is None else f"{value:g}"
    got = normalize(line)
    ok = any((n := normalize(a)) and (got == n or re.search(rf"\b{re.escape(n)}\b", got)) for a in answers)
    return bool(ok), got
