"""Stage 6, what a climb leaves: the append-only results log, summary.md, report.html and comparisons of runs."""
