"""Parity over real HTTP: for every registered task, the endpoint configured in
configs/serve.yaml (tiny model swapped in) answers what transformers.pipeline returns for the
same inputs (tests/serve/references.py), for a single input, a list, and a raw body with and
without a media type."""

from __future__ import annotations

import base64

import pytest
import requests

from operators import get_operator, list_tasks
from tests.serve.conftest import SERVE_YAML
from tests.serve.references import REQUEST_PARAMETERS, assert_matches


def _as_json_input(roles, value):
    if roles in (("image",), ("audio",)):
        return base64.b64encode(value).decode()
    return value


def test_every_task_is_served(serve_url):
    """The example config serves every registered task; /healthz sees them all running."""
    import yaml

    served = {a["args"]["task"] for a in yaml.safe_load(SERVE_YAML.read_text())["applications"] if a.get("args")}
    assert set(list_tasks()) <= served
    health = requests.get(f"{serve_url}/healthz", timeout=30)
    assert health.status_code == 200, health.text
    assert {f"{t}" for t in list_tasks()} <= set(health.json()["applications"])


@pytest.mark.parametrize("task", list_tasks())
def test_response_equals_pipeline(serve_url, tiny_model, reference, task):
    roles = get_operator(task).input_roles
    ref = reference(task)
    assert any(not (isinstance(x, list) and not x) for x in ref.many), "the pipeline found nothing to compare"
    route = f"{serve_url}/v1/{task}"
    parameters = REQUEST_PARAMETERS.get(task, {})

    response = requests.post(route, json={"inputs": [_as_json_input(roles, v) for v in ref.inputs],
                                          "parameters": parameters}, timeout=120)
    assert response.status_code == 200, response.text
    assert_matches(response.json(), ref.many, "list")

    # A single text-classification answer is [pipeline(text)], as the HF Inference API answers
    # (operators/results.py, ResponseShape.wrap_single).
    single = [ref.single] if task == "text-classification" else ref.single
    one = requests.post(route, json={"inputs": _as_json_input(roles, ref.inputs[0]), "parameters": parameters},
                        timeout=120)
    assert one.status_code == 200, one.text
    assert_matches(one.json(), single, "single")

    if ref.media_type:
        # huggingface_hub's InferenceClient sends raw bytes with no Content-Type at all.
        for headers in ({"Content-Type": ref.media_type}, {"Content-Type": "application/octet-stream"}, {}):
            raw = requests.post(route, data=ref.inputs[0], headers=headers, timeout=120)
            assert raw.status_code == 200, (headers, raw.text)
            assert_matches(raw.json(), single, f"raw body {headers}")

    info = requests.get(f"{route}/info", timeout=30).json()
    assert info["task"] == task and info["model"] == tiny_model(task)


def test_text_classification_top_k_matches_pipeline(serve_url, tc_model, reference):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=tc_model, device="cpu")
    texts = reference("text-classification").inputs
    route = f"{serve_url}/v1/text-classification"
    for body, want in [
        ({"inputs": texts[1], "parameters": {"top_k": 2}}, [pipe(texts[1], top_k=2)]),
        ({"inputs": texts[:2], "parameters": {"top_k": 2}}, pipe(texts[:2], top_k=2)),
    ]:
        response = requests.post(route, json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert_matches(response.json(), want, where=str(body))


def test_untyped_body_of_another_medium_is_refused(serve_url, reference):
    wav = reference("audio-classification").inputs[0]
    response = requests.post(f"{serve_url}/v1/image-classification", data=wav, timeout=60)
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "body sent with no Content-Type looks like audio (WAV); this endpoint takes image"
    junk = requests.post(f"{serve_url}/v1/automatic-speech-recognition", data=b"\x00\x01 not audio " * 8,
                         headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert junk.status_code == 415 and "is not a recognised audio file" in junk.json()["error"], junk.text
