"""`taskray tasks`: the registered tasks with their modality, input and output columns."""

from __future__ import annotations

import argparse

HELP = "List the registered tasks with their modality, input columns and output columns."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    import json

    from operators import get_operator, list_tasks

    rows = [get_operator(t).describe() for t in list_tasks()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["task"]) for r in rows)
    for r in rows:
        print(f"{r['task']:<{width}}  {r['modality']:<5}  in: {','.join(r['inputs']):<16}  out: {','.join(r['outputs'])}")
    return 0
