"""Stage 4, quality against the baseline: agreement from prompt logprobs, task suites and their checkers, and
the recommendation that turns the quality budget and the speeds into a decision."""
