"""Benchmark: the linearizability checker against Porcupine, side by side, on Porcupine's histories.

capgym: reads and checks all 102 jepsen-etcd register histories (cas-register model) together, and
each key-value history (kv model) on its own, and checks every verdict against ``verdicts.csv``.

Porcupine (``../shared/peers/porcupine``, Go, when ``go`` is on the PATH; Debian's ``golang-go``):
its test binary is built first (compile time is not counted), then its own tests are timed on the
same files: ``TestEtcdJepsen000..101`` in one run, and each ``TestKv{1,10,50}Client(s){Ok,Bad}``
in a run of its own (the partitioned kv model, as capgym's). Porcupine's tests parse the files and
check them (no visualisation), so both sides' figures include reading the files. Each figure is the
best of ``--repeat`` runs, the two sides interleaved (the machine is shared and noisy).

Output ends with::

    seconds: <all 102 register histories> <slowest key-value history>      (capgym)
    porcupine: <all 102 register histories> <slowest key-value history>
    ratio: <Porcupine's time over capgym's, on the set where capgym does worse>

A ratio of at least 1 means capgym is ahead of Porcupine on both sets.

    python benchmarks/checker.py [--data ../shared/data/porcupine] [--porcupine ../shared/peers/porcupine]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.history_io import read_history  # noqa: E402
from metrics.linearizability import check  # noqa: E402
from metrics.models import CAS_REGISTER, KV  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
KV_TESTS = {"c01-ok": "TestKv1ClientOk", "c01-bad": "TestKv1ClientBad", "c10-ok": "TestKv10ClientsOk",
            "c10-bad": "TestKv10ClientsBad", "c50-ok": "TestKv50ClientsOk", "c50-bad": "TestKv50ClientsBad"}


def verdicts(folder: Path) -> list[tuple[Path, bool]]:
    with open(folder / "verdicts.csv") as f:
        return [(folder / r["file"], r["linearizable"] == "true") for r in csv.DictReader(f)]


def timed(path: Path, model) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    ops = read_history(path)
    t1 = time.perf_counter()
    result = check(ops, model)
    return t1 - t0, time.perf_counter() - t1, result


def capgym_run(data: Path, wrong: list, verbose: bool) -> tuple[float, dict[str, float]]:
    read_s = check_s = 0.0
    slowest = (0.0, "")
    for path, expected in verdicts(data / "jepsen-etcd"):
        r_s, c_s, res = timed(path, CAS_REGISTER)
        read_s, check_s = read_s + r_s, check_s + c_s
        slowest = max(slowest, (c_s, path.name))
        if res.ok is not expected:
            wrong.append(path.name)
    if verbose:
        print(f"capgym jepsen-etcd: 102 register histories: read {read_s:.3f} s + check {check_s:.3f} s "
              f"= {read_s + check_s:.3f} s (slowest {slowest[1]}: {slowest[0]:.3f} s)")
    kv = {}
    for path, expected in verdicts(data / "kv"):
        r_s, c_s, res = timed(path, KV)
        kv[path.stem] = r_s + c_s
        if res.ok is not expected:
            wrong.append(path.name)
        if verbose:
            print(f"capgym kv/{path.name}: {res.ops} ops, {len(res.partitions)} keys checked, "
                  f"linearizable={res.ok}: read {r_s:.3f} s + check {c_s:.3f} s = {r_s + c_s:.3f} s")
    return read_s + check_s, kv


class Porcupine:
    """Porcupine's test binary, built once in a temporary folder; runs its own tests, timed."""

    def __init__(self, src: Path, build_dir: Path):
        self.src = src
        self.binary = build_dir / "porcupine.test"
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOCACHE": str(build_dir / "gocache"),
               "GOPATH": str(build_dir / "gopath")}
        p = subprocess.run(["go", "test", "-c", "-o", str(self.binary), "."], cwd=src, env=env,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"building Porcupine's tests failed: {p.stderr.strip().splitlines()[-1:]}")

    def run(self, pattern: str, expect: int) -> float:
        """Wall time of one run of the tests matching ``pattern``; fails unless ``expect`` passed."""
        t0 = time.perf_counter()
        p = subprocess.run([str(self.binary), "-test.run", pattern, "-test.v", "-test.count=1"], cwd=self.src,
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        passed = len(re.findall(r"^--- PASS", p.stdout, re.M))
        if p.returncode != 0 or passed != expect:
            raise RuntimeError(f"Porcupine's tests {pattern}: {passed} of {expect} passed")
        return wall

    def measure(self, kv_names: list[str]) -> tuple[float, dict[str, float]]:
        reg = self.run(r"^TestEtcdJepsen[0-9]+$", 102)
        return reg, {name: self.run(f"^{KV_TESTS[name]}$", 1) for name in kv_names}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "data" / "porcupine"))
    ap.add_argument("--porcupine", default=str(SHARED / "peers" / "porcupine"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side; the best is kept (default 3)")
    args = ap.parse_args()
    data, src = Path(args.data), Path(args.porcupine)
    if args.repeat < 1:
        print(f"checker.py: error: --repeat must be >= 1, got {args.repeat}", file=sys.stderr)
        return 2
    if not (data / "jepsen-etcd" / "verdicts.csv").exists():
        print(f"checker.py: error: no Porcupine histories under {data}", file=sys.stderr)
        return 2
    go = shutil.which("go") and (src / "porcupine_test.go").exists()
    if not go:
        print(f"porcupine: not run ({'go not found: apt-get install golang-go' if src.exists() else f'no {src}'})")

    wrong: list[str] = []
    cap_reg, cap_kv, por_reg, por_kv = [], {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        porcupine = Porcupine(src, Path(tmp)) if go else None
        for rep in range(args.repeat):
            reg, kv = capgym_run(data, wrong if rep == 0 else [], verbose=rep == 0)
            cap_reg.append(reg)
            for k, v in kv.items():
                cap_kv.setdefault(k, []).append(v)
            if porcupine:
                reg, kv = porcupine.measure(sorted(kv))
                por_reg.append(reg)
                for k, v in kv.items():
                    por_kv.setdefault(k, []).append(v)

    print(f"verdicts agreeing with verdicts.csv: {'all' if not wrong else 'all but ' + ', '.join(wrong)}")
    best = {k: min(v) for k, v in cap_kv.items()}
    slow_kv = max(best, key=best.get)
    print(f"capgym    (best of {args.repeat}): register {min(cap_reg):.3f} s; kv "
          + ", ".join(f"{k} {v:.3f}" for k, v in sorted(best.items())))
    if porcupine:
        pbest = {k: min(v) for k, v in por_kv.items()}
        print(f"porcupine (best of {args.repeat}): register {min(por_reg):.3f} s; kv "
              + ", ".join(f"{k} {v:.3f}" for k, v in sorted(pbest.items())))
    print(f"seconds: {min(cap_reg):.3f} {best[slow_kv]:.3f}")
    if porcupine:
        p_slow = max(pbest.values())
        print(f"porcupine: {min(por_reg):.3f} {p_slow:.3f}")
        ratio = min(min(por_reg) / min(cap_reg), p_slow / best[slow_kv])
        print(f"ratio: {ratio:.2f}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
