"""Stage 4, measuring one running server: streaming requests and their timings, the workloads over trials,
spec-decode counters, memory and energy, and the roofline that says how close decoding runs to the memory's limit."""
