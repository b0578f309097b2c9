"""E2B's unmodified JS SDK (tests/e2b/package.json: e2b 2.51.0, which creates with POST
/v2/sandboxes, and 2.50.0, the last that used POST /sandboxes) against a real kilnd with its E2B
listener on (KILN_E2B_LISTEN) and real VMs: the node tests tests/e2b/*.test.mjs run under
`node --test` once per SDK release. Afterwards kilnd must still answer and hold none of their
sandboxes. The SDK is installed into $KILN_CACHE by scripts/fetch-e2b-sdk.sh."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))

from kilnd_fixture import Kilnd, free_port, wait_until  # noqa: E402

SDKS = {"e2b": "2.51.0", "e2b-old": "2.50.0"}


def install_sdk() -> None:
    out = subprocess.run([str(REPO / "scripts" / "fetch-e2b-sdk.sh")], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"scripts/fetch-e2b-sdk.sh failed:\n{out.stderr}")


@pytest.fixture(scope="module")
def e2b_kilnd():
    install_sdk()
    instance = Kilnd.launched({"KILN_E2B_LISTEN": f"127.0.0.1:{free_port()}"}, name="e2b", tokens={"admin": "admin"})
    try:
        for name, scope in (("e2b-alice", "sandboxes"), ("e2b-bob", "sandboxes"), ("e2b-ci", "ci:read")):
            key = instance.create_token(name, scope, e2b=True)
            assert len(key) == 44 and key.startswith("e2b_") and all(c in "0123456789abcdef" for c in key[4:]), key
        yield instance
    finally:
        leftover = instance.cleanup()
    assert not leftover, f"kilnd left QEMU processes behind: {leftover}"


def live_sandboxes(instance: Kilnd) -> list[dict]:
    req = urllib.request.Request(instance.url + "/v1/sandboxes?owner=all",
                                 headers={"Authorization": "Bearer " + instance.tokens["admin"]})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.loads(resp.read())
    return body["sandboxes"] if isinstance(body, dict) else body


@pytest.mark.parametrize("sdk", list(SDKS))
def test_e2b_sdk(e2b_kilnd: Kilnd, sdk: str):
    origin = e2b_kilnd.extra_env["KILN_E2B_LISTEN"]
    env = {k: v for k, v in e2b_kilnd.env().items() if not k.startswith("E2B_")}
    env.update({
        "KILN_E2B_URL": f"http://{origin}",
        "KILN_E2B_KEY": e2b_kilnd.tokens["e2b-alice"],
        "KILN_E2B_KEY2": e2b_kilnd.tokens["e2b-bob"],
        "KILN_E2B_CI_KEY": e2b_kilnd.tokens["e2b-ci"],
        "KILN_E2B_SDK": sdk,
        "KILN_E2B_SDK_VERSION": SDKS[sdk],
        # What a user of E2B's SDK sets to reach Kiln (docs/e2b.md).
        "E2B_API_URL": f"http://{origin}",
        "E2B_SANDBOX_URL": f"http://{origin}",
        "E2B_API_KEY": e2b_kilnd.tokens["e2b-alice"],
        # Every test process imports the release under test as 'e2b'.
        "NODE_OPTIONS": f"--import {(HERE / 'select_sdk.mjs').as_uri()}",
    })
    # KILN_E2B_TEST_FILES (a glob, e.g. control.test.mjs) runs only some files while working on them.
    files = sorted(str(p) for p in HERE.glob(os.environ.get("KILN_E2B_TEST_FILES", "*.test.mjs")))
    assert files, "no node tests in tests/e2b"
    out = subprocess.run(["node", "--test", "--test-concurrency=1", *files], cwd=HERE, env=env,
                         capture_output=True, text=True, timeout=1800)
    print(out.stdout[-20000:])
    print(out.stderr[-5000:], file=sys.stderr)
    assert out.returncode == 0, f"node --test failed with {SDKS[sdk]} ({sdk}); see the output above"
    assert "# pass 0" not in out.stdout, "node ran no test"

    assert e2b_kilnd.healthy(), "kilnd stopped answering"
    assert e2b_kilnd.proc.poll() is None
    # Every sandbox the tests made was killed or expired.
    left = wait_until(lambda: not [s for s in live_sandboxes(e2b_kilnd) if s.get("state") in ("creating", "running")], 30)
    assert left, f"sandboxes left running: {live_sandboxes(e2b_kilnd)}"
