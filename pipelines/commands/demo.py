"""`taskray demo`: a multimodal sample labeled offline on local Ray, no network needed."""

from __future__ import annotations

import argparse

HELP = "Label a bundled multimodal sample (text, images, audio) with several tasks on local Ray; no network."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="taskray-demo", metavar="DIR", help="where the sample and the labels go (default: ./taskray-demo)")
    parser.add_argument("--models", metavar="DIR", help="tiny model cache (default: ~/.cache/taskray/tiny-models)")


def main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from pipelines.demo import demo_job
    from pipelines.offline.job import run_job
    from pipelines.report import write_report

    output = os.path.abspath(args.output)
    spec = demo_job(output, args.models)
    print(f"taskray demo: {len(spec.tasks)} tasks ({', '.join(t.task for t in spec.tasks)}) over {spec.input[0]}")
    summary = run_job(spec)
    print()
    print(summary.table())
    print()
    print(f"labels: {summary.output}  (one Parquet row per input row; columns '<task>.<column>'; manifest in _SUCCESS)")
    print(f"read them: python -c \"import pyarrow.parquet as pq; print(pq.read_table('{summary.output}').to_pandas().head())\"")
    report = write_report(summary.output, os.path.join(output, "report.html"))
    print(f"report: {report.path}  (open it in a browser; `taskray report {summary.output} --out PATH` writes it again)")
    return 0
