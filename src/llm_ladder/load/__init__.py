"""Stage 4, load: request sets, arrival processes, the concurrency / rate sweep and its statistics (knee, SLOs)."""
