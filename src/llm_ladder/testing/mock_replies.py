"""The payloads the mock server answers with, in vLLM's shapes: chat and text completions, streamed chunks,
and prompt logprobs over a toy tokenizer (one token per word)."""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_ladder.testing.mock_server import Script

VOCAB = 5000


def completion_with_logprobs(body: dict, script: Script) -> dict:
    """Prompt logprobs in vLLM's shape over a toy tokenizer (one token per word); a list of strings is a batch of
    prompts, one choice each, and so is a list of token-id lists (a list of ints is one prompt of token ids, as
    vLLM takes them)."""
    prompt = body["prompt"]
    batch = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list) else [prompt]
    k = int(body["prompt_logprobs"])
    choices = [_prompt_choice(i, p if isinstance(p, list) else toy_ids(str(p)), k, script) for i, p in enumerate(batch)]
    return {"id": "mock", "object": "text_completion", "model": body.get("model"), "choices": choices[::-1]}


def _prompt_choice(index: int, ids: list[int], k: int, script: Script) -> dict:
    """One prompt's choice (the batch is answered in reverse: callers must order choices by `index`)."""
    entries: list[dict | None] = [None]
    for tok in ids[1:]:
        cands = {tok: -0.3 - script.logprob_shift}
        for j in range(1, k):
            cands[(tok + j) % VOCAB] = -1.5 - j + (script.logprob_shift if j == 1 else 0.0)
        ranked = sorted(cands.items(), key=lambda kv: -kv[1])
        entries.append(
            {str(t): {"logprob": lp, "rank": r + 1, "decoded_token": "w"} for r, (t, lp) in enumerate(ranked)}
        )
    return {"index": index, "text": "w", "prompt_logprobs": entries, "prompt_token_ids": ids, "finish_reason": "length"}


def toy_ids(text: str) -> list[int]:
    return [zlib.crc32(word.encode()) % VOCAB for word in text.split()]


def chat_reply(body: dict, script: Script, n: int) -> dict:
    """A non-streaming chat completion in vLLM's shape, token ids included (one toy token per word)."""
    user = str((body.get("messages") or [{}])[-1].get("content", ""))
    text = next((r for key, r in script.replies.items() if key in user), script.reply)
    text = script.reply_prefix + (text if text is not None else " ".join(f"{script.text}{i}" for i in range(n)))
    ids = toy_ids(text)
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "token_ids": ids}
    usage = {"prompt_tokens": len(toy_ids(user)), "completion_tokens": len(ids)}
    return {"id": "mock", "object": "chat.completion", "model": body.get("model"), "choices": [choice], "usage": usage}


def text_reply(body: dict, script: Script, n: int) -> dict:
    """A non-streaming text completion in vLLM's shape."""
    text = " ".join(f"{script.text}{i}" for i in range(n))
    choice = {"index": 0, "text": text, "finish_reason": "length"}
    usage = {"prompt_tokens": len(toy_ids(str(body.get("prompt", "")))), "completion_tokens": n}
    return {"id": "mock", "object": "text_completion", "model": body.get("model"), "choices": [choice], "usage": usage}


def chunk(
    model: str,
    content: str | None,
    finish: str | None = None,
    usage: dict | None = None,
    completions: bool = False,
) -> bytes:
    if usage:
        choices = []
    elif completions:
        choices = [{"index": 0, "text": content or "", "finish_reason": finish}]
    else:
        choices = [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]
    kind = "text_completion" if completions else "chat.completion.chunk"
    payload = {"id": "mock", "object": kind, "model": model, "choices": choices}
    if usage:
        payload["usage"] = usage
    return f"data: {json.dumps(payload)}\n\n".encode()
