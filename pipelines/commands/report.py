"""`taskray report`: a static HTML page about a finished job's output (no server, opens offline).

Exit codes: 0 the page was written, 2 OUTPUT is not a finished taskray output.
"""

from __future__ import annotations

import argparse
import sys

HELP = "Write one self-contained HTML page about a finished job's output: summary, charts, sampled rows, failed rows."

EXIT_OK, EXIT_BAD_OUTPUT = 0, 2

def configure(parser: argparse.ArgumentParser) -> None:
    from pipelines.report.limits import describe

    parser.description = f"{HELP} {describe()}"
    parser.add_argument("output", metavar="OUTPUT", help="the job's output directory (local or s3://), with its _SUCCESS")
    parser.add_argument("--out", default="report.html", metavar="PATH", help="where to write the page (default: ./report.html)")
    parser.add_argument("--sample", type=int, default=12, metavar="N", help="rows shown per task, from its rows that succeeded (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample: the same seed picks the same row ids (default 0)")
    parser.add_argument("--failed", type=int, default=50, metavar="N", help="failed rows listed per task, first by id (default 50)")


def main(args: argparse.Namespace) -> int:
    from pipelines.report import ReportInputError, write_report

    if args.sample < 0 or args.failed < 0:
        print(f"taskray report: --sample and --failed must be >= 0, got {args.sample} and {args.failed}", file=sys.stderr)
        return EXIT_BAD_OUTPUT
    try:
        result = write_report(args.output, args.out, sample=args.sample, seed=args.seed, failed=args.failed)
    except (ReportInputError, FileNotFoundError) as e:
        print(f"taskray report: {e}", file=sys.stderr)
        return EXIT_BAD_OUTPUT
    print(f"report: {result.path} ({result.bytes / 1e6:.1f} MB)")
    return EXIT_OK
