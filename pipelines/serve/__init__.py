"""Online inference on Ray Serve: the same task operators behind FastAPI + @serve.batch.

    taskray serve --task text-classification --model DIR      # one task
    taskray serve configs/serve.yaml                          # a standard Serve config
    serve run configs/serve.yaml                              # Ray's own CLI, unchanged

Heavy imports (ray, fastapi, operators) live in the submodules: `app` (the deployment),
`config` (typed args and deployment options), `codec` (requests in, pipeline-shaped JSON
out) and `runner` (deploy a config and wait until it serves).
"""
