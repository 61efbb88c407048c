"""``capgym train CONFIG [key.sub=value ...]``: train PPO agents on a capgym environment.

The config (``configs/train/*.yaml``; every key in :mod:`agents.learn.config` plus ``experiment``,
``wandb``, ``output`` and ``checkpoint_every``) is composed, overridden and validated before anything
runs. The run folder (``results/<experiment>/<time>-<id>/``) gets::

    config.yaml      the resolved config
    status.json      running -> complete | interrupted | failed
    metrics.csv      one row per iteration: returns per agent, the observer's global measures of the
                     episodes that ended, policy/value loss, entropy, approx KL, SPS
    summary.json     the last iteration's figures, steps, time
    checkpoint/      each agent's weights (agents.learn.checkpoint), also every checkpoint_every iterations
    plots/returns.png, wandb/ (offline unless told otherwise)
    report.html      the learning curves, one self-contained page (experiments.html_report)
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from pydantic import Field, ValidationError

from agents.learn.config import TrainConfig
from envs.world.config import error_line
from experiments.cli import UserError
from experiments.config import OutputConfig, WandbConfig

EXAMPLES = """examples:
  capgym train configs/train/register.yaml
  capgym train configs/train/register.yaml ppo.total_steps=20000 env.params.reward_mode=global
  capgym train configs/train/register.yaml learner.backend=ray learner.share=true
  capgym train configs/train/register.yaml learner.critic=central          MAPPO
  capgym train configs/train/register.yaml learner.backend=rllib          RLlib's PPO, action masks enforced
"""


class TrainRunConfig(TrainConfig):
    """A training run: :class:`~agents.learn.config.TrainConfig` plus where its results go."""

    experiment: str = Field("train", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    checkpoint_every: int = Field(0, ge=0, description="also checkpoint every n iterations (0: only at the end)")

    def train_config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.model_dump(include=set(TrainConfig.model_fields)))


def validate_train(data: dict) -> TrainRunConfig:
    """A validated run config, or a one-line :class:`UserError`; the environment's own parameters
    are checked too (by building one copy)."""
    from agents.learn.config import make_env

    try:
        cfg = TrainRunConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(error_line(e)) from None
    try:
        make_env(cfg.env).close()
    except (ValueError, TypeError) as e:
        raise UserError(f"env.params: {e}") from None
    return cfg


def load_train_config(path: str | Path, overrides=()) -> TrainRunConfig:
    from experiments.config import apply_override, compose, parse_override

    data = compose(Path(path))
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    return validate_train(data)


def table_rows(rows: list[dict]) -> list[dict]:
    """Rows with the union of keys (iterations without finished episodes lack some)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return [{k: r.get(k) for k in keys} for r in rows]


def log_wandb(cfg: TrainRunConfig, run_dir: Path, rows: list[dict], summary: dict, plots: list[Path]) -> Path | None:
    """The wandb run of a training run (offline by default), one step per iteration."""
    import os

    if cfg.wandb.mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    if cfg.wandb.mode == "offline":
        os.environ["WANDB_MODE"] = "offline"
    import wandb

    settings = wandb.Settings(silent=True, console="off", save_code=False, disable_git=True,
                              x_disable_stats=True, x_disable_meta=True)
    run = wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, mode=cfg.wandb.mode,
                     dir=str(Path(run_dir).resolve()),  # absolute: wandb's service has its own cwd
                     name=f"{cfg.experiment}-{run_dir.name}", tags=cfg.wandb.tags,
                     config=cfg.model_dump(mode="json"), settings=settings, reinit="finish_previous")
    try:
        for r in rows:
            wandb.log({k: v for k, v in r.items() if isinstance(v, (int, float))}, step=r["iteration"])
        if plots:
            wandb.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in plots})
        run.summary.update({k: v for k, v in summary.get("last", {}).items() if isinstance(v, (int, float))})
        folder = Path(run.dir).parent if run.dir else None
    finally:
        run.finish()
    return folder


def execute(cfg: TrainRunConfig, quiet: bool = False, on_iteration=None) -> tuple[Path, int]:
    """Train into a new results folder; returns the folder and the exit status. ``on_iteration``
    (optional) is called with each iteration's ``metrics.csv`` row, plus ``run_dir``, after it is
    written (a sweep reports it to Ray Tune)."""
    hook = on_iteration
    if cfg.learner.backend == "ray":
        # before any folder is made: a cluster that cannot be reached is a one-line error (exit 2);
        # a cluster gets the project folder shipped to its workers, as live runs do
        from experiments.live import ensure_ray

        ensure_ray(cfg.ray.address)
    ray_started = False
    if cfg.learner.backend == "rllib":  # RLlib's Algorithm needs Ray up (it runs in this process)
        from experiments.live import ensure_ray

        ray_started = ensure_ray(None)
    try:
        return _execute(cfg, quiet, hook)
    finally:
        if ray_started:
            import ray

            ray.shutdown()


def _execute(cfg: TrainRunConfig, quiet: bool, hook) -> tuple[Path, int]:
    from agents.learn import checkpoint
    from agents.learn.ppo import train
    from experiments import plots, results
    from experiments.run_cmd import StopFlag

    run_dir = results.new_run_dir(cfg.output.root, cfg.experiment)
    results.write_yaml(run_dir / "config.yaml", cfg.model_dump(mode="json"))
    results.write_status(run_dir, results.STATUS_RUNNING)
    say = (lambda *a: None) if quiet else print
    say(f"capgym train: {cfg.experiment} ({cfg.env.id}, {cfg.learner.backend}) -> {run_dir}")
    batch = cfg.ppo.batch_steps
    if cfg.ppo.total_steps % batch:  # whole iterations only: say what will be trained
        its = -(-cfg.ppo.total_steps // batch)
        say(f"capgym train: note: ppo.total_steps={cfg.ppo.total_steps} is not a multiple of num_envs x num_steps "
            f"= {batch}: {its} iterations, {its * batch} env steps")
    rows: list[dict] = []

    def on_iteration(row: dict) -> None:
        rows.append(row)
        results.write_csv(run_dir / "metrics.csv", table_rows(rows))
        results.write_status(run_dir, results.STATUS_RUNNING, iteration=row["iteration"], env_steps=row["env_steps"])
        if hook is not None:
            hook({**row, "run_dir": str(run_dir)})

    stop = StopFlag()
    progress = cfg.output.progress and not quiet
    try:
        with stop:
            if cfg.learner.backend == "rllib":  # RLlib's PPO; its own checkpoint beside capgym's weights
                from agents.learn import rllib_ppo

                trained = rllib_ppo.train(cfg.train_config(), on_iteration, stop, progress=progress,
                                          native=run_dir / "checkpoint" / "rllib")
            else:
                trained = train(cfg.train_config(), on_iteration, stop, progress=progress)
        checkpoint.save(run_dir / "checkpoint", trained)
    except KeyboardInterrupt:
        results.write_status(run_dir, results.STATUS_INTERRUPTED)
        return run_dir, 130
    except Exception as e:
        results.write_text(run_dir / "error.txt", traceback.format_exc())
        results.write_status(run_dir, results.STATUS_FAILED, error=f"{type(e).__name__}: {e}")
        print(f"capgym train: failed: {type(e).__name__}: {e} (traceback in {run_dir / 'error.txt'})", file=sys.stderr)
        return run_dir, 1
    last = {}
    for r in rows:  # the last value of each figure (some iterations have no finished episode)
        last.update(r)
    summary = {"experiment": cfg.experiment, "env": cfg.env.id, "env_steps": trained.env_steps,
               "seconds": round(trained.seconds, 2), "sps": round(trained.env_steps / max(trained.seconds, 1e-9), 1),
               "iterations": len(rows), "agents": trained.agents, "last": last,
               "checkpoint": "checkpoint", "interrupted": trained.interrupted}
    results.write_json(run_dir / "summary.json", summary)
    paths: list[Path] = []
    if cfg.output.plots and rows:
        (run_dir / "plots").mkdir(exist_ok=True)
        curves = {a: [r.get(f"return/{a}") for r in rows if f"return/{a}" in r] for a in trained.agents}
        paths.append(plots.rewards(run_dir / "plots" / "returns.png", curves, xlabel="iteration"))
    wandb_dir = log_wandb(cfg, run_dir, rows, summary, paths)
    status = results.STATUS_INTERRUPTED if trained.interrupted else results.STATUS_COMPLETE
    results.write_status(run_dir, status, env_steps=trained.env_steps,
                         wandb=str(wandb_dir.relative_to(run_dir.resolve())) if wandb_dir else None)
    if cfg.output.report != "none":
        from experiments import html_report

        html_report.write(run_dir, "train", light=cfg.output.report == "light")
    say(f"trained {trained.env_steps} env steps in {trained.seconds:.1f} s ({summary['sps']} steps/s); "
        f"mean return {last.get('return_mean', float('nan')):.3f}")
    say(f"results: {run_dir}  (metrics.csv, summary.json, checkpoint/, report.html)")
    return run_dir, 130 if trained.interrupted else 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config, args.overrides)  # a UserError is one line, exit 2 (cli.main)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    return execute(cfg, quiet=args.quiet)[1]


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train PPO agents on an environment",
                              description=__doc__.splitlines()[0], epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="a training config, e.g. configs/train/register.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a config key (value parsed as YAML)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_train)
