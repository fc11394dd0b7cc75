"""Competitor (b) as the script a user writes from Ray's batch-inference examples:

    ray.data.read_parquet(input)
        .map_batches(PipelinePredictor, compute=ActorPoolStrategy(size=N), num_cpus=..., num_gpus=...)
        .write_parquet(output)

    python -m benchmarks.naive_ray_data --workload W.pkl --input DIR --output DIR --clock C.jsonl --config JSON

benchmarks.competitors.naive_ray_data runs it as a command and times it from the outside, so
that its Ray start-up counts as `taskray run`'s does. The workload (without its items) comes
pickled: its decode and summarize functions are the same ones the in-process pipeline uses.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.naive_ray_data", description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", required=True, help="pickled benchmarks.workloads.Workload (values may be empty)")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--clock", required=True, help="JSON-lines file the actors append their forward times to")
    p.add_argument(
        "--config", required=True,
        help='JSON: {"pipeline_batch_size", "actors", "actor_cpus", "map_batch_size", "num_gpus"}',
    )
    args = p.parse_args(argv)
    config = json.loads(args.config)
    with open(args.workload, "rb") as f:
        workload = pickle.load(f)

    import ray

    # from the module, not __main__, so that Ray ships the class to its actors by reference
    from benchmarks.competitors import PipelinePredictor

    # "local": a Ray of its own, like `taskray run`'s, never one that another process started
    ray.init(address="local", include_dashboard=False)
    ds = ray.data.read_parquet(args.input).map_batches(
        PipelinePredictor,
        fn_constructor_kwargs={
            "workload": workload,
            "pipeline_batch_size": config["pipeline_batch_size"],
            "clock_path": args.clock,
        },
        batch_size=config["map_batch_size"],
        compute=ray.data.ActorPoolStrategy(size=config["actors"]),
        num_cpus=config["actor_cpus"],
        num_gpus=config["num_gpus"],
    )
    ds.write_parquet(args.output)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
