"""``cam-audit gate ... | head -1``: a reader that leaves early changes neither the exit code nor stderr."""

from __future__ import annotations

import pytest

from helpers.compare import audited
from helpers.pipes import run_into_closed_pipe, run_reading_one_line


@pytest.fixture(scope="module")
def report(scene_probe, tmp_path_factory):
    """A report the untrained scene model passes under the lenient policy it was audited with."""
    return str(audited(scene_probe).to_json(tmp_path_factory.mktemp("pipe") / "report.json"))


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--json"], 0),
        ([], 0),
        (["--json", "--min-focus-lift", "1000"], 1),
        (["--min-focus-lift", "1000"], 1),
        (["--baseline", "{report}"], 0),
        (["--baseline", "{report}", "--json"], 0),
        (["--baseline", "{report}", "--min-focus-lift", "1000"], 1),
        (["--help"], 0),
    ],
)
def test_a_closed_stdout_keeps_the_exit_code_and_prints_no_traceback(report, extra, code):
    done = run_into_closed_pipe(["gate", report, *(a.format(report=report) for a in extra)])
    assert (done.returncode, done.stderr) == (code, "")


def test_head_one_gets_the_decision_and_the_exit_code_stands(report):
    first, code, err = run_reading_one_line(["gate", report, "--min-focus-lift", "1000"])
    assert first.startswith(f"FAIL {report}") and code == 1 and err == ""
    first, code, err = run_reading_one_line(["gate", report, "--json"])
    assert first == "{\n" and code == 0 and err == ""
