"""Unit tests of the spec validator itself: it must reject bad documents, or every other check in
this suite could pass vacuously. Needs no kilnd."""
import json

import pytest

from openapi_check import OpenApiSpec, SchemaError, unsupported_keywords, validate

SPEC = OpenApiSpec.load()

GOOD_SANDBOX = {
    "id": "sb-0123456789ab", "state": "running", "template": "tiny",
    "created_at": "2026-11-28T15:21:06.123Z", "expires_at": "2026-11-28T15:31:06.123Z",
    "metadata": {"repo": "acme/widget"}, "vcpus": 1, "memory_mib": 256, "network": {"mode": "none"},
}


def check(method, path, status, ctype, doc):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return SPEC.check_response(method, path, status, ctype, body).errors


def test_good_documents_pass():
    assert check("GET", "/v1/sandboxes/sb-0123456789ab", 200, "application/json", GOOD_SANDBOX) == []
    assert check("GET", "/v1/sandboxes?metadata.repo=x", 200, "application/json; charset=utf-8",
                 {"sandboxes": [GOOD_SANDBOX]}) == []
    assert check("DELETE", "/v1/sandboxes/sb-0123456789ab", 204, None, b"") == []
    assert check("GET", "/healthz", 200, "application/json",
                 {"status": "ok", "version": "1", "accel": "tcg",
                  "confinement": {"jailed": True, "seccomp": True, "vms_allowed": True}}) == []


@pytest.mark.parametrize("mutate, expect", [
    (lambda d: d.pop("state"), "required property 'state'"),
    (lambda d: d.update(state="sleeping"), "is not one of"),
    (lambda d: d.update(id="sandbox-1"), "does not match"),
    (lambda d: d.update(vcpus="1"), "expected integer"),
    (lambda d: d.update(vcpus=True), "expected integer"),
    (lambda d: d.update(metadata={"k": 5}), "expected string"),
    (lambda d: d.update(created_at="yesterday"), "date-time"),
    (lambda d: d.update(template=None), "null is not allowed"),
])
def test_bad_sandbox_documents_fail(mutate, expect):
    doc = json.loads(json.dumps(GOOD_SANDBOX))
    mutate(doc)
    errors = check("GET", "/v1/sandboxes/sb-0123456789ab", 200, "application/json", doc)
    assert any(expect in e for e in errors), errors


def test_error_document_rules():
    ok = {"error": {"code": "not_found", "message": "no such sandbox"}}
    assert check("GET", "/v1/sandboxes/sb-0123456789ab", 404, "application/json", ok) == []
    bad_code = {"error": {"code": "nope", "message": "x"}}
    assert check("GET", "/v1/sandboxes/sb-0123456789ab", 404, "application/json", bad_code)
    extra = {"error": {"code": "not_found", "message": "x"}, "detail": 1}
    assert any("not allowed" in e for e in check("GET", "/v1/sandboxes/sb-0123456789ab", 404, "application/json", extra))
    assert check("GET", "/v1/sandboxes/sb-0123456789ab", 404, "application/json", b"not json")


def test_status_and_content_type_must_be_declared():
    # 418 is declared nowhere; 409 is not declared for GET /v1/sandboxes/{id}.
    assert any("not declared" in e for e in check("GET", "/v1/sandboxes/sb-0123456789ab", 418, "application/json", {}))
    assert any("not declared" in e for e in check("GET", "/v1/sandboxes/sb-0123456789ab", 409, "application/json",
                                                  {"error": {"code": "conflict", "message": "x"}}))
    assert any("content type" in e for e in check("GET", "/v1/sandboxes/sb-0123456789ab", 200, "text/html", GOOD_SANDBOX))
    # A 204 must be empty.
    assert check("DELETE", "/v1/sandboxes/sb-0123456789ab", 204, "application/json", {"ok": True})
    # A method the spec does not declare answered with 200.
    assert check("PUT", "/v1/sandboxes", 200, "application/json", {})
    # A route the spec does not have, answered with 200.
    assert check("GET", "/v1/nothing", 200, "application/json", {})


def test_streams_are_checked_line_by_line():
    good = b'{"type":"start","pid":7}\n{"type":"stdout","data":"hi\\n"}\n{"type":"exit","exit_code":0}\n'
    assert check("POST", "/v1/sandboxes/sb-0123456789ab/exec", 200, "application/x-ndjson", good) == []
    bad = good + b'{"type":"exit","exit_code":"0"}\n'
    assert check("POST", "/v1/sandboxes/sb-0123456789ab/exec", 200, "application/x-ndjson", bad)
    sse_good = b'event: stdout\ndata: {"type":"stdout","data":"x"}\n\nevent: exit\ndata: {"type":"exit","exit_code":null,"signal":9}\n\n'
    assert check("POST", "/v1/sandboxes/sb-0123456789ab/exec", 200, "text/event-stream", sse_good) == []
    sse_mismatch = b'event: stdout\ndata: {"type":"stderr","data":"x"}\n\n'
    assert check("POST", "/v1/sandboxes/sb-0123456789ab/exec", 200, "text/event-stream", sse_mismatch)


def test_nested_ref_minimum_nullable_items():
    # ExecEvent.error is a $ref into a nested property of Error.
    assert check("POST", "/v1/sandboxes/sb-0123456789ab/exec", 200, "application/x-ndjson",
                 b'{"type":"error","error":{"code":"internal"}}\n')
    assert validate(0, {"type": "integer", "minimum": 1}, SPEC.doc)
    assert validate(1, {"type": "integer", "minimum": 1}, SPEC.doc) == []
    assert validate(None, {"type": "integer", "nullable": True}, SPEC.doc) == []
    assert validate([], {"type": "array", "minItems": 1}, SPEC.doc)
    assert validate(["a", 2], {"type": "array", "items": {"type": "string"}}, SPEC.doc)


def test_unknown_schema_keywords_are_refused():
    with pytest.raises(SchemaError):
        validate({}, {"type": "object", "oneOf": []}, SPEC.doc)
    with pytest.raises(SchemaError):
        validate({}, {"$ref": "#/components/schemas/NoSuchThing"}, SPEC.doc)


def test_every_schema_in_the_spec_is_understood():
    # A keyword the validator does not implement would be ignored: refuse the spec instead.
    problems = []
    for route, ops in SPEC.doc["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            for status, resp in op["responses"].items():
                for mt, content in (SPEC._deref(resp).get("content") or {}).items():
                    problems += unsupported_keywords(content.get("schema", {}), f"{method} {route} {status} {mt}")
    for name, schema in SPEC.doc["components"]["schemas"].items():
        problems += unsupported_keywords(schema, name)
    assert problems == []
    assert unsupported_keywords({"properties": {"a": {"oneOf": []}}}) == ["$.properties.a.oneOf"]
