"""Runs the unittest suite in tests/ and writes a JUnit XML report (a tiny writer, standard
library only). Exits 0 when every test passed, 1 otherwise."""
import argparse
import os
import sys
import time
import unittest
from xml.etree import ElementTree as ET


class RecordingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []  # (test, outcome, detail, seconds)
        self._start = 0.0

    def startTest(self, test):
        self._start = time.monotonic()
        super().startTest(test)

    def _record(self, test, outcome, detail=""):
        self.cases.append((test, outcome, detail, time.monotonic() - self._start))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def write_junit(result, path, seconds):
    counts = {k: sum(1 for c in result.cases if c[1] == k) for k in ("failure", "error", "skipped")}
    suite = ET.Element("testsuite", name="widget", tests=str(len(result.cases)), failures=str(counts["failure"]),
                       errors=str(counts["error"]), skipped=str(counts["skipped"]), time=f"{seconds:.3f}")
    for test, outcome, detail, secs in result.cases:
        case = ET.SubElement(suite, "testcase", classname=type(test).__module__ + "." + type(test).__name__,
                             name=test._testMethodName, time=f"{secs:.3f}")
        if outcome in ("failure", "error"):
            ET.SubElement(case, outcome, message=detail.strip().splitlines()[-1][:200]).text = detail
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", message=detail)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default="reports/junit.xml")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=here)
    start = time.monotonic()
    result = unittest.TextTestRunner(resultclass=RecordingResult, verbosity=2, stream=sys.stdout).run(suite)
    write_junit(result, args.output, time.monotonic() - start)
    print(f"JUnit report: {args.output}")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
