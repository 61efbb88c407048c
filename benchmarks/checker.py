"""Benchmark: the linearizability checker on Porcupine's reference histories.

Times reading and checking all 102 jepsen-etcd register histories (cas-register model) together,
and each key-value history (kv model) on its own, checks every verdict against ``verdicts.csv``,
and ends with the line ``seconds: <all 102 register histories> <slowest key-value history>``
(both figures include reading the files). For scale: Knossos failed on 6 of the register
histories by timeout or memory; Porcupine (Go) checks them all.

    python benchmarks/checker.py [--data ../shared/data/porcupine]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.history_io import read_history  # noqa: E402
from metrics.linearizability import check  # noqa: E402
from metrics.models import CAS_REGISTER, KV  # noqa: E402


def verdicts(folder: Path) -> list[tuple[Path, bool]]:
    with open(folder / "verdicts.csv") as f:
        return [(folder / r["file"], r["linearizable"] == "true") for r in csv.DictReader(f)]


def timed(path: Path, model) -> tuple[float, float, object]:
    t0 = time.perf_counter()
    ops = read_history(path)
    t1 = time.perf_counter()
    result = check(ops, model)
    return t1 - t0, time.perf_counter() - t1, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "porcupine"))
    data = Path(ap.parse_args().data)
    wrong = []

    etcd = verdicts(data / "jepsen-etcd")
    read_s = check_s = 0.0
    slowest = (0.0, "")
    for path, expected in etcd:
        r_s, c_s, res = timed(path, CAS_REGISTER)
        read_s, check_s = read_s + r_s, check_s + c_s
        slowest = max(slowest, (c_s, path.name))
        if res.ok is not expected:
            wrong.append(path.name)
    register_total = read_s + check_s
    print(f"jepsen-etcd: {len(etcd)} register histories: read {read_s:.3f} s + check {check_s:.3f} s "
          f"= {register_total:.3f} s (slowest {slowest[1]}: {slowest[0]:.3f} s)")

    kv_worst = 0.0
    for path, expected in verdicts(data / "kv"):
        r_s, c_s, res = timed(path, KV)
        kv_worst = max(kv_worst, r_s + c_s)
        if res.ok is not expected:
            wrong.append(path.name)
        print(f"kv/{path.name}: {res.ops} ops, {len(res.partitions)} keys checked, linearizable={res.ok}: "
              f"read {r_s:.3f} s + check {c_s:.3f} s = {r_s + c_s:.3f} s")

    print(f"verdicts agreeing with verdicts.csv: {'all' if not wrong else 'all but ' + ', '.join(wrong)}")
    print(f"seconds: {register_total:.3f} {kv_worst:.3f}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
