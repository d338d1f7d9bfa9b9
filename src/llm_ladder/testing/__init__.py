"""Stand-ins for tests and demos: a scripted OpenAI-compatible server and the `fake-vllm` engine that runs it."""
