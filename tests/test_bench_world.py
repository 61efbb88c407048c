"""The world benchmark runs end to end (tiny size) and prints its ratio line; no speed is asserted."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_world_vs_simpy_prints_both_figures_and_a_ratio():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "world_vs_simpy.py"), "--deliveries", "3000"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert any(line.startswith("capgym sim") for line in lines)
    assert any(line.startswith("simpy store") for line in lines)
    assert re.fullmatch(r"ratio: \d+\.\d\d", lines[-1])
