"""Embed configs/serve.yaml, verbatim, as the serveConfigV2 of deploy/rayservice.yaml.

    python deploy/embed_serve_config.py           # rewrite the block after editing the config
    python deploy/embed_serve_config.py --check   # exit 1 when the manifest is out of date

One Serve config serves both routes (`taskray serve configs/serve.yaml` and the RayService),
so the manifest carries a copy that tests/cluster/test_deploy_manifests.py checks byte for byte.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE_CONFIG = os.path.join(ROOT, "configs", "serve.yaml")
RAYSERVICE = os.path.join(ROOT, "deploy", "rayservice.yaml")
KEY_LINE = "  serveConfigV2: |\n"
INDENT = "    "


def embed(manifest: str, serve_config: str) -> str:
    """`manifest` with the block under `serveConfigV2: |` replaced by `serve_config`."""
    lines = manifest.splitlines(keepends=True)
    if KEY_LINE not in lines:
        raise ValueError(f"expected a line {KEY_LINE.strip()!r} in the RayService manifest, found none")
    start = lines.index(KEY_LINE) + 1
    end = start
    # The block runs until the first non-blank line indented less than the block.
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(INDENT)):
        end += 1
    while end > start and not lines[end - 1].strip():  # blank lines after it belong to the file
        end -= 1
    block = [INDENT + line if line.strip() else "\n" for line in serve_config.rstrip("\n").splitlines(keepends=True)]
    block[-1] = block[-1].rstrip("\n") + "\n"
    return "".join(lines[:start] + block + lines[end:])


def main(argv: list[str]) -> int:
    with open(SERVE_CONFIG, encoding="utf-8") as f:
        serve_config = f.read()
    with open(RAYSERVICE, encoding="utf-8") as f:
        manifest = f.read()
    updated = embed(manifest, serve_config)
    if "--check" in argv:
        if updated != manifest:
            print(f"{RAYSERVICE} is out of date with {SERVE_CONFIG}; run python deploy/embed_serve_config.py", file=sys.stderr)
            return 1
        return 0
    if updated != manifest:
        with open(RAYSERVICE, "w", encoding="utf-8") as f:
            f.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
