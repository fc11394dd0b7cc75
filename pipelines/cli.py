"""The `taskray` command. Each subcommand lives in pipelines/commands/<name>.py and exposes
HELP, configure(parser) and main(args) -> exit code. Those modules import heavy libraries
inside main(), so `taskray --help` stays fast."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import threading
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


def command() -> None:
    """The `taskray` executable: main(), then exit_now() with its exit code. Tests call
    main() in their own process instead."""
    exit_now(main())


def exit_now(code: int) -> None:
    """End a finished command without the interpreter's teardown.

    Once a command has returned, its output is written and closed. What is left is Python's
    finalization, which tears down the modules of torch, transformers and Ray one by one: about
    1.2 s on the 2-core machine (benchmarks/RESULTS.md), paid by every `taskray run` and
    counted in its wall time. This runs what that finalization would still do, in the same
    order, and leaves with os._exit:
    - threading's shutdown: its exit hooks (thread pools stop their idle workers), then the
      non-daemon threads are joined;
    - the Ray this process started is shut down explicitly. Its atexit handler would sleep
      0.5 s first ("so that log messages finish printing"), and it must run: the agents of a
      local Ray outlive a driver that exits without it;
    - the atexit handlers run (logging's flush, temporary directories, ...);
    - stdout and stderr are flushed.
    The two steps of the interpreter's own exit are CPython's private calls: there is no
    public way to run them early.
    """
    threading._shutdown()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to deliver
            pass
    os._exit(code)


if __name__ == "__main__":
    command()
