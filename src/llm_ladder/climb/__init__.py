"""Stage 5, the climb: rung by rung start, verify, measure and stop a server, then compare and recommend."""
