"""The scaling benchmark runs end to end (its quick sizes) and prints a row per size and its ratio
line; no speed is asserted."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_scaling_prints_every_size_and_a_ratio():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--quick", "--seconds", "0.5"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600, env={"PYTHONPATH": str(ROOT),
                                                                                     "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    rows = [line.split() for line in lines if line.split()[:1] in (["abd"], ["gossip"])]
    assert [(r[0], r[1]) for r in rows if len(r) > 10] == [("abd", "5"), ("abd", "25"), ("gossip", "1000")]
    for r in rows:
        if len(r) > 10:
            assert int(r[3].replace(",", "")) > 0 and r[11] in ("linearizable", "not_applicable")
    assert re.fullmatch(r"ratio: \d+\.\d\d", lines[-1])


def test_scaling_refuses_a_bad_argument():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--seconds", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, env={"PYTHONPATH": str(ROOT),
                                                                                    "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and out.stdout == ""
