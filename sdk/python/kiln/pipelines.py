"""CI pipelines (``k.pipelines``): every job of a commit's .kiln.yml, queued on kilnd, each job in a
fresh VM (docs/ci.md, docs/pipeline.md)."""
from __future__ import annotations

import time
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._http import Transport

PIPELINE_FINAL = frozenset({"passed", "failed", "error", "cancelled"})
JOB_FINAL = frozenset({"passed", "failed", "error", "cancelled", "skipped"})


@dataclass(frozen=True)
class Step:
    """One step of a job: ``state`` pending, running, passed, failed, timed_out or skipped;
    ``shard`` the shard (0-based) that ran it in a job with ``parallel``, else None."""

    name: str
    state: str
    exit_code: Optional[int] = None
    duration_ms: int = 0
    started_at: Optional[str] = None
    shard: Optional[int] = None

    @classmethod
    def from_json(cls, doc: dict) -> "Step":
        return cls(name=doc["name"], state=doc["state"], exit_code=doc.get("exit_code"),
                   duration_ms=int(doc.get("duration_ms") or 0), started_at=doc.get("started_at"),
                   shard=doc.get("shard"))


@dataclass(frozen=True)
class Job:
    """One job of a pipeline as kilnd last reported it. ``name`` is its planned name (``lint``,
    ``test (18, debian)``; ``""`` for the first job until the pipeline is planned); ``needs`` the
    ids of the jobs it runs after; ``error`` why it failed, errored or was skipped; ``junit`` the
    totals ({tests, failures, errors, skipped}) or None."""

    id: str
    pipeline: str
    name: str
    state: str
    needs: list[str]
    sha: str
    error: str
    steps: list[Step]
    junit: Optional[dict]
    artifacts: list[str]
    created_at: str
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    duration_ms: int = 0
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: dict) -> "Job":
        return cls(id=doc["id"], pipeline=doc.get("pipeline", ""), name=doc.get("name", ""), state=doc["state"],
                   needs=list(doc.get("needs") or []), sha=doc.get("sha", ""), error=doc.get("error", ""),
                   steps=[Step.from_json(s) for s in doc.get("steps") or []], junit=doc.get("junit"),
                   artifacts=list(doc.get("artifacts") or []), created_at=doc.get("created_at", ""),
                   started_at=doc.get("started_at"), finished_at=doc.get("finished_at"),
                   duration_ms=int(doc.get("duration_ms") or 0), raw=dict(doc))

    @property
    def done(self) -> bool:
        return self.state in JOB_FINAL


class Pipeline:
    """One pipeline run. Attributes mirror the API's Pipeline record (``id``, ``state``, ``repo``,
    ``sha``, ``error``, ``jobs``, ...) as of the last answer; ``refresh()`` fetches them again."""

    def __init__(self, transport: "Transport", doc: dict):
        self._t = transport
        self._update(doc)

    def _update(self, doc: dict) -> None:
        self._doc = dict(doc)
        self.id: str = doc["id"]
        self.state: str = doc["state"]
        self.repo: str = doc.get("repo", "")
        self.sha: str = doc.get("sha", "")
        self.ref: str = doc.get("ref", "")
        self.source: str = doc.get("source", "")
        self.trusted: bool = bool(doc.get("trusted", False))
        self.labels: dict[str, str] = dict(doc.get("labels") or {})
        self.error: str = doc.get("error", "")
        self.created_at: Optional[str] = doc.get("created_at")
        self.started_at: Optional[str] = doc.get("started_at")
        self.finished_at: Optional[str] = doc.get("finished_at")
        self.duration_ms: int = int(doc.get("duration_ms") or 0)
        self.jobs: list[Job] = [Job.from_json(j) for j in doc.get("jobs") or []]

    def __repr__(self) -> str:
        return f"<Pipeline {self.id} {self.state} jobs={len(self.jobs)}>"

    @property
    def _path(self) -> str:
        return f"/v1/pipelines/{quote(self.id, safe='')}"

    @property
    def done(self) -> bool:
        return self.state in PIPELINE_FINAL

    @property
    def passed(self) -> bool:
        return self.state == "passed"

    def job(self, name_or_id: str) -> Job:
        """The job with this planned name or id (KeyError when there is none)."""
        for j in self.jobs:
            if name_or_id in (j.name, j.id):
                return j
        raise KeyError(f"pipeline {self.id} has no job {name_or_id!r}")

    def to_dict(self) -> dict:
        """The API's record of this pipeline, as last seen."""
        return dict(self._doc)

    def refresh(self) -> "Pipeline":
        self._update(self._t.json("GET", self._path))
        return self

    def cancel(self) -> "Pipeline":
        """Cancels every job not yet ended (waiting and queued ones at once, running ones have
        their VM destroyed: the pipeline becomes ``cancelled`` shortly after). Owner or admin only."""
        self._update(self._t.json("POST", f"{self._path}/cancel"))
        return self

    def wait(self, timeout: Optional[float] = None, poll_interval: float = 1.0) -> "Pipeline":
        """Polls until the pipeline has ended (passed, failed, error or cancelled); returns it.
        Raises TimeoutError after ``timeout`` seconds (None: no limit); the pipeline runs on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"pipeline {self.id} is still {self.state} after {timeout} s")
            time.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - time.monotonic())))
            self.refresh()
        return self


class Pipelines:
    """``k.pipelines``: queue, list, get, cancel and wait for CI pipelines."""

    def __init__(self, transport: "Transport"):
        self._t = transport

    def submit(self, repo: str, *, sha: Optional[str] = None, ref: Optional[str] = None) -> Pipeline:
        """Queues every job of ``repo``'s .kiln.yml at ``sha`` (40 hex) or ``ref`` (default HEAD,
        resolved by the worker). ``repo`` is a git URL under kilnd's ci_repos, or (admin tokens) a
        path on kilnd's host. Needs ci:submit or ci:trusted; QuotaExceeded past queued_jobs."""
        body: dict[str, Any] = {"repo": repo}
        if sha is not None:
            body["sha"] = sha
        if ref is not None:
            body["ref"] = ref
        return Pipeline(self._t, self._t.json("POST", "/v1/pipelines", json_body=body))

    def get(self, pipeline_id: str) -> Pipeline:
        """NotFound for an unknown id, and for another token's pipeline without ci:read."""
        return Pipeline(self._t, self._t.json("GET", f"/v1/pipelines/{quote(pipeline_id, safe='')}"))

    def list(self, *, limit: Optional[int] = None, state: Optional[str] = None) -> list[Pipeline]:
        """Your pipelines (every one with ci:read), newest first; ``state`` filters
        (queued, running, passed, failed, error, cancelled)."""
        doc = self._t.json("GET", "/v1/pipelines", params={"limit": limit, "state": state})
        return [Pipeline(self._t, d) for d in doc["pipelines"]]

    def cancel(self, pipeline_id: str) -> Pipeline:
        return Pipeline(self._t, self._t.json("POST", f"/v1/pipelines/{quote(pipeline_id, safe='')}/cancel"))

    def wait(self, pipeline_id: str, timeout: Optional[float] = None, poll_interval: float = 1.0) -> Pipeline:
        """``get(pipeline_id).wait(timeout, poll_interval)``."""
        return self.get(pipeline_id).wait(timeout, poll_interval)
