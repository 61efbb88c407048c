"""A Byzantine run's cost is the correct nodes' messages, whatever the trace's format: the streamed
columnar trace (counted column by column) and the in-memory trace (counted event by event) give
the same ``messages`` and ``messages_by_type``, and the liars' own sends are reported apart."""

import pytest

import capgym


@pytest.mark.parametrize("config", ["configs/byzantine_raft.yaml", "configs/pbft_byzantine.yaml"])
def test_message_counts_leave_out_the_liars_in_both_trace_formats(tmp_path, config):
    runs = {}
    for trace in (True, False):
        run = capgym.run(config, {"output.root": str(tmp_path / str(trace)), "output.plots": False,
                                                "output.shiviz": False, "output.trace": trace,
                                                "world.duration_ms": 2000})
        assert run.status == 0
        runs[trace] = run.summary["runs"]
    for label, on_file in runs[True].items():
        in_memory = runs[False][label]
        if not on_file.get("byzantine"):
            continue
        assert on_file["messages"] == in_memory["messages"] > 0, label
        assert on_file["messages_by_type"] == in_memory["messages_by_type"], label
        assert on_file["byzantine"]["messages_sent"] == in_memory["byzantine"]["messages_sent"] > 0, label
        assert on_file["messages_per_op"] == pytest.approx(in_memory["messages_per_op"])


def test_the_run_table_shows_log_conflicts_when_a_node_lies(tmp_path):
    """The one-liar comparison's table says which protocol's correct replicas disagreed."""
    from experiments import runner

    run = capgym.run("configs/byzantine_raft.yaml", {"output.root": str(tmp_path), "output.plots": False,
                                                      "output.shiviz": False})
    table = runner.format_table(run.summary["table"]).splitlines()
    assert table[0].split()[-3:] == ["log", "conflicts", "Byzantine"]
    cells = {line.split()[0]: line.split() for line in table[2:]}
    assert int(cells["raft"][-2]) > 0 and cells["pbft"][-2] == "0"  # Raft trusts the liar; PBFT does not
    assert cells["raft"][-1] == cells["pbft"][-1] == "1"
    plain = capgym.run("configs/raft.yaml", {"output.root": str(tmp_path), "output.plots": False,
                                              "output.shiviz": False, "world.duration_ms": 1000})
    assert "conflicts" not in runner.format_table(plain.summary["table"])  # no liar, no conflict: no column
