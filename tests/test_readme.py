"""The README stays true: its annotated config validates, and every command it lists exists."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_annotated_config_in_the_readme_validates(tmp_path):
    from experiments.config import load_config

    start = README.index("## Configs")
    block = re.search(r"```yaml\n(.*?)```", README[start:], re.S).group(1)
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.protocol.name == "raft" and cfg.world.nodes == 5 and len(cfg.nemesis.schedule) == 5


def test_every_command_in_the_readme_is_a_capgym_command():
    listed = set(re.findall(r"^capgym (\w+)", README, re.M))
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "--help"], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    known = set(re.findall(r"^\s+(\w+)\s", out.stdout.split("positional arguments:")[1], re.M))
    assert {"run", "check", "report", "list", "train", "evaluate", "align", "sweep", "reproduce"} <= listed
    assert listed <= known | {"COMMAND"}, listed - known
