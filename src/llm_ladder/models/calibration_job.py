"""Calibrated quantization with llm-compressor, run as a script inside its own virtual environment.

This file is executed by the calibration venv's Python (see calibrate.py), where llm_ladder is not installed:
it imports only llm-compressor, transformers, datasets and the standard library. It writes a compressed-tensors
checkpoint (lm_head kept in 16 bits) that vLLM serves.

Calibration text: records separated by a line '%%'; a record starting with 'Q: ' is a chat pair ('Q: question',
then 'A: answer'), rendered with the model's chat template; anything else is plain text, packed into sequences.
Half the samples are chats, half plain text, so the activations seen match both uses of an instruct model.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

SCHEMES = ("w8a8-sq-gptq", "w4a16-gptq-g32", "w4a16-gptq-g64", "fp8-static")


def w4a16(group_size: int) -> dict:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    args = QuantizationArgs(num_bits=4, type="int", strategy="group", group_size=group_size, symmetric=True)
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=args)}


def recipe(scheme: str) -> list:
    """SmoothQuant (0.8) moves activation outliers into the weights, then GPTQ rounds them with the calibration
    Hessian; for 4-bit weights GPTQ alone (no activations quantized). FP8 with static per-tensor scales needs
    only the activations' range: no rounding search."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    if scheme == "fp8-static":
        return [QuantizationModifier(targets="Linear", scheme="FP8", ignore=["lm_head"])]

    if scheme == "w8a8-sq-gptq":
        from llmcompressor.modifiers.transform import SmoothQuantModifier

        return [
            SmoothQuantModifier(smoothing_strength=0.8),
            GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"]),
        ]
    if scheme.startswith("w4a16-gptq-g"):
        return [GPTQModifier(config_groups=w4a16(int(scheme.rsplit("g", 1)[1])), ignore=["lm_head"])]
    raise SystemExit(f"unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def load_records(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    chats, texts = [], []
    for record in path.read_text(encoding="utf-8").split("\n%%\n"):
        record = record.strip()
        if record.startswith("Q: ") and "\nA: " in record:
            question, answer = record[3:].split("\nA: ", 1)
            chats.append((question.strip(), answer.strip()))
        elif record:
            texts.append(record)
    return chats, texts


def _chat_sample(tok, chats: list[tuple[str, str]], start: int, seq_len: int) -> tuple[list[int], int]:
    """Question/answer turns packed into one conversation until it reaches seq_len tokens."""
    messages: list[dict[str, str]] = []
    i = start
    while True:
        question, answer = chats[i % len(chats)]
        i += 1
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        ids = list(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        if len(ids) >= seq_len or i - start >= len(chats):
            return ids[:seq_len], i


def samples(tok, path: Path, n: int, seq_len: int, seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)
    chats, texts = load_records(path)
    rng.shuffle(chats)
    rng.shuffle(texts)
    use_chat = bool(chats) and tok.chat_template is not None
    stream = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"] if texts else []
    bos = tok("", add_special_tokens=True)["input_ids"]
    out: list[list[int]] = []
    chat_at = text_at = 0
    while len(out) < n:
        if use_chat and (len(out) % 2 == 0 or len(stream) < seq_len):
            ids, chat_at = _chat_sample(tok, chats, chat_at, seq_len)
        else:
            text_at = 0 if text_at + seq_len > len(stream) else text_at
            ids = bos + stream[text_at : text_at + seq_len - len(bos)]
            text_at += seq_len - len(bos)
        out.append(ids)
    return Dataset.from_dict({"input_ids": out, "attention_mask": [[1] * len(s) for s in out]})


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scheme", required=True, choices=SCHEMES)
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()

    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype="auto")
    data = samples(tok, args.calibration, args.samples, args.seq_len)
    print(f"[calibrate] {len(data)} samples × ≤{args.seq_len} tokens, {args.scheme}", flush=True)
    oneshot(model=model, processor=tok, dataset=data, recipe=recipe(args.scheme),
            num_calibration_samples=args.samples, max_seq_length=args.seq_len)  # fmt: skip
    model.save_pretrained(args.out, save_compressed=True)
    print(f"[calibrate] done in {time.time() - start:.0f} s → {args.out}", flush=True)


if __name__ == "__main__":
    main()
