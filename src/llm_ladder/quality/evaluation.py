"""Running task suites against an OpenAI-compatible server: greedy decoding, a fixed seed, a bounded number of
items in flight, each item's prompt, answer and verdict kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from llm_ladder.measure.request import REQUEST_TIMEOUT, request_body
from llm_ladder.plan.schema import SuitesSpec
from llm_ladder.quality.suites import ItemResult, Suite, SuiteItem, SuiteScore, append_item, load_suite, score

OnItem = Callable[[ItemResult], None]


def load_suites(spec: SuitesSpec) -> list[Suite]:
    """The plan's suites, cut to `limit` items each; raises SuiteError naming a bad one."""
    suites = [load_suite(name) for name in spec.names] if spec.enabled else []
    if spec.limit:
        suites = [s.model_copy(update={"items": s.items[: spec.limit]}) for s in suites]
    return suites


def item_body(model: str, suite: Suite, item: SuiteItem, seed: int) -> dict[str, Any]:
    """Greedy, seeded; token ids asked for (vLLM's `return_token_ids`: greedy identity token for token; other
    servers ignore the field and identity compares text)."""
    return request_body(model, suite.message(item), suite.max_tokens, extras={"return_token_ids": True},
                        temperature=0, seed=seed)  # fmt: skip


async def answer_item(
    http: httpx.AsyncClient, base_url: str, model: str, suite: Suite, item: SuiteItem, seed: int
) -> ItemResult:
    """One item, answered and checked; a failed request becomes a failed item with its error."""
    result = ItemResult(suite=suite.name, id=item.id, prompt=suite.message(item))
    try:
        resp = await http.post(f"{base_url}/v1/chat/completions", json=item_body(model, suite, item, seed))
        if resp.status_code != 200:
            result.error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            return result
        body = resp.json()
        choice = body["choices"][0]
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as err:
        result.error = f"{type(err).__name__}: {err}"
        return result
    result.response = choice.get("message", {}).get("content") or ""
    result.token_ids = choice.get("token_ids")
    result.finish_reason = choice.get("finish_reason")
    result.completion_tokens = (body.get("usage") or {}).get("completion_tokens")
    verdict = suite.check(item, result.response)
    result.passed, result.loose, result.detail = verdict.passed, verdict.loose, verdict.detail
    return result


async def run_suites(
    http: httpx.AsyncClient, base_url: str, model: str, suites: list[Suite], spec: SuitesSpec, on_item: OnItem
) -> dict[str, list[ItemResult]]:
    """Every item of every suite from one pool of at most `spec.concurrency` in flight, so one suite's tail does
    not leave the batch half empty; results per suite, in each suite's order."""
    gate = asyncio.Semaphore(spec.concurrency)

    async def one(suite: Suite, item: SuiteItem) -> ItemResult:
        async with gate:
            result = await answer_item(http, base_url, model, suite, item, spec.seed)
        on_item(result)
        return result

    answers = await asyncio.gather(*(one(s, item) for s in suites for item in s.items))
    it = iter(answers)
    return {s.name: [next(it) for _ in s.items] for s in suites}


def scores(items: dict[str, list[ItemResult]]) -> dict[str, SuiteScore]:
    return {name: score(name, results) for name, results in items.items()}


async def served_model(http: httpx.AsyncClient, base_url: str, wanted: str | None) -> str:
    """`wanted` if the server lists it, else the first model it lists; a clear error for anything else."""
    resp = await http.get(f"{base_url}/v1/models")
    resp.raise_for_status()
    models = [m["id"] for m in resp.json().get("data") or []]
    if not models:
        raise ValueError(f"{base_url}/v1/models lists no model")
    if wanted and wanted not in models:
        raise ValueError(f"the server does not serve {wanted!r} (it serves: {', '.join(models)})")
    return wanted or models[0]


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The bearer token a server started with `--api-key` wants (OpenAI's scheme)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def _evaluate(
    base_url: str, model: str | None, suites: list[Suite], spec: SuitesSpec, on_item: OnItem, api_key: str | None
) -> tuple[str, dict[str, SuiteScore]]:
    headers = auth_headers(api_key)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, headers=headers) as http:
        model = await served_model(http, base_url, model)
        return model, scores(await run_suites(http, base_url, model, suites, spec, on_item))


def evaluate_url(
    base_url: str,
    model: str | None,
    suites: list[Suite],
    spec: SuitesSpec,
    items_path: Path,
    on_item: OnItem,
    api_key: str | None = None,
) -> tuple[str, dict[str, SuiteScore]]:
    """`ladder eval`: the suites against a running server, each item appended to `items_path` as answered."""

    def keep(item: ItemResult) -> None:
        append_item(items_path, item)
        on_item(item)

    return asyncio.run(_evaluate(base_url.rstrip("/"), model, suites, spec, keep, api_key))


def find_model(base_url: str, wanted: str | None, headers: dict[str, str] | None = None) -> str:
    """`served_model` for synchronous callers (the CLI, before a load run)."""

    async def go() -> str:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, headers=headers or {}) as http:
            return await served_model(http, base_url.rstrip("/"), wanted)

    return asyncio.run(go())
