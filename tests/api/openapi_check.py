"""Checks HTTP responses against api/openapi.yaml: a small JSON-schema subset validator for the
constructs the spec uses, and a recorder that every response of the suite goes through."""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

SPEC_PATH = Path(__file__).resolve().parents[2] / "api" / "openapi.yaml"

# RFC 3339 date-time (the spec promises UTC with milliseconds; any offset is accepted here, the
# lifecycle test checks the exact shape).
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# Keywords the validator understands; a schema using any other one is a spec change the validator
# must learn, so it is reported rather than silently ignored.
_KNOWN_KEYWORDS = {
    "type", "required", "properties", "additionalProperties", "enum", "pattern", "items", "nullable",
    "$ref", "minimum", "minItems", "maxItems", "maxLength", "format", "description", "default", "example", "title",
}


class SchemaError(Exception):
    """The spec itself uses something this validator cannot check."""


def resolve_pointer(doc: Any, ref: str) -> Any:
    """Follows a local JSON pointer such as '#/components/schemas/Error/properties/error'."""
    if not ref.startswith("#/"):
        raise SchemaError(f"only local $ref is supported, got {ref!r}")
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SchemaError(f"$ref {ref!r} does not resolve")
        node = node[part]
    return node


def unsupported_keywords(schema: Any, where: str = "$") -> list[str]:
    """Every keyword in `schema` and its subschemas that `validate` does not implement."""
    if not isinstance(schema, dict):
        return []
    out = [f"{where}.{k}" for k in sorted(set(schema) - _KNOWN_KEYWORDS)]
    for name, sub in schema.get("properties", {}).items():
        out += unsupported_keywords(sub, f"{where}.properties.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out += unsupported_keywords(schema[key], f"{where}.{key}")
    return out


def _type_ok(value: Any, type_name: str) -> bool:
    if type_name == "object":
        return isinstance(value, dict)
    if type_name == "array":
        return isinstance(value, list)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise SchemaError(f"unknown type {type_name!r}")


def validate(value: Any, schema: Any, doc: Any, where: str = "$") -> list[str]:
    """Returns the list of violations of `schema` by `value` (empty when it conforms)."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{where}: schema is not an object")
    unknown = set(schema) - _KNOWN_KEYWORDS
    if unknown:
        raise SchemaError(f"{where}: unsupported schema keywords {sorted(unknown)}")
    if "$ref" in schema:
        return validate(value, resolve_pointer(doc, schema["$ref"]), doc, where)
    if value is None:
        if schema.get("nullable"):
            return []
        if "type" in schema or "enum" in schema:
            return [f"{where}: null is not allowed"]
        return []
    errors: list[str] = []
    type_name = schema.get("type")
    if type_name is not None and not _type_ok(value, type_name):
        return [f"{where}: expected {type_name}, got {type(value).__name__} {_short(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {_short(value)} is not one of {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {_short(value)} does not match {schema['pattern']!r}")
    if schema.get("format") == "date-time" and isinstance(value, str) and not _DATE_TIME.match(value):
        errors.append(f"{where}: {_short(value)} is not an RFC 3339 date-time")
    if "minimum" in schema and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
    if "maxLength" in schema and isinstance(value, str) and len(value) > schema["maxLength"]:
        errors.append(f"{where}: {len(value)} characters, at most {schema['maxLength']} allowed")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{where}: {len(value)} items, at least {schema['minItems']} required")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: {len(value)} items, at most {schema['maxItems']} allowed")
        if "items" in schema:
            for i, item in enumerate(value):
                errors.extend(validate(item, schema["items"], doc, f"{where}[{i}]"))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name!r} is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                errors.extend(validate(item, props[name], doc, f"{where}.{name}"))
            elif extra is False:
                errors.append(f"{where}: property {name!r} is not allowed")
            elif isinstance(extra, dict):
                errors.extend(validate(item, extra, doc, f"{where}.{name}"))
    return errors


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def media_type(content_type: Optional[str]) -> str:
    """'application/json; charset=utf-8' -> 'application/json'."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_sse(body: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body; data lines of one event are joined by \\n."""
    events: list[tuple[str, str]] = []
    event, data = "message", []
    for raw in body.decode("utf-8", errors="replace").split("\n"):
        line = raw.rstrip("\r")
        if line == "":
            if data:
                events.append((event, "\n".join(data)))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, rest = line.partition(":")
            rest = rest[1:] if rest.startswith(" ") else rest
            if name == "event":
                event = rest
            elif name == "data":
                data.append(rest)
    if data:
        events.append((event, "\n".join(data)))
    return events


@dataclass
class CheckRecord:
    method: str
    path: str
    status: int
    route: Optional[str]
    errors: list[str] = field(default_factory=list)


class OpenApiSpec:
    """The loaded spec plus route matching."""

    def __init__(self, doc: dict):
        self.doc = doc
        self._routes: list[tuple[re.Pattern, str]] = []
        for template in doc.get("paths", {}):
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            self._routes.append((re.compile(regex), template))

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> "OpenApiSpec":
        with open(path, encoding="utf-8") as f:
            return cls(yaml.safe_load(f))

    def route(self, path: str) -> Optional[str]:
        """The spec's path template for a concrete path (query string stripped), or None."""
        path = path.split("?", 1)[0]
        for regex, template in self._routes:
            if regex.match(path):
                return template
        return None

    def _deref(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = resolve_pointer(self.doc, node["$ref"])
        return node

    def check_response(self, method: str, path: str, status: int, content_type: Optional[str],
                       body: bytes) -> CheckRecord:
        """Checks one response: route and method declared, status declared, content type declared,
        body valid against the declared schema (JSON, each NDJSON line, each SSE event's data)."""
        route = self.route(path)
        record = CheckRecord(method.upper(), path, status, route)
        errors = record.errors
        if route is None:
            # An undeclared route must still answer with a declared-shape error (404 or 405).
            if status not in (404, 405):
                errors.append(f"undeclared route {path} answered {status}")
            else:
                self._check_json(body, content_type, {"$ref": "#/components/schemas/Error"}, errors)
            return record
        op = self.doc["paths"][route].get(method.lower())
        if op is None:
            if status != 405:
                errors.append(f"{method} is not declared for {route} and the answer was {status}, not 405")
            else:
                self._check_json(body, content_type, {"$ref": "#/components/schemas/Error"}, errors)
            return record
        responses = op.get("responses", {})
        declared = responses.get(str(status), responses.get("default"))
        if declared is None:
            errors.append(f"status {status} is not declared for {method.upper()} {route} "
                          f"(declared: {sorted(responses)}); body {body[:200]!r}")
            return record
        declared = self._deref(declared)
        content = declared.get("content")
        mt = media_type(content_type)
        if not content:
            if body:
                errors.append(f"{status} declares no body but got {len(body)} bytes")
            return record
        if mt not in content:
            errors.append(f"content type {content_type!r} is not declared for {status} "
                          f"(declared: {sorted(content)})")
            return record
        schema = content[mt].get("schema", {})
        if mt == "application/json" or mt.endswith("+json"):
            self._check_json(body, content_type, schema, errors)
        elif mt == "application/x-ndjson":
            for n, line in enumerate(body.split(b"\n")):
                if line.strip():
                    self._check_json_text(line, schema, errors, f"line {n + 1}")
        elif mt == "text/event-stream":
            # The spec types the stream as a string; each event's data is an ExecEvent whose type
            # is the event name (see the exec operation's description).
            for n, (event, data) in enumerate(parse_sse(body)):
                doc = self._check_json_text(data.encode(), {"$ref": "#/components/schemas/ExecEvent"},
                                            errors, f"event {n + 1}")
                if isinstance(doc, dict) and doc.get("type") != event:
                    errors.append(f"event {n + 1}: event name {event!r} but data type {doc.get('type')!r}")
        return record

    def _check_json(self, body: bytes, content_type: Optional[str], schema: Any, errors: list[str]) -> None:
        mt = media_type(content_type)
        if mt != "application/json":
            errors.append(f"expected application/json, got {content_type!r}")
            return
        self._check_json_text(body, schema, errors, "body")

    def _check_json_text(self, text: bytes, schema: Any, errors: list[str], where: str) -> Any:
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            errors.append(f"{where}: not JSON ({e}): {text[:200]!r}")
            return None
        errors.extend(f"{where}: {e}" for e in validate(doc, schema, self.doc))
        return doc


class SpecRecorder:
    """Every response the suite sees, checked. Thread-safe (the leak and concurrency tests)."""

    def __init__(self, spec: OpenApiSpec):
        self.spec = spec
        self._lock = threading.Lock()
        self.records: list[CheckRecord] = []

    def check(self, method: str, path: str, status: int, content_type: Optional[str], body: bytes) -> CheckRecord:
        record = self.spec.check_response(method, path, status, content_type, body)
        with self._lock:
            self.records.append(record)
        return record

    def failures(self) -> list[CheckRecord]:
        with self._lock:
            return [r for r in self.records if r.errors]

    def count(self) -> int:
        with self._lock:
            return len(self.records)
