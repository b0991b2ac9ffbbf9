"""make test audits the pinned requirements: a known vulnerability fails the
build, an unreachable vulnerability database is said and passes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def audit_with(tmp_path, report) -> subprocess.CompletedProcess:
    """bin/audit-dependencies with pip-audit answering `report` (a stand-in
    for the vulnerability database, which the test machine cannot reach)."""
    fake = tmp_path / "pip-audit"
    fake.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(report))})\n")
    fake.chmod(0o755)
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "audit-dependencies")],
        env={**os.environ, "PIP_AUDIT": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("report", "code", "said"),
    [
        (
            {
                "dependencies": [
                    {"name": "django", "version": "5.2.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["5.2.1"]}]}
                ]
            },
            1,
            "django 5.2.0: PYSEC-1 (fixed in 5.2.1)",
        ),
        ({"dependencies": [{"name": "django", "skip_reason": "not found"}]}, 0, "could not be reached"),
        ({"dependencies": [{"name": "django", "version": "5.2.19", "vulns": []}]}, 0, "1 packages audited"),
    ],
)
def test_a_known_vulnerability_fails_and_an_unreachable_database_passes_with_a_word(tmp_path, report, code, said):
    done = audit_with(tmp_path, report)
    assert done.returncode == code, done.stdout + done.stderr
    assert said in done.stdout
