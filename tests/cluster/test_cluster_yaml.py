"""cluster.yaml, checked offline: Ray's own JSON schema and validation, plus the invariants the
product relies on (GPU groups scale from zero, resources match the instance types, every node
installs this very checkout)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tomllib
from importlib.metadata import version

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_YAML = os.path.join(ROOT, "cluster.yaml")
GPU_NODE_RESOURCE = "taskray_gpu_node"

# AWS's published specs for the instance types cluster.yaml may use: vCPU, GPUs, memory GiB.
# This guards the table in cluster.yaml itself, which the per-node checks are made against.
AWS_INSTANCE_FACTS: dict[str, tuple[int, int, int]] = {
    "m6i.xlarge": (4, 0, 16),
    "m6i.2xlarge": (8, 0, 32),
    "m6i.4xlarge": (16, 0, 64),
    "m6i.8xlarge": (32, 0, 128),
    "c6i.4xlarge": (16, 0, 32),
    "g5.xlarge": (4, 1, 16),
    "g5.2xlarge": (8, 1, 32),
    "g5.4xlarge": (16, 1, 64),
    "g5.12xlarge": (48, 4, 192),
    "g6.xlarge": (4, 1, 16),
    "g6.2xlarge": (8, 1, 32),
}


@pytest.fixture(scope="module")
def text() -> str:
    with open(CLUSTER_YAML) as f:
        return f.read()


@pytest.fixture(scope="module")
def config(text) -> dict:
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def instance_table(text) -> dict[str, dict]:
    """The `| instance | vCPU | GPU | GPU model | memory GiB |` table from cluster.yaml's header."""
    rows = re.findall(
        r"^#\s*\|\s*([a-z0-9]+\.[a-z0-9]+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*(\d+)\s*\|\s*$",
        text,
        flags=re.MULTILINE,
    )
    assert rows, "cluster.yaml has no instance table in its header comment"
    return {
        name: {"vcpu": int(cpu), "gpu": int(gpu), "gpu_model": model, "memory_gib": int(mem)}
        for name, cpu, gpu, model, mem in rows
    }


def _node_types(config) -> dict[str, dict]:
    return config["available_node_types"]


def test_validates_against_rays_schema(config):
    ray_dir = importlib.util.find_spec("ray").submodule_search_locations[0]
    with open(os.path.join(ray_dir, "autoscaler", "ray-schema.json")) as f:
        schema = json.load(f)
    jsonschema.validate(config, schema, cls=jsonschema.Draft7Validator)


def test_passes_rays_own_config_validation(config):
    # Beyond the schema: Ray fills the AWS defaults and checks cross-field rules (head type
    # exists, per-type max_workers, node type docker/setup overrides), as `ray up` does.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(json.loads(json.dumps(config))))


def test_instance_table_matches_aws(instance_table):
    for name, row in instance_table.items():
        assert name in AWS_INSTANCE_FACTS, f"{name} in cluster.yaml's table has no reference specs in this test"
        vcpu, gpu, mem = AWS_INSTANCE_FACTS[name]
        assert (row["vcpu"], row["gpu"], row["memory_gib"]) == (vcpu, gpu, mem), (
            f"table row for {name} says {row}, AWS says vCPU={vcpu} GPU={gpu} memory={mem} GiB"
        )


def test_resources_match_instance_types(config, instance_table):
    head = config["head_node_type"]
    for name, node in _node_types(config).items():
        itype = node["node_config"]["InstanceType"]
        assert itype in instance_table, f"node type {name} uses {itype}, missing from the table"
        row, res = instance_table[itype], node["resources"]
        if name == head:
            # The head advertises no CPU on purpose (it runs drivers, GCS and the autoscaler).
            assert res.get("CPU") in (0, row["vcpu"]), f"head CPU {res.get('CPU')} vs {row['vcpu']} vCPU"
        else:
            assert res.get("CPU") == row["vcpu"], f"{name}: CPU {res.get('CPU')} but {itype} has {row['vcpu']} vCPU"
        assert res.get("GPU", 0) == row["gpu"], f"{name}: GPU {res.get('GPU', 0)} but {itype} has {row['gpu']}"
        if "memory" in res:
            assert res["memory"] <= row["memory_gib"] * 2**30, f"{name}: memory {res['memory']} > {itype} RAM"
        # The custom resource marks exactly the GPU nodes, one unit per GPU.
        assert res.get(GPU_NODE_RESOURCE, 0) == row["gpu"], f"{name}: {GPU_NODE_RESOURCE}={res.get(GPU_NODE_RESOURCE)}"


def test_gpu_groups_scale_from_zero_spot_first(config, instance_table):
    gpu_types = {
        name: node
        for name, node in _node_types(config).items()
        if instance_table[node["node_config"]["InstanceType"]]["gpu"] > 0
    }
    assert gpu_types, "cluster.yaml has no GPU node type"
    for name, node in gpu_types.items():
        assert node.get("min_workers", 0) == 0, f"{name}: min_workers {node['min_workers']}, idle GPUs would cost"
        assert node["max_workers"] > 0, f"{name} can never scale up"
        assert "-gpu" in node["docker"]["worker_image"], f"{name} runs a non-GPU image"

    def is_spot(node):
        return node["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"

    spot = [n for n in gpu_types.values() if is_spot(n)]
    on_demand = [n for n in gpu_types.values() if not is_spot(n)]
    assert spot and on_demand, "need a spot GPU group and an on-demand fallback group"
    # The fallback must be able to host whatever the spot group hosts, and rank below it.
    for s in spot:
        for o in on_demand:
            assert o["resources"] == s["resources"], f"fallback resources {o['resources']} != spot {s['resources']}"
            assert s.get("priority", 0) > o.get("priority", 0), "spot must be preferred over on-demand"


def test_cpu_worker_group_autoscales(config, instance_table):
    head = config["head_node_type"]
    cpu_workers = [
        node
        for name, node in _node_types(config).items()
        if name != head and instance_table[node["node_config"]["InstanceType"]]["gpu"] == 0
    ]
    assert cpu_workers, "cluster.yaml has no CPU worker group"
    assert all(n["max_workers"] > n.get("min_workers", 0) for n in cpu_workers)


def test_scaling_knobs_are_set_deliberately(config, text):
    # Present in the file (not Ray's defaults) and explained by a WHY comment.
    for key in ("idle_timeout_minutes", "upscaling_speed"):
        assert key in config, f"{key} is not set"
        block = text.split(f"\n{key}:")[0].rsplit("\n\n", 1)[-1]
        assert "WHY" in block, f"{key} has no WHY comment above it"


def test_setup_installs_this_checkout_at_its_version(config):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    remote = [r for r, local in config["file_mounts"].items() if os.path.normpath(local) == "."]
    assert remote, f"no file_mount ships the repository root: {config['file_mounts']}"
    setup = config["setup_commands"]
    assert any(re.search(rf"pip install\b.*\s{re.escape(remote[0])}\s*$", c) for c in setup), (
        f"no setup command pip-installs {remote[0]}: {setup}"
    )
    assert any(f"== '{project['version']}'" in c for c in setup), (
        f"setup does not assert taskray {project['version']}: {setup}"
    )
    for heavy in (".venv", ".git", "*.parquet", "*.safetensors"):
        assert heavy in config["rsync_exclude"], f"{heavy} would be copied to every node"


def test_images_run_the_pinned_ray(config):
    ray_version = version("ray")
    images = [config["docker"]["head_image"], config["docker"]["worker_image"]]
    images += [n["docker"]["worker_image"] for n in _node_types(config).values() if "docker" in n]
    for image in images:
        assert image.startswith(f"rayproject/ray:{ray_version}-"), f"{image} is not Ray {ray_version}"
