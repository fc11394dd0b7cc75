"""Backpressure (max_ongoing_requests=1, max_queued_requests=1) and bearer-token auth."""

from __future__ import annotations

import glob
import os
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.serve.conftest import AUTH_TOKEN, SECURE_ROUTE, SLOW_ROUTE, SLOW_WAIT_S

TEXT = "The quick brown fox jumps over the lazy dog."


def _timed_post(url: str, **kwargs) -> tuple[requests.Response, float]:
    start = time.monotonic()
    response = requests.post(url, timeout=120, **kwargs)
    return response, time.monotonic() - start


def test_full_queue_is_refused_promptly_with_retry_after(serve_url):
    """One request is in flight (it waits SLOW_WAIT_S for company), one may queue at the
    proxy; the rest get 503 + Retry-After at once. Nothing hangs; admitted requests finish."""
    url = serve_url + SLOW_ROUTE
    first = ThreadPoolExecutor(1).submit(_timed_post, url, json={"inputs": TEXT})
    time.sleep(0.5)  # let the first request reach the replica
    with ThreadPoolExecutor(6) as pool:
        extra = list(pool.map(lambda _: _timed_post(url, json={"inputs": TEXT}), range(6)))
    response, elapsed = first.result(timeout=120)
    assert response.status_code == 200, response.text
    assert elapsed >= SLOW_WAIT_S * 0.9  # it really was in flight while the others arrived

    refused = [(r, t) for r, t in extra if r.status_code == 503]
    admitted = [r for r, _ in extra if r.status_code == 200]
    assert len(refused) + len(admitted) == len(extra), [r.status_code for r, _ in extra]
    assert len(refused) >= 4 and len(admitted) <= 2
    for r, t in refused:
        assert r.headers.get("Retry-After") == "2"
        assert t < SLOW_WAIT_S, f"refusal took {t:.2f}s: it waited instead of failing fast"
    for r in admitted:
        assert r.json()[0][0]["label"] == response.json()[0][0]["label"]  # one text: [[{label, score}]]
    after, _ = _timed_post(url, json={"inputs": TEXT})
    assert after.status_code == 200, after.text


def test_auth_required_except_healthz(serve_url):
    url = serve_url + SECURE_ROUTE
    body = {"inputs": TEXT}
    missing = requests.post(url, json=body, timeout=60)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = requests.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=60)
    assert wrong.status_code == 401
    basic = requests.post(url, json=body, headers={"Authorization": f"Basic {AUTH_TOKEN}"}, timeout=60)
    assert basic.status_code == 401
    for path in ("/info", "/stats", "/docs", "/openapi.json"):
        assert requests.get(url + path, timeout=60).status_code == 401, path
    good = {"Authorization": f"Bearer {AUTH_TOKEN}"}
    ok = requests.post(url, json=body, headers=good, timeout=60)
    assert ok.status_code == 200, ok.text
    assert requests.get(url + "/info", headers=good, timeout=60).status_code == 200
    assert requests.get(url + "/healthz", timeout=60).status_code == 200
    assert requests.get(serve_url + "/healthz", timeout=60).status_code == 200


def test_token_never_reaches_ray_logs(serve_url):
    """Serve logs application args and requests; neither may carry the token."""
    import ray

    requests.post(serve_url + SECURE_ROUTE, json={"inputs": TEXT},
                  headers={"Authorization": f"Bearer {AUTH_TOKEN}"}, timeout=60)
    requests.post(serve_url + SECURE_ROUTE, json={"inputs": TEXT},
                  headers={"Authorization": f"Bearer {AUTH_TOKEN}x"}, timeout=60)
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    logs = glob.glob(os.path.join(session_dir, "logs", "**", "*"), recursive=True)
    assert any("serve" in path for path in logs)
    for path in logs:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert AUTH_TOKEN.encode() not in f.read(), path
