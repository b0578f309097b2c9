#!/usr/bin/env python3
"""An ephemeral CI job in a Kiln sandbox, in five steps: create a sandbox, get an exact commit of
a git repository into it, build and test, read the JUnit report, delete the sandbox.

Until sandboxes have a network, step 2 clones the repository on this host, checks out the exact
SHA and sends the tree in as a tarball through the files API.

    KILN_URL=http://127.0.0.1:7070 KILN_TOKEN=... python3 ci_job.py REPO_URL SHA

Exits 0 when the build and every test passed, 1 when not, 2 when the job itself could not run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from kiln import Kiln, KilnError

WORKDIR = "/work/src"
# make when the guest has it; the tiny template has only busybox, so the repo's shell runner then.
BUILD_AND_TEST = f"cd {WORKDIR} && if command -v make >/dev/null 2>&1; then make test; else sh ./run_tests.sh; fi"


@dataclass
class JUnitSummary:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    failed_names: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.tests > 0 and self.failures == 0 and self.errors == 0


def parse_junit(xml_bytes: bytes) -> JUnitSummary:
    """Counts the test cases of a JUnit XML report (<testsuites> or a single <testsuite>)."""
    root = ET.fromstring(xml_bytes)
    summary = JUnitSummary()
    for case in root.iter("testcase"):
        summary.tests += 1
        name = f"{case.get('classname', '')}.{case.get('name', '')}".lstrip(".")
        if case.find("failure") is not None:
            summary.failures += 1
            summary.failed_names.append(name)
        elif case.find("error") is not None:
            summary.errors += 1
            summary.failed_names.append(name)
        elif case.find("skipped") is not None:
            summary.skipped += 1
    return summary


def checkout_tarball(repo_url: str, sha: str) -> bytes:
    """Clones `repo_url`, checks out exactly `sha` and returns that tree as a tarball."""
    with tempfile.TemporaryDirectory(prefix="kiln-ci-") as tmp:
        run = lambda *args: subprocess.run(args, check=True, capture_output=True)  # noqa: E731
        run("git", "clone", "--quiet", "--no-checkout", repo_url, tmp)
        run("git", "-C", tmp, "checkout", "--quiet", "--detach", sha)
        head = subprocess.run(["git", "-C", tmp, "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
        if not head.startswith(sha) and head != sha:
            raise RuntimeError(f"checked out {head}, not {sha}")
        return subprocess.run(["git", "-C", tmp, "archive", "--format=tar", head], check=True,
                              capture_output=True).stdout


def run_job(kiln: Kiln, repo_url: str, sha: str, template: str = "tiny", ttl_seconds: int = 900,
            junit_path: str = "junit.xml", out=sys.stdout) -> tuple[int, JUnitSummary, str]:
    """The five steps. Returns (exit code of the build, JUnit summary, sandbox id)."""
    # 1. create
    sb = kiln.sandboxes.create(template=template, ttl_seconds=ttl_seconds,
                               metadata={"repo": repo_url[-200:], "sha": sha, "kind": "ci"})
    print(f"[ci] sandbox {sb.id} for {sha}", file=out)
    try:
        # 2. the exact commit, as a tarball through the files API
        info = sb.filesystem.upload_tar(WORKDIR, checkout_tarball(repo_url, sha))
        print(f"[ci] {info['entries']} entries ({info['bytes']} bytes) in {WORKDIR}", file=out)
        # 3. build and test, output streamed as it comes
        result = sb.exec(BUILD_AND_TEST, timeout_seconds=max(60, ttl_seconds - 60),
                         on_stdout=lambda s: out.write(s), on_stderr=lambda s: out.write(s))
        print(f"[ci] build and test exited with {result.exit_code}", file=out)
        # 4. the JUnit report
        summary = parse_junit(sb.filesystem.read(f"{WORKDIR}/{junit_path}"))
        print(f"[ci] {summary.tests} tests, {summary.failures} failures, {summary.errors} errors, "
              f"{summary.skipped} skipped" + (f": {', '.join(summary.failed_names)}" if summary.failed_names else ""),
              file=out)
        return (result.exit_code if result.exit_code is not None else 128 + (result.signal or 0)), summary, sb.id
    finally:
        # 5. delete
        sb.delete()
        print(f"[ci] sandbox {sb.id} deleted", file=out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="git URL or path of the repository")
    parser.add_argument("sha", help="the exact commit to build")
    parser.add_argument("--template", default="tiny")
    parser.add_argument("--ttl", type=int, default=900)
    parser.add_argument("--junit", default="junit.xml", help="the report's path in the repository")
    args = parser.parse_args(argv)
    try:
        code, summary, _ = run_job(Kiln(), args.repo, args.sha, args.template, args.ttl, args.junit)
    except (KilnError, RuntimeError, subprocess.CalledProcessError, ET.ParseError) as e:
        print(f"[ci] the job could not run: {e}", file=sys.stderr)
        return 2
    return 0 if code == 0 and summary.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
