"""The `taskray` command. Each subcommand lives in pipelines/commands/<name>.py and exposes
HELP, configure(parser) and main(args) -> exit code. Those modules import heavy libraries
inside main(), so `taskray --help` stays fast."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

COMMANDS = ("tasks", "run", "report", "export", "demo", "serve", "submit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskray",
        description="Run Hugging Face transformers task models over large datasets on Ray "
        "(offline with Ray Data, online with Ray Serve).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = import_module(f"pipelines.commands.{name}")
        except ModuleNotFoundError as e:  # a command not built yet is simply absent
            if e.name == f"pipelines.commands.{name}":
                continue
            raise
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    return int(args._main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
