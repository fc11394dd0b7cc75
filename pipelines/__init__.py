"""taskray's Ray glue: job specs, sources and sinks, the Ray Data graph, Serve apps and the CLI.

`label(ds, task=..., model=...)` runs a task inside your own Ray Data pipeline (pipelines/offline/label.py).
"""

from pipelines.offline.label import label

__all__ = ["label"]
