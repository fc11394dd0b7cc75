"""deploy/ (KubeRay RayJob and RayService), checked offline against KubeRay's own CRD schemas
(kept in tests/cluster/kuberay), Ray's reading of the worker groups, and the files they must agree
with: configs/serve.yaml, pyproject's version, the installed Ray, `taskray run`'s flags."""

from __future__ import annotations

import argparse
import copy
import gzip
import os
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import version

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
MANIFESTS = {"RayJob": "rayjob.yaml", "RayService": "rayservice.yaml"}
CRDS = {"RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}
CLUSTER_SPEC = {"RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}
GPU = "nvidia.com/gpu"
GPU_NODE_RESOURCE = "taskray_gpu_node"
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB each


# KubeRay's CRDs, kept in the repository (gzipped, otherwise unchanged) so that a plain clone
# passes: tests/cluster/kuberay/README.md names their source commit and licence.
KUBERAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kuberay")


def _load(path: str, loader=yaml.SafeLoader):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return {kind: _load(os.path.join(DEPLOY, name)) for kind, name in MANIFESTS.items()}


def _strict(schema):
    """The CRD's schema as the API server applies it, for jsonschema: objects that list their
    `properties` reject other keys (the server would silently prune them, so a misspelt field
    would vanish), then Kubernetes' x-kubernetes-* extensions are dropped."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_schemas() -> dict[str, tuple[str, dict]]:
    out = {}
    for kind, name in CRDS.items():
        crd = _load(os.path.join(KUBERAY, name + ".gz"), YamlLoader)
        assert crd["spec"]["names"]["kind"] == kind
        storage = next(v for v in crd["spec"]["versions"] if v.get("storage"))
        out[kind] = (f"{crd['spec']['group']}/{storage['name']}", _strict(storage["schema"]["openAPIV3Schema"]))
    return out


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_manifest_validates_against_kuberay_crd(kind, manifests, crd_schemas):
    doc = manifests[kind]
    api_version, schema = crd_schemas[kind]
    assert doc["kind"] == kind and doc["apiVersion"] == api_version
    # metadata is Kubernetes' ObjectMeta, outside the CRD's schema; check its essentials here.
    assert doc["metadata"]["name"]
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_strict_schema_catches_a_misspelt_field(manifests, crd_schemas):
    # The validation above can fail: a typo in a worker group is an error, not a pruned key.
    doc = copy.deepcopy(manifests["RayJob"])
    doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplica"] = 0
    assert not jsonschema.Draft4Validator(crd_schemas["RayJob"][1]).is_valid(doc)


def _groups(doc: dict, kind: str) -> list[dict]:
    return doc["spec"][CLUSTER_SPEC[kind]]["workerGroupSpecs"]


def _gpus(group: dict) -> int:
    res = group["template"]["spec"]["containers"][0].get("resources", {})
    return int(res.get("limits", {}).get(GPU, 0))


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_gpu_groups_scale_from_zero_and_request_gpus(kind, manifests):
    groups = _groups(manifests[kind], kind)
    gpu_groups = [g for g in groups if _gpus(g) or "gpu" in g["groupName"]]
    assert gpu_groups, f"{kind} has no GPU worker group"
    for g in gpu_groups:
        res = g["template"]["spec"]["containers"][0]["resources"]
        assert g["minReplicas"] == 0 and g.get("replicas", 0) == 0, f"{g['groupName']}: idle GPU pods would cost"
        assert g["maxReplicas"] > 0
        assert int(res["requests"][GPU]) == int(res["limits"][GPU]) >= 1, f"{g['groupName']}: {res}"


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_rays_autoscaler_sees_the_gpu_node_resource(kind, manifests):
    # Ray's own reading of a KubeRay spec (what its autoscaler scales by): GPU groups carry
    # GPUs and taskray_gpu_node one-for-one, as cluster.yaml's GPU nodes do; others carry neither.
    from ray.autoscaler._private.kuberay.autoscaling_config import _generate_available_node_types_from_ray_cr_spec

    node_types = _generate_available_node_types_from_ray_cr_spec(manifests[kind]["spec"][CLUSTER_SPEC[kind]])
    for g in _groups(manifests[kind], kind):
        res = node_types[g["groupName"]]["resources"]
        assert res.get("GPU", 0) == _gpus(g), (g["groupName"], res)
        assert res.get(GPU_NODE_RESOURCE, 0) == _gpus(g), (g["groupName"], res)
    assert node_types["headgroup"]["resources"]["CPU"] == 0  # no work lands on the head


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_images_and_versions_agree(kind, manifests):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project_version = tomllib.load(f)["project"]["version"]
    spec = manifests[kind]["spec"][CLUSTER_SPEC[kind]]
    assert spec["rayVersion"] == version("ray")
    pods = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    images = {c["image"] for p in pods for c in p["template"]["spec"]["containers"]}
    assert all(i.endswith(f"/taskray:{project_version}") or i == f"taskray:{project_version}" for i in images), images
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        dockerfile = f.read()
    assert f"FROM rayproject/ray:{version('ray')}-py311-gpu" in dockerfile
    assert f"== '{project_version}'" in dockerfile


def test_rayjob_runs_a_valid_taskray_job(manifests):
    spec = manifests["RayJob"]["spec"]
    assert spec["shutdownAfterJobFinishes"] is True  # the cluster goes away with the job
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["taskray", "run"], argv
    # The entrypoint's flags build a valid JobSpec with `taskray run`'s own parser (no Ray).
    from pipelines.commands.run import configure, overrides_from_args
    from pipelines.spec import build_job_spec

    parser = argparse.ArgumentParser()
    configure(parser)
    job = build_job_spec({}, overrides_from_args(parser.parse_args(argv[2:])))
    assert job.mode == "resume"  # a retried attempt (backoffLimit) continues, never duplicates
    assert job.tasks[0].num_gpus >= 1 and job.tasks[0].actors[0] >= 1


def test_rayservice_embeds_configs_serve_yaml_verbatim(manifests):
    serve_path = os.path.join(ROOT, "configs", "serve.yaml")
    assert os.path.exists(serve_path), "configs/serve.yaml (the Serve config the RayService embeds) is missing"
    with open(serve_path, encoding="utf-8") as f:
        serve_text = f.read()
    embedded = manifests["RayService"]["spec"]["serveConfigV2"]
    assert embedded == serve_text.rstrip("\n") + "\n", "run: python deploy/embed_serve_config.py"
    assert yaml.safe_load(embedded) == yaml.safe_load(serve_text)
    # The generator agrees (its --check is what a pre-commit hook would run).
    check = subprocess.run([sys.executable, os.path.join(DEPLOY, "embed_serve_config.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_rayservice_serve_config_is_valid_and_reachable(manifests):
    from pipelines.serve.config import validate_serve_config

    config = yaml.safe_load(manifests["RayService"]["spec"]["serveConfigV2"])
    validate_serve_config(config)
    # KubeRay's serve Service reaches the proxies on the pod IP: a loopback-only proxy would
    # leave the RayService Ready yet unreachable. (Serve's own default for a deployed config,
    # with no host given, is 0.0.0.0; `taskray serve` keeps its 127.0.0.1 default itself.)
    host = (config.get("http_options") or {}).get("host", "0.0.0.0")
    assert host not in ("127.0.0.1", "localhost", "::1"), (
        f"configs/serve.yaml sets http_options.host: {host}; the RayService's proxies would listen "
        "on loopback only. Drop the key (taskray serve defaults to 127.0.0.1 on its own)"
    )
