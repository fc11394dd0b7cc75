"""The HTTP API of one text-classification endpoint: routes, every bad-request kind (each
followed by a good request), batching seen by the deployment, and a bounded load run."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.operators.texts import VARIED_TEXTS
from tests.serve.conftest import API_MAX_BATCH, API_MAX_BODY, API_MAX_INPUTS, API_ROUTE
from tests.serve.references import assert_matches as assert_same


@pytest.fixture(scope="module")
def api(serve_url) -> str:
    return serve_url + API_ROUTE


@pytest.fixture(scope="module")
def expected(tc_model):
    """text -> the endpoint's answer for that one text: [pipeline(text)], the HF Inference
    API's shape (operators/results.py, ResponseShape.wrap_single)."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=tc_model, device="cpu")
    return {t: [pipe(t)] for t in VARIED_TEXTS}


def _good(api: str, expected: dict, text: str = VARIED_TEXTS[0]) -> None:
    response = requests.post(api, json={"inputs": text}, timeout=60)
    assert response.status_code == 200, response.text
    assert_same(response.json(), expected[text])


def test_info_health_and_openapi(api, serve_url):
    info = requests.get(f"{api}/info", timeout=30).json()
    assert info["task"] == "text-classification" and info["labels"] == ["negative", "neutral", "positive"]
    assert info["inputs"] == ["text"] and info["max_batch_size"] == API_MAX_BATCH
    assert "top_k" in info["parameters"] and "max_batch_rows" not in info["parameters"]
    assert requests.get(f"{api}/healthz", timeout=30).json() == {"status": "ok"}
    assert requests.get(f"{serve_url}/healthz", timeout=30).status_code == 200
    schema = requests.get(f"{api}/openapi.json", timeout=30).json()
    post = schema["paths"]["/"]["post"]
    assert "inputs" in post["requestBody"]["content"]["application/json"]["schema"]["properties"]
    docs = requests.get(f"{api}/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_route_answers_with_and_without_trailing_slash(api, expected):
    """curl does not follow a 307 for a POST, so {route} itself must answer."""
    text = VARIED_TEXTS[1]
    for url in (api, api + "/"):
        response = requests.post(url, json={"inputs": text}, timeout=60, allow_redirects=False)
        assert response.status_code == 200, (url, response.status_code, response.text)
        assert_same(response.json(), expected[text])


BAD_REQUESTS = [
    # (name, kwargs for requests.post, status, message fragment)
    ("malformed json", {"data": b'{"inputs": "x",', "headers": {"Content-Type": "application/json"}}, 400, "malformed JSON"),
    ("not utf-8", {"data": b'{"inputs": "\xff"}', "headers": {"Content-Type": "application/json"}}, 400, "malformed JSON"),
    ("missing inputs", {"json": {"parameters": {}}}, 422, "inputs: Field required"),
    ("not an object", {"json": ["x"]}, 422, 'body: expected a JSON object with "inputs", got array'),
    ("wrong type", {"json": {"inputs": 42}}, 422, "inputs: expected a string, got number"),
    ("wrong type in list", {"json": {"inputs": ["ok", None]}}, 422, "inputs[1]: expected a string, got null"),
    ("empty text", {"json": {"inputs": ["ok", "  "]}}, 422, "inputs[1]: input: empty text"),
    ("unknown field", {"json": {"inputs": "x", "input": "y"}}, 422, "input: Extra inputs are not permitted"),
    ("parameters type", {"json": {"inputs": "x", "parameters": [1]}}, 422, "parameters: Input should be a valid dictionary"),
    ("unknown parameter", {"json": {"inputs": "x", "parameters": {"topk": 2}}}, 422, "parameters.topk"),
    ("bad parameter value", {"json": {"inputs": "x", "parameters": {"top_k": 0}}}, 422, "parameters.top_k"),
    ("server-owned parameter", {"json": {"inputs": "x", "parameters": {"max_text_chars": 10**9}}}, 422,
     "parameters.max_text_chars: set by the server"),
    ("too many inputs", {"json": {"inputs": ["x"] * (API_MAX_INPUTS + 1)}}, 422, f"at most {API_MAX_INPUTS} inputs"),
    ("too large", {"json": {"inputs": "x" * (API_MAX_BODY + 10)}}, 413, f"limit of {API_MAX_BODY} bytes"),
    ("form content type", {"data": {"inputs": "x"}}, 415, "application/x-www-form-urlencoded"),
    ("no content type", {"data": b'{"inputs": "x"}'}, 415, "Content-Type '(none)'"),
    ("image body on a text task", {"data": b"\x89PNG", "headers": {"Content-Type": "image/png"}}, 415, "image/png"),
]


@pytest.mark.parametrize("name, kwargs, status, fragment", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request_then_good(api, expected, name, kwargs, status, fragment):
    response = requests.post(api, timeout=60, **kwargs)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    _good(api, expected)


def test_chunked_body_is_answered_or_gets_411(api, expected):
    """Ray Serve 2.60's proxy sometimes hands a chunked request to the replica with an empty
    body (seen with bodies sent over several chunks). The endpoint then answers 411 naming
    Content-Length instead of calling the JSON malformed; when the body arrives it is served.
    (read_body's own handling is unit-tested in test_codec.py.)"""
    text = VARIED_TEXTS[0]

    def chunks():
        yield b'{"inputs": '
        yield json.dumps(text).encode() + b"}"

    response = requests.post(api, data=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    if response.status_code == 200:
        assert_same(response.json(), expected[text])
    else:
        assert response.status_code == 411, response.text
        assert "Content-Length" in response.json()["error"]
    _good(api, expected)


def test_content_length_over_limit_is_refused_before_the_body(api, expected):
    """A declared size over the limit gets 413 without the client sending the body."""
    url = urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest("POST", url.path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(API_MAX_BODY * 100))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert b"exceeds the limit" in response.read()
    finally:
        conn.close()
    _good(api, expected)


def test_concurrent_requests_share_batches(api, expected):
    """More concurrent requests than max_batch_size: all correct, and the deployment's own
    counter shows batches larger than one request (no timing involved)."""
    before = requests.get(f"{api}/stats", timeout=30).json()
    texts = [VARIED_TEXTS[i % len(VARIED_TEXTS)] for i in range(3 * API_MAX_BATCH)]
    with ThreadPoolExecutor(len(texts)) as pool:
        responses = list(pool.map(lambda t: requests.post(api, json={"inputs": t}, timeout=120), texts))
    for text, response in zip(texts, responses):
        assert response.status_code == 200, response.text
        assert_same(response.json(), expected[text])
    after = requests.get(f"{api}/stats", timeout=30).json()
    assert after["requests"] - before["requests"] == len(texts)
    new = {int(k): v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    assert max(size for size, count in new.items() if count > 0) > 1, after
    assert after["max_batch_size_seen"] <= API_MAX_BATCH


def test_bounded_load(api, expected):
    """At most 240 requests or 30 s over 12 clients, singles and lists mixed: no 5xx, and
    every answer equals the offline operator's."""
    deadline = time.monotonic() + 30
    texts = VARIED_TEXTS

    def client(k: int) -> list[tuple[int, bool]]:
        session = requests.Session()
        results = []
        for i in range(20):
            if time.monotonic() > deadline:
                break
            if i % 3 == 0:
                batch = [texts[(k + i + j) % len(texts)] for j in range(3)]
                response = session.post(api, json={"inputs": batch}, timeout=60)
                ok = response.status_code == 200 and _matches(response.json(), [_unwrap(expected[t]) for t in batch])
            else:
                text = texts[(k + i) % len(texts)]
                response = session.post(api, json={"inputs": text}, timeout=60)
                ok = response.status_code == 200 and _matches(response.json(), expected[text])
            results.append((response.status_code, ok))
        return results

    with ThreadPoolExecutor(12) as pool:
        results = [r for rs in pool.map(client, range(12)) for r in rs]
    assert len(results) >= 12
    assert [s for s, _ in results if s >= 500] == []
    assert all(ok for _, ok in results), [s for s, ok in results if not ok]


def _unwrap(answer):
    # pipeline(list of texts) gives one dict per text where pipeline(text) gives [dict], and
    # the endpoint answers one text with [pipeline(text)]
    return answer[0][0]


def _matches(got, want) -> bool:
    try:
        assert_same(got, want)
    except AssertionError:
        return False
    return True
