"""After the decision: serve or deploy the chosen rung, smoke-test it, attach a chat UI, and `ladder doctor`."""
