"""`taskray serve`: answer HTTP requests with a task model on Ray Serve.

    taskray serve --task text-classification --model DIR [--host 127.0.0.1] [--port 8000]
    taskray serve configs/serve.yaml          # a standard Ray Serve config, several tasks

Blocks until interrupted (Ctrl-C or SIGTERM), then shuts Serve down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "Serve task models over HTTP on Ray Serve (one task from flags, or a Serve YAML)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="a Ray Serve config YAML (e.g. configs/serve.yaml)")
    parser.add_argument("--task", help="transformers task id (see `taskray tasks`)")
    parser.add_argument("--model", help="hub id or local model directory")
    parser.add_argument("--host", help="listen address (default 127.0.0.1, or the YAML's http_options)")
    parser.add_argument("--port", type=int, help="listen port (default 8000, or the YAML's http_options)")
    parser.add_argument("--route", help="HTTP route of the endpoint (default /v1/<task>)")
    parser.add_argument("--device", default="auto", help="torch device (default auto)")
    parser.add_argument("--dtype", default="auto", help="model dtype (default auto)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="operator option fixed for the endpoint; VALUE is JSON when it parses (repeatable)")
    parser.add_argument("--max-batch-size", type=int, help="most requests per @serve.batch call (default 16)")
    parser.add_argument("--batch-wait-timeout-s", type=float, help="batch gathering wait (default 0.01)")
    parser.add_argument("--num-cpus", type=float, help="CPUs per replica (default 1)")
    parser.add_argument("--num-gpus", type=float, help="GPUs per replica (default 0)")
    parser.add_argument("--min-replicas", type=int, help="autoscaling lower bound (default 1)")
    parser.add_argument("--max-replicas", type=int, help="autoscaling upper bound (default 1)")
    parser.add_argument("--max-ongoing-requests", type=int, help="per replica (default 2 x max batch size)")
    parser.add_argument("--max-queued-requests", type=int, help="per proxy before 503 (default 4 x max batch size)")
    parser.add_argument("--address", help="Ray cluster to join, or auto for the running one "
                        "(default: RAY_ADDRESS if set, else start a local Ray)")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="how long to wait for the endpoints to start")


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option must be KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def build_config(args: argparse.Namespace) -> dict:
    """The Serve config to deploy: the YAML file (with --host/--port applied) or one task."""
    from pipelines.serve.config import (
        AppSpec,
        DeploymentOptions,
        TOKEN_ENV,
        EndpointArgs,
        ServeSpec,
        digest_auth_tokens,
        health_application,
        validate_serve_config,
    )

    if args.config:
        if args.task or args.model:
            raise ValueError("give either a config file or --task/--model, not both")
        import yaml

        with open(args.config) as f:
            config = yaml.safe_load(f)
        if not isinstance(config, dict):
            raise ValueError(f"{args.config}: expected a Serve config mapping, got {type(config).__name__}")
        http = dict(config.get("http_options") or {})
        http.setdefault("host", "127.0.0.1")
        if args.host:
            http["host"] = args.host
        if args.port:
            http["port"] = args.port
        config["http_options"] = http
        if not any(a.get("route_prefix") == "/" for a in config.get("applications", [])):
            config["applications"] = [*config.get("applications", []), health_application()]
        return validate_serve_config(digest_auth_tokens(config))

    if not (args.task and args.model):
        raise ValueError("give a config file, or both --task and --model")
    endpoint = {
        "task": args.task,
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "options": _options(args.option),
    }
    for key in ("max_batch_size", "batch_wait_timeout_s"):
        if getattr(args, key) is not None:
            endpoint[key] = getattr(args, key)
    deployment = {
        key: getattr(args, key)
        for key in ("num_cpus", "num_gpus", "min_replicas", "max_replicas", "max_ongoing_requests", "max_queued_requests")
        if getattr(args, key) is not None
    }
    token = os.environ.get(TOKEN_ENV)
    spec = ServeSpec(
        host=args.host or "127.0.0.1",
        port=args.port or 8000,
        applications=[
            AppSpec(
                name=args.task,
                route_prefix=args.route or f"/v1/{args.task}",
                args=EndpointArgs(**endpoint),
                deployment=DeploymentOptions(**deployment),
                # Replicas of a remote cluster do not see this shell's environment.
                auth_token=token or None,
            )
        ],
    )
    return spec.to_serve_config()


def main(args: argparse.Namespace) -> int:
    import signal
    import threading

    try:
        config = build_config(args)
    except (ValueError, OSError) as e:
        print(f"taskray serve: {e}", file=sys.stderr)
        return 2

    import ray
    from ray import serve

    from pipelines.serve.runner import deploy

    # "local" starts a fresh Ray even where `ray start` left a cluster behind.
    address = args.address or os.environ.get("RAY_ADDRESS") or "local"
    # A Ray started here runs no dashboard, as `taskray run`'s does not: its head and nine
    # module processes start beside the Serve controller, proxy and replicas and take the
    # cores they need to start (benchmarks/RESULTS.md, Serve cold start). Serve itself, its
    # Python API (serve.status) and the endpoints do not use it.
    if address == "local":
        from pipelines.local_ray import start_local_ray

        start_local_ray(namespace="serve")
    else:
        ray.init(address=address, namespace="serve")
    stop = threading.Event()
    # SIGTERM (e.g. from a supervisor) shuts down as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        deploy(config, timeout_s=args.timeout_s)
        http = config["http_options"]
        for app in config["applications"]:
            if app.get("route_prefix") and app["route_prefix"] != "/":
                print(f"serving {app['name']} at http://{http['host']}:{http.get('port', 8000)}{app['route_prefix']}", flush=True)
        print("ready; Ctrl-C stops", flush=True)
        while not stop.wait(0.5):
            pass
    except RuntimeError as e:
        print(f"taskray serve: {e}", file=sys.stderr)
        return 1
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
