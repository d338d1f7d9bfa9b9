"""`ladder deploy --target compose`: the chosen rung as a Docker Compose project for a GPU or Jetson host —
vLLM from NVIDIA's NGC image with exactly the rung's flags, Open WebUI wired to it, and a JupyterLab "lab"
service sharing the model caches — plus the `.env` it reads. Secrets stay out of compose.yml: it refers to
variables, and `.env` (mode 600) leaves the token for the user to fill in."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml

from llm_ladder.engines.vllm import API_MODULE, rung_args
from llm_ladder.engines.vllm_docker import DEFAULT_IMAGE
from llm_ladder.engines.vllm_docker import container_model as docker_container_model
from llm_ladder.models.store import ModelStore, hf_home
from llm_ladder.outputs.results import SECRET_KEY
from llm_ladder.plan.schema import Rung

WEBUI_IMAGE = "ghcr.io/open-webui/open-webui:main"
LAB_IMAGE = "nvcr.io/nvidia/pytorch:25.09-py3"
PORT = 8000
HF_CACHE = "${HF_HOME:-~/.cache/huggingface}:/root/.cache/huggingface"
MODELS = "${LADDER_MODELS:-~/.cache/llm-ladder/models}:/models:ro"


def all_gpus() -> dict[str, Any]:
    """Compose's GPU reservation; a fresh dict per service, or YAML would write anchors and aliases."""
    return {"resources": {"reservations": {"devices": [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}}


def var(name: str, default: object = "") -> str:
    """A Compose interpolation: the .env value, else the default."""
    return "${" + f"{name}:-{default}" + "}"


def container_model(model: str, store: ModelStore) -> tuple[str, list[str]]:
    """The model argument inside the container and the mounts it needs: store models are under the mounted
    store; local directories and hub ids as the docker engine mounts them."""
    if store.has(model) or store.can_make(model):
        return f"/models/{model}", []
    return docker_container_model(model)


def _vllm(rung: Rung, model: str, mounts: list[str]) -> dict[str, Any]:
    command = ["python3", "-m", API_MODULE, *rung_args(rung, model), "--host", "0.0.0.0", "--port", str(PORT)]
    env = {"HF_TOKEN": var("HF_TOKEN"), "VLLM_API_KEY": var("VLLM_API_KEY")}
    env |= {k: var(k) if SECRET_KEY.search(k) else v for k, v in rung.env.items()}
    volumes = [HF_CACHE, var("VLLM_CACHE", "~/.cache/vllm") + ":/root/.cache/vllm", MODELS, *mounts]
    if "gpt-oss" in rung.model.lower():  # harmony tokenizer files, fetched beforehand (the workshop's fix)
        env["TIKTOKEN_ENCODINGS_BASE"] = "/etc/encodings"
        volumes.append("${TIKTOKEN_DIR:-./encodings}:/etc/encodings:ro")
    health = f"import urllib.request; urllib.request.urlopen('http://localhost:{PORT}/health', timeout=5)"
    return {
        "image": var("VLLM_IMAGE", DEFAULT_IMAGE),
        "command": command,
        "environment": env,
        "volumes": volumes,
        "ports": [f"{var('VLLM_PORT', PORT)}:{PORT}"],
        "ipc": "host",
        "ulimits": {"memlock": -1, "stack": 67108864},
        "deploy": all_gpus(),
        "healthcheck": {
            "test": ["CMD", "python3", "-c", health],
            "interval": "30s",
            "timeout": "10s",
            "retries": 5,
            "start_period": "30m",  # weights, torch.compile and CUDA graphs: minutes on a first start
        },
        "restart": "unless-stopped",
    }


def _webui() -> dict[str, Any]:
    return {
        "image": var("WEBUI_IMAGE", WEBUI_IMAGE),
        "environment": {
            "OPENAI_API_BASE_URL": f"http://vllm:{PORT}/v1",
            "OPENAI_API_KEY": var("VLLM_API_KEY", "none"),
            "WEBUI_AUTH": "False",
            "ENABLE_OLLAMA_API": "False",
        },
        "volumes": ["open-webui:/app/backend/data"],
        "ports": [f"{var('WEBUI_PORT', 3000)}:8080"],
        "depends_on": {"vllm": {"condition": "service_healthy"}},
        "healthcheck": {"test": ["CMD", "curl", "-fsS", "http://localhost:8080/health"], "interval": "30s"},
        "restart": "unless-stopped",
    }


def _lab() -> dict[str, Any]:
    command = ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root"]
    return {
        "image": var("LAB_IMAGE", LAB_IMAGE),
        "profiles": ["lab"],  # started on demand: `docker compose up lab`
        "command": [*command, "--IdentityProvider.token=${JUPYTER_TOKEN:?set JUPYTER_TOKEN in .env}"],
        "environment": {"HF_HOME": "/root/.cache/huggingface", "HF_TOKEN": var("HF_TOKEN")},
        "volumes": [HF_CACHE, MODELS, "./notebooks:/workspace/notebooks"],
        "ports": ["127.0.0.1:8888:8888"],  # reach it through an SSH tunnel, as the lab journal does
        "ipc": "host",
        "deploy": all_gpus(),
    }


def compose(rung: Rung, store: ModelStore, project: str) -> dict[str, Any]:
    model, mounts = container_model(rung.model, store)
    return {
        "name": project,
        "services": {"vllm": _vllm(rung, model, mounts), "open-webui": _webui(), "lab": _lab()},
        "volumes": {"open-webui": {}},
    }


def env_file(rung: Rung, store: ModelStore) -> str:
    lines = [
        f"# ladder deploy: rung {rung.name} ({rung.model})",
        f"VLLM_IMAGE={DEFAULT_IMAGE}",
        f"VLLM_PORT={PORT}",
        "WEBUI_PORT=3000",
        f"HF_HOME={hf_home()}",
        f"VLLM_CACHE={Path.home() / '.cache' / 'vllm'}",
        f"LADDER_MODELS={store.root}",
        "# gated models (Llama, Gemma, ...): your Hugging Face token",
        "HF_TOKEN=",
        "# set to require a bearer token from clients (Open WebUI sends it)",
        "VLLM_API_KEY=",
        f"JUPYTER_TOKEN={secrets.token_hex(16)}",
    ]
    masked = [k for k in rung.env if SECRET_KEY.search(k)]
    lines += [f"{k}=" for k in masked]
    return "\n".join(lines) + "\n"


def write_compose(rung: Rung, store: ModelStore, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    project = f"ladder-{rung.name}".lower().replace(".", "-")
    compose_path, env_path = out / "compose.yml", out / ".env"
    compose_path.write_text(yaml.safe_dump(compose(rung, store, project), sort_keys=False, width=200))
    env_path.write_text(env_file(rung, store))
    env_path.chmod(0o600)
    (out / "notebooks").mkdir(exist_ok=True)
    return [compose_path, env_path]
