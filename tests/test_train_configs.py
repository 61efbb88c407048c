"""Every shipped training and align config validates as its command would read it (so a typo in a
config fails here, not in a researcher's 20-minute run), and Commons-v0's trains end to end."""

from pathlib import Path

import pytest

from experiments import align_cmd
from experiments.cli import main
from experiments.train_cmd import load_train_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_training_configs_validate(path):
    if "align:" in path.read_text():
        cfg, acfg = align_cmd.load(path, [])
        assert acfg.seeds >= 5, "the alignment report's intervals are over at least 5 training seeds"
    else:
        cfg = load_train_config(path)
    assert cfg.ppo.total_steps <= 300_000  # the budget per training


def test_commons_trains_from_its_config(tmp_path):
    rc = main(["train", str(ROOT / "configs/train/commons.yaml"), "ppo.total_steps=1024", "wandb.mode=disabled",
               f"output.root={tmp_path}", "output.plots=false", "output.progress=false"])
    assert rc == 0
    (run,) = (tmp_path / "train-commons").iterdir()
    assert (run / "checkpoint" / "meta.json").is_file()
