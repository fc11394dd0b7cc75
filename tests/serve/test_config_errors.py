"""A Serve endpoint whose option its model cannot honour refuses to start: the replica's
constructor loads the operator, whose check_config() raises naming the option and the model;
Serve marks the application DEPLOY_FAILED with that message and the deploy wait reports it,
instead of an endpoint that answers every request with an error."""

from __future__ import annotations

import pytest

APP = "test-bad-config"


def test_endpoint_with_an_option_the_model_cannot_honour_does_not_start(serve_url, tiny_model):
    from ray import serve
    from ray.serve.api import RunTarget

    from pipelines.serve.app import build_endpoint
    from pipelines.serve.runner import wait_until_running

    model = tiny_model("translation", "mbart")
    app = build_endpoint(
        {"task": "translation", "model": model, "options": {"src_lang": "en_XX", "tgt_lang": "xx_YY"}},
        # One constructor attempt is enough to see the refusal (Serve's default is 3 per replica).
        {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}, "max_constructor_retry_count": 1},
    )
    serve.run_many(
        [RunTarget(target=app, name=APP, route_prefix="/v1/test/bad-config")],
        wait_for_ingress_deployment_creation=False,
        wait_for_applications_running=False,
    )
    try:
        with pytest.raises(RuntimeError) as info:
            wait_until_running([APP], timeout_s=300)
        message = str(info.value)
        assert f"application {APP!r} is DEPLOY_FAILED" in message
        assert "tgt_lang" in message and "'xx_YY' is not a language code" in message and model in message
    finally:
        serve.delete(APP)
