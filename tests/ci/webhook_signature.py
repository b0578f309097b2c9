"""X-Hub-Signature-256 values for the tests, computed by @octokit/webhooks-methods (GitHub's own
signing code, fetched once into $KILN_CACHE/npm by scripts/fetch-webhook-methods.sh) through
tests/ci/sign_webhook.mjs, so kilnd's signature check is tested against a signer nobody here wrote."""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@functools.cache
def webhooks_methods_entry() -> str:
    """The fetched package's node entry point (fetched on first use, then from the cache)."""
    out = subprocess.run([str(REPO / "scripts" / "fetch-webhook-methods.sh")], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"scripts/fetch-webhook-methods.sh failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def github_signature(body: bytes, secret: str) -> str:
    """'sha256=<hex>' over body with secret, as GitHub puts it in X-Hub-Signature-256."""
    out = subprocess.run(["node", str(HERE / "sign_webhook.mjs"), webhooks_methods_entry()], input=body,
                         capture_output=True, timeout=60, env=dict(os.environ, WEBHOOK_SECRET=secret))
    if out.returncode != 0:
        raise RuntimeError(f"sign_webhook.mjs failed: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode().strip()
