"""The octokit signer the webhook tests use (webhook_signature.py): it agrees with an HMAC-SHA256
computed here over a recorded payload and over non-ASCII UTF-8, and refuses bytes it would not sign
as sent. No kilnd, no VM: a cheap check that the tests' signatures mean what they say."""
from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from webhook_signature import github_signature

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "github"


@pytest.mark.parametrize("body", [(FIXTURES / "push.json").read_bytes(),
                                  '{"message": "caf\u00e9 \u2713 \U0001f525"}'.encode()])
def test_octokit_and_hmac_agree(body):
    secret = "sanity-secret"
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert github_signature(body, secret) == expected
    assert github_signature(body, "another") != expected


def test_a_body_that_is_not_utf8_is_refused():
    with pytest.raises(RuntimeError, match="not UTF-8"):
        github_signature(b'{"a": "\xff"}', "sanity-secret")
