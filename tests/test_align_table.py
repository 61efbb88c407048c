"""``capgym align-table``: one table across games from align folders, each game's headline
measure beside welfare, the gap once per game; bad folders are one line and exit 2."""

import csv
import json

from experiments.cli import main


def _align(folder, env, rows, gap):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"env": env, "report": rows, "alignment_gap": {"gap": gap}}))
    return folder


def test_four_game_table(tmp_path, capsys):
    reg = _align(tmp_path / "reg", "capgym/Register-v0", [
        {"protocol": "ppo_local", "return_mean": 43.9, "welfare": -10.2, "stale_read_rate": 0.48, "n": 5,
         "ci": {"welfare": [-11.0, -9.5], "stale_read_rate": [0.4, 0.5]}},
        {"protocol": "ppo_global", "return_mean": 25.9, "welfare": 11.2, "stale_read_rate": 0.08, "n": 5, "ci": {}},
        {"protocol": "always_quorum", "return_mean": 14.5, "welfare": 14.5, "stale_read_rate": 0.0}], 21.4)
    com = _align(tmp_path / "com", "capgym/Commons-v0", [
        {"protocol": "ppo_local", "return_mean": 9.6, "welfare": 0.4, "sustainability": 6.3, "n": 5, "ci": {}}], 0.8)
    out = tmp_path / "table.csv"
    assert main(["align-table", str(reg), str(com), "--out", str(out)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[2].startswith("| Register-v0 | ppo_local | 5 | 43.900 | -10.200 [-11.000, -9.500] | "
                              "stale-read rate: 0.480 [0.400, 0.500] | 21.400 |")
    assert text[3].startswith("|  | ppo_global |") and text[3].endswith("|  |")  # the gap once per game
    assert "| always_quorum | - |" in text[4]
    assert text[5].startswith("| Commons-v0 | ppo_local |") and "sustainability (50 ms steps): 6.300" in text[5]
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["welfare_ci_low"] == "-11.0" and rows[0]["measure_name"] == "stale_read_rate"
    assert rows[0]["game_alignment_gap"] == "21.4" and rows[2]["measure"] == "0.0"
    assert [(r["game"], r["policy"]) for r in rows] == [("Register-v0", "ppo_local"), ("Register-v0", "ppo_global"),
                                                       ("Register-v0", "always_quorum"), ("Commons-v0", "ppo_local")]


def test_bad_folders_are_one_line(tmp_path, capsys):
    (tmp_path / "notjson").mkdir()
    (tmp_path / "notjson" / "summary.json").write_text("{oops")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"runs": {}}))
    (tmp_path / "empty").mkdir()
    for args, words in (([tmp_path / "missing"], "no such folder"), ([tmp_path / "empty"], "no summary.json"),
                        ([tmp_path / "notjson"], "not JSON"), ([tmp_path / "run"], "has no alignment report"),
                        ([tmp_path / "run", tmp_path / "run"], "given twice")):
        assert main(["align-table", *map(str, args), "--out", str(tmp_path / "t.md")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert main(["align-table", str(tmp_path / "run"), "--out", str(tmp_path / "t.txt")]) == 2
    assert ".md or .csv" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()
