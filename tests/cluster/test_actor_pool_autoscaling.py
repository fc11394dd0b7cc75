"""Autoscaling of the forward actor pool, simulated on a `ray.cluster_utils.Cluster`.

On a real cluster (cluster.yaml) forward actors ask for the GPU nodes' custom resource, the
pool grows toward `--actors MAX` while blocks queue up, and the autoscaler adds GPU nodes for
the actors left pending. Here the head has CPUs only, one "GPU node" carries the custom
resource, and a second one joins while the job runs: the pending actor must land on it and
take part of the work, and no forward work may ever run on the head.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from tests.cluster.local_head import BIN, wait_for
from tests.operators.texts import VARIED_TEXTS

pytestmark = pytest.mark.ray

GPU_NODE_RESOURCE = "taskray_gpu_node"  # the custom resource cluster.yaml puts on GPU nodes
# Forward must be the bottleneck, and must outlast a new actor's start (~8 CPU-seconds of
# imports and model loading) by a wide margin: a BERT of hidden 256 x 4 layers over 512-token
# rows costs ~0.05-0.1 CPU-second per row on one thread, so one actor alone would need ~30 s,
# and the pool, once grown, finishes in about half that on this 2-core machine.
ROWS = 400
BLOCK_ROWS = 8
FORWARD_BATCH = 4
SEQ_TOKENS = 512
JOB_TIMEOUT_S = 300


@pytest.fixture
def private_ray_tmp(monkeypatch):
    """Cluster() records its address in <RAY_TMPDIR>/ray/ray_current_cluster, where any
    `ray.init()` on this machine would find and join it: keep that file private to this test."""
    short = tempfile.mkdtemp(prefix="trc", dir="/tmp")  # short: Ray's socket paths live under it
    monkeypatch.setenv("RAY_TMPDIR", short)
    yield short
    if not os.environ.get("TASKRAY_KEEP_RAY_TMP"):  # keep the logs when debugging
        shutil.rmtree(short, ignore_errors=True)


def _build_compute_bound_classifier(out_dir: str) -> str:
    """A random BERT classifier big enough that forward, not Ray's per-batch overhead, sets the
    pace (the session's tiny models run a whole block in milliseconds)."""
    import torch
    from transformers import BertForSequenceClassification

    from tiny_models.text import bert_config
    from tiny_models.tokenizers import wordpiece_tokenizer

    torch.manual_seed(0)
    labels = ["negative", "neutral", "positive"]
    config = bert_config(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=SEQ_TOKENS,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    BertForSequenceClassification(config).eval().save_pretrained(out_dir, safe_serialization=True)
    tokenizer = wordpiece_tokenizer()
    tokenizer.model_max_length = SEQ_TOKENS
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _write_job(tmp_path, model_dir: str) -> tuple[str, str]:
    # Each row is long enough to fill SEQ_TOKENS after truncation, so every row costs the same.
    long_text = " ".join(VARIED_TEXTS * 6)
    data = tmp_path / "texts.jsonl"
    with open(data, "w") as f:
        for i in range(ROWS):
            f.write(json.dumps({"id": f"r{i:05d}", "text": f"#{i} {long_text}"}) + "\n")
    out = tmp_path / "out"
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "input": str(data),
                "output": str(out),
                "block_rows": BLOCK_ROWS,
                "tasks": [
                    {
                        "task": "text-classification",
                        "model": model_dir,
                        "batch_size": FORWARD_BATCH,
                        "actors": "1:3",
                        "forward_resources": {GPU_NODE_RESOURCE: 1},
                    }
                ],
            }
        )
    )
    return str(job), str(out)


def test_pool_grows_onto_a_gpu_node_that_joins_mid_job(tmp_path, private_ray_tmp):
    from ray.cluster_utils import Cluster

    job, out = _write_job(tmp_path, _build_compute_bound_classifier(str(tmp_path / "model")))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    driver = None
    try:
        # GPU nodes have CPUs beside the GPU (g5.xlarge: 4); Ray Data SPREADs its read and write
        # tasks onto them too, so with a single CPU a joining node could be too busy to host the
        # pending forward actor for a long while.
        gpu_a = cluster.add_node(num_cpus=2, resources={GPU_NODE_RESOURCE: 1})
        cluster.wait_for_nodes()
        log = open(tmp_path / "driver.log", "w+")
        driver = subprocess.Popen(
            [os.path.join(BIN, "taskray"), "run", job],
            env={**os.environ, "RAY_ADDRESS": cluster.address},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def written() -> list[str]:
            return [n for n in os.listdir(out) if n.endswith(".parquet")] if os.path.isdir(out) else []

        # Partway: forward actors on the first GPU node have written output, the job goes on.
        assert wait_for(lambda: written() or driver.poll() is not None, timeout_s=JOB_TIMEOUT_S)
        assert driver.poll() is None, f"job ended before the second node could join:\n{_read(log)}"
        files_before = len(written())
        gpu_b = cluster.add_node(num_cpus=2, resources={GPU_NODE_RESOURCE: 2})

        rc = driver.wait(timeout=JOB_TIMEOUT_S)
        assert rc == 0, _read(log)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        cluster.shutdown()

    manifest = json.loads(open(os.path.join(out, "_SUCCESS")).read())
    assert manifest["rows"] == {"total": ROWS, "ok": ROWS, "failed": 0}
    nodes = manifest["tasks"]["text-classification"]["nodes"]
    # Every forwarded row ran on a node with the GPU resource, never on the head ...
    assert set(nodes) <= {gpu_a.node_id, gpu_b.node_id}, (nodes, gpu_a.node_id, gpu_b.node_id)
    assert sum(nodes.values()) == ROWS
    # ... and the pool grew onto the node that joined mid-job, which took real work.
    assert nodes.get(gpu_b.node_id, 0) > 0, f"no rows on the new node; {files_before}/{ROWS // BLOCK_ROWS} files were written before it joined"
    print(f"rows per node: first {nodes.get(gpu_a.node_id, 0)}, joined mid-job {nodes.get(gpu_b.node_id, 0)}; "
          f"{files_before} output files before the join", file=sys.stderr)  # fmt: skip


def _read(f) -> str:
    f.flush()
    f.seek(0)
    return f.read()[-6000:]
