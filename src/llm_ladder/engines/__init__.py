"""Stage 3, engines: one class per engine (vLLM, vLLM in Docker, llama.cpp) behind `engines.base.Engine`,
found through the `llm_ladder.engines` entry points; each declares what its server can do."""
