"""Sweep scaling: the same 8 training trials in a plain Python loop and as a Ray Tune sweep.

The trials: ``configs/train/register.yaml`` (PPO on Register-v0) with a small budget
(``--steps``, about 15 s a trial on one core), two learning rates x four seeds. The peer is a plain
loop (no Ray) calling :func:`experiments.train_cmd.execute` on each trial's validated config; ours is
``capgym sweep``'s engine (:func:`experiments.sweep_cmd.run_sweep`) with ``--jobs 1`` and with
``--jobs 2``, each on a fresh local Ray instance. Wall times include Ray's and Tune's start-up.

Prints the trials per minute of each, Tune's overhead per trial in seconds (jobs 1's wall time,
less its one-time part -- from the call to the first trial's start, and from the last trial's end
to the return -- and less the plain loop's time, over the 8 trials) and ends with
``ratio: <jobs 2 over the plain loop>`` (trials per minute). Target on a 2-core machine: ratio at
least 1.6 and under 1 s of overhead per trial.

    PYTHONPATH=. python benchmarks/sweep_scaling.py [--steps 32768]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def sweep_spec(out: Path, steps: int) -> Path:
    path = out / "scaling.yaml"
    path.write_text(yaml.safe_dump({
        "name": "scaling", "base": str(ROOT / "configs" / "train" / "register.yaml"),
        "set": {"ppo.total_steps": steps, "wandb.mode": "disabled", "output.plots": False,
                "output.progress": False, "output.root": str(out / "results")},
        "grid": {"ppo.lr": [0.001, 0.002]}, "seeds": 4}))
    return path


def plain_loop(sweep) -> float:
    from experiments.train_cmd import execute

    t0 = time.perf_counter()
    for p in sweep.points:
        cfg = p.cfg.model_copy(deep=True)
        cfg.experiment = "plain"
        _, rc = execute(cfg, quiet=True)
        assert rc == 0
    return time.perf_counter() - t0


def on_tune(path: Path, jobs: int) -> tuple[float, float]:
    """Wall time of the sweep with ``jobs``, and its one-time part: from the call to the first
    trial's start (Ray's and Tune's start-up, the first worker's imports) plus from the last
    trial's end to the return (aggregation, Ray's shutdown)."""
    import json

    from experiments.sweep import load_sweep
    from experiments.sweep_cmd import run_sweep

    t0 = time.time()
    sweep_dir, rc = run_sweep(load_sweep(path), jobs=jobs, quiet=True)
    wall = time.time() - t0
    assert rc == 0
    records = [json.loads(p.read_text()) for p in (sweep_dir / "trials").glob("*.json")]
    first = min((Path(r["run_dir"]) / "config.yaml").stat().st_mtime for r in records)
    last = max((sweep_dir / "trials" / f"{r['index']:04d}.json").stat().st_mtime for r in records)
    return wall, (first - t0) + (t0 + wall - last)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32768, help="env steps per trial (default 32768, ~15 s)")
    args = ap.parse_args()
    from experiments.sweep import load_sweep

    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_spec(Path(tmp), args.steps)
        sweep = load_sweep(path)
        n = len(sweep.points)
        plain = plain_loop(sweep)
        print(f"plain loop (no Ray):    {n} trials in {plain:6.1f} s   {60 * n / plain:5.2f} trials/min "
              f"({plain / n:.1f} s a trial)")
        one, once1 = on_tune(path, 1)
        print(f"Tune sweep, --jobs 1:   {n} trials in {one:6.1f} s   {60 * n / one:5.2f} trials/min "
              f"(one-time start-up and shutdown {once1:.1f} s)")
        two, once2 = on_tune(path, 2)
        print(f"Tune sweep, --jobs 2:   {n} trials in {two:6.1f} s   {60 * n / two:5.2f} trials/min "
              f"(one-time start-up and shutdown {once2:.1f} s)")
        print(f"Tune overhead per trial (jobs 1, excluding the one-time part): {(one - once1 - plain) / n:.2f} s")
        print(f"ratio: {plain / two:.2f}")


if __name__ == "__main__":
    main()
