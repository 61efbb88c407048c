"""``ray.address``: capgym run (live) and capgym train (Ray learners) against a real Ray cluster.

A Ray head starts here as its own process (``ray start --head --block``, 2 CPUs, no dashboard, free
ports, its own temp dir, its own process group), as a user would start one; the CLI then runs as a
subprocess with ``ray.address=127.0.0.1:<port>``. That the run really used the cluster is read
from the cluster itself: its GCS lists the finished driver job (the capgym command line) and the
actors that job created (``NodeActor`` for live nodes, ``PPOLearner`` for learners).

The head asks for token authentication (Ray's default for ``ray start``): the test gives it a fresh
token through ``RAY_AUTH_TOKEN`` and the CLI ``RAY_AUTH_MODE=token`` with the same token, so
nothing under ``~/.ray`` is read or written. Teardown kills the head's process group only (never
``ray stop``, which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray")

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
#: seconds the head may take to come up on a loaded 2-core machine
HEAD_START_S = 120
#: seconds one CLI command may take
CLI_TIMEOUT_S = 240

#: 5 nodes, node 0 cut off from 200 to 700 ms of a 1 s run, one protocol (short: real time)
LIVE = {
    "defaults": ["base", "world/small", "workload/register"],
    "experiment": "cluster",
    "seed": 3,
    "runtime": "live",
    "world": {"duration_ms": 1000},
    "nemesis": {"schedule": [{"at_ms": 200, "fault": "partition", "groups": [[0], [1, 2, 3, 4]]},
                             {"at_ms": 700, "fault": "heal"}]},
    "workload": {"timeout_ms": 1000, "think_ms": 10},
    "compare": [{"name": "abd"}],
    "wandb": {"mode": "disabled"},
    "output": {"progress": False, "plots": False},
}

#: a snippet run in a fresh process: the cluster's jobs and actors, read from its GCS as JSON
STATE = """
import json, sys, ray
from ray._private import state
ray.init(address=sys.argv[1], log_to_driver=False)
jobs = [{"job": j["JobID"], "dead": bool(j["IsDead"]), "entrypoint": j.get("Entrypoint", "")} for j in state.jobs()]
actors = [{"cls": a["ActorClassName"], "job": a["JobID"], "node": a["Address"]["NodeID"]}
          for a in state.actors().values()]
print(json.dumps({"nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]], "jobs": jobs, "actors": actors}))
"""


def free_ports(k: int) -> list[int]:
    """``k`` distinct TCP ports that are free right now (bound together, then released)."""
    socks = []
    try:
        for _ in range(k):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Head:
    """A Ray head node in its own process group; ``address`` is what ``ray.address`` takes."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="capgym-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.token = secrets.token_hex(32)
        gcs, node_manager, object_manager, agent_http, agent_grpc, metrics, runtime_env = free_ports(7)
        self.address = f"127.0.0.1:{gcs}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
        self.env = dict(env, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token)
        self.log = self.dir / "head.log"
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--num-cpus", "2",
               "--include-dashboard=false", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
               "--port", str(gcs), "--node-manager-port", str(node_manager),
               "--object-manager-port", str(object_manager), "--dashboard-agent-listen-port", str(agent_http),
               "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
               "--runtime-env-agent-port", str(runtime_env), "--temp-dir", str(self.dir / "ray")]
        with open(self.log, "w") as out:
            # its own session (process group): teardown kills the head and every process it started
            self.proc = subprocess.Popen(cmd, cwd=self.dir, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout: float = HEAD_START_S) -> None:
        """Until ``ray start`` says the runtime started and the GCS port accepts connections."""
        host, port = self.address.split(":")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"ray start --head exited with {self.proc.returncode}:\n{self.tail()}")
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                try:
                    socket.create_connection((host, int(port)), timeout=2).close()
                    return
                except OSError:
                    pass
            time.sleep(0.5)
        pytest.fail(f"the Ray head did not come up at {self.address} within {timeout:g} s:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def state(self) -> dict:
        """The cluster's live nodes, its jobs and every actor it has run (dead ones too)."""
        out = subprocess.run([sys.executable, "-c", STATE, self.address], env=self.env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        """SIGKILL to the head's process group: ``ray start``, the GCS, the raylet, its workers
        (a SIGTERM makes the node drain for up to 30 s first; the cluster's state is thrown away)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def head():
    h = Head()
    try:
        h.wait_ready()
        yield h
    finally:
        h.stop()


def capgym(head: Head, *args: str, auth: bool = True) -> subprocess.CompletedProcess:
    """The ``capgym`` command as a user runs it against the cluster (the head's token when ``auth``)."""
    env = dict(head.env, PYTHONPATH=str(ROOT))
    if not auth:
        env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def job_of(state: dict, command: str) -> str:
    """The id of the one finished driver job whose command line contains ``command``."""
    jobs = [j for j in state["jobs"] if command in j["entrypoint"]]
    assert len(jobs) == 1, state["jobs"]
    assert jobs[0]["dead"], jobs[0]  # the driver disconnected when the command ended
    return jobs[0]["job"]


def test_capgym_run_live_on_the_cluster(head: Head, tmp_path: Path):
    cfg = dict(LIVE, output=dict(LIVE["output"], root=str(tmp_path / "results")))
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = capgym(head, "run", str(path), "runtime=live", f"ray.address={head.address}", "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (tmp_path / "results" / "cluster").iterdir()

    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["runtime"] == "live" and summary["completed"] == ["abd"]
    r = summary["runs"]["abd"]
    history = (run / "abd" / "history.jsonl").read_text().splitlines()
    assert r["ops"] > 10 and len(history) == r["ops"] and r["partitions"] == 1, r
    assert r["linearizable"] is True and r["counts"]["ok"] > 0

    # the nodes ran as actors of this cluster, created by the capgym driver: 5 nodes (plus spares)
    state = head.state()
    job = job_of(state, f"run {path}")
    nodes = [a for a in state["actors"] if a["cls"] == "NodeActor" and a["job"] == job]
    assert len(nodes) >= 5, state["actors"]
    assert {a["node"] for a in nodes} <= set(state["nodes"]) and len(state["nodes"]) == 1


@pytest.mark.slow  # with the live test it would take the Ray group past ~40 s on a 2-core machine
def test_capgym_train_ray_learners_on_the_cluster(head: Head, tmp_path: Path):
    root = tmp_path / "res"
    out = capgym(head, "train", "configs/train/register.yaml", "learner.backend=ray",
                 f"ray.address={head.address}", "env.params.nodes=3", "env.params.duration_ms=500",
                 "ppo.total_steps=256", "ppo.num_envs=2", "ppo.num_steps=64", f"output.root={root}",
                 "output.plots=false", "wandb.mode=disabled", "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (root / "train-register").iterdir()
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 256 and summary["agents"] == ["node_0", "node_1", "node_2"]
    assert summary["iterations"] == 2 and (run / "metrics.csv").read_text().count("\n") == 3
    assert all((run / "checkpoint" / f"{a}.pt").is_file() for a in summary["agents"])

    # one learner actor per agent, created on this cluster by the capgym train driver
    state = head.state()
    job = job_of(state, f"ray.address={head.address} env.params.nodes=3")
    learners = [a for a in state["actors"] if a["cls"] == "PPOLearner" and a["job"] == job]
    assert len(learners) == 3, state["actors"]


@pytest.mark.slow
def test_explicit_address_without_token_is_one_line(head: Head, tmp_path: Path):
    """Without ``RAY_AUTH_MODE=token`` Ray does not send the token to an explicit address: the run
    stops with exit 2 and one capgym line that names the setting (Ray's own retries log above it)."""
    cfg = dict(LIVE, output=dict(LIVE["output"], root=str(tmp_path / "results")))
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = capgym(head, "run", str(path), f"ray.address={head.address}", "-q", auth=False)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("capgym run: error: ray.address:") and "RAY_AUTH_MODE=token" in last, last


@pytest.mark.slow
def test_train_on_an_unreachable_cluster_is_one_line_and_writes_nothing(head: Head, tmp_path: Path):
    """``capgym train`` reaches the cluster before it makes a results folder: without the token it
    stops with exit 2 and one capgym line, and nothing is written."""
    root = tmp_path / "res"
    out = capgym(head, "train", "configs/train/register.yaml", "learner.backend=ray",
                 f"ray.address={head.address}", f"output.root={root}", "wandb.mode=disabled", "-q", auth=False)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("capgym train: error: ray.address:") and "RAY_AUTH_MODE=token" in last, last
    assert not root.exists() or not any(root.rglob("*"))


def test_capgym_train_ray_learners_on_a_local_instance(tmp_path: Path):
    """Without an address, ``learner.backend=ray`` starts a local Ray instance (no head needed)."""
    root = tmp_path / "res"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "train", "configs/train/register.yaml",
                          "learner.backend=ray", "env.params.nodes=3", "env.params.duration_ms=500",
                          "ppo.total_steps=256", "ppo.num_envs=2", "ppo.num_steps=64", f"output.root={root}",
                          "output.plots=false", "wandb.mode=disabled", "-q"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (root / "train-register").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 256 and len(summary["agents"]) == 3
    assert all((run / "checkpoint" / f"{a}.pt").is_file() for a in summary["agents"])


#: a 2x2 sweep of 300 ms echo runs (the grid point x seed trials of capgym sweep)
def sweep_file(tmp_path: Path) -> Path:
    path = tmp_path / "csweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "csweep", "base": "configs/echo.yaml",
        "set": {"world.duration_ms": 300, "wandb.mode": "disabled", "output.root": str(tmp_path / "results"),
                "output.shiviz": False, "output.plots": False},
        "grid": {"world.nodes": [3, 5]}, "seeds": 2}))
    return path


@pytest.mark.slow  # ~30 s more for the Ray group on a 2-core machine
def test_capgym_sweep_on_the_cluster(head: Head, tmp_path: Path):
    """``capgym sweep --address``: the 4 Tune trials run as actors of the cluster's sweep job, and
    their folders come back by value (a tar.gz each, through the sweep's collector actor) into the
    sweep folder here."""
    path = sweep_file(tmp_path)
    out = capgym(head, "sweep", str(path), "--jobs", "2", "--address", head.address, "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    (folder,) = (tmp_path / "results" / "csweep").iterdir()
    assert json.loads((folder / "status.json").read_text())["status"] == "complete"
    records = [json.loads(p.read_text()) for p in sorted((folder / "trials").glob("*.json"))]
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    state = head.state()
    for r in records:  # each folder came back whole, and its trial ran on a node of this cluster
        run = Path(r["run_dir"])
        assert run.parent == folder / "runs" and r["rc"] == 0 and r["node"] in state["nodes"]
        assert json.loads((run / "summary.json").read_text())["runs"]["echo"]["ops"] > 0
        assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert len(list((folder / "runs").iterdir())) == 4
    job = job_of(state, f"sweep {path}")
    mine = [a["cls"] for a in state["actors"] if a["job"] == job]
    assert "Collector" in mine and len([c for c in mine if c != "Collector"]) >= 1, mine


@pytest.mark.slow
def test_sweep_on_an_unreachable_cluster_is_one_line_and_writes_nothing(head: Head, tmp_path: Path):
    path = sweep_file(tmp_path)
    out = capgym(head, "sweep", str(path), f"ray.address={head.address}", "-q", auth=False)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("capgym sweep: error: ray.address:"), last
    assert not (tmp_path / "results").exists()
