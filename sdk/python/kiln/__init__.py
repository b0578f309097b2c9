"""Kiln's Python SDK: sandboxes (one microVM each) and CI pipelines over kilnd's REST API, standard
library only.

    from kiln import Kiln
    k = Kiln()  # KILN_URL and KILN_TOKEN from the environment
    with k.sandboxes.create(template="tiny", ttl_seconds=600) as sb:
        print(sb.exec("echo hi").stdout)
"""
from .client import Hosts, Kiln, Sandboxes, Snapshots, Templates
from .errors import (Conflict, ConnectionFailed, ExecTimeout, Forbidden, InvalidArgument, KilnError, NotFound,
                     QuotaExceeded, SandboxGone, ServerError, Unauthorized)
from .models import ExecEvent, ExecResult, FileInfo, Host, Snapshot, Template
from .pipelines import Job, Pipeline, Pipelines, Step
from .sandbox import Filesystem, Sandbox

__version__ = "1.0.0"

__all__ = [
    "Kiln", "Sandbox", "Sandboxes", "Snapshots", "Templates", "Hosts", "Host", "Filesystem", "Pipelines", "Pipeline", "Job", "Step",
    "ExecEvent", "ExecResult", "FileInfo", "Snapshot", "Template",
    "KilnError", "Unauthorized", "Forbidden", "NotFound", "InvalidArgument", "Conflict", "QuotaExceeded",
    "ExecTimeout", "SandboxGone", "ServerError", "ConnectionFailed",
]
