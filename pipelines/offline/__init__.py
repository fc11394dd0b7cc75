"""The offline path: a `taskray run` job over Parquet (or CSV, JSONL, WebDataset) files on Ray
Data, planned once (plan.py), run (job.py) with resume, --retry-failed (retry.py), the error
budget and compaction, and `label()` for a user's own Ray Data pipeline (label.py)."""
