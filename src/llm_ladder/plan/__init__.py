"""Stage 1, the plan: what to climb (rungs, workloads, quality budget), the shipped plans, and `ladder plan auto`'s
choice of rungs for this machine's hardware."""
