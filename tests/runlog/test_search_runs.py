"""Client.search_runs builds its Run objects from the search index's rows (issue 12, W3)."""

import pytest

import gitml
from gitml.runlog.record import RunRecord


@pytest.fixture
def logged(client):
    experiment = client.create_experiment("w3")
    ids = []
    for i in range(6):
        run = client.create_run(experiment, run_name=f"r{i}", tags={"t": str(i)})
        client.log_batch(
            run.info.run_id,
            metrics=[("m", i / 10, 1_700_000_000_000 + i, i * 3), ("n", float("nan"), 5, 7)],
            params=[("p", f"v{i}")],
        )
        if i == 4:  # a run with dataset inputs: its Run's inputs come from its record
            client.log_inputs(
                run.info.run_id, [gitml.data.from_numpy(__import__("numpy").arange(3), name="d")], context="train"
            )
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return experiment, ids


def _same(a, b):
    assert vars(a.info) == vars(b.info)
    assert a.data.params == b.data.params and a.data.tags == b.data.tags
    assert a.data.metrics.keys() == b.data.metrics.keys()
    assert {k: (m.step, m.timestamp) for k, m in a.data.latest_metrics.items()} == {
        k: (m.step, m.timestamp) for k, m in b.data.latest_metrics.items()
    }
    assert vars(a.source) == vars(b.source)
    assert [
        (d.dataset.name, d.dataset.digest, [(t.key, t.value) for t in d.tags]) for d in a.inputs.dataset_inputs
    ] == [(d.dataset.name, d.dataset.digest, [(t.key, t.value) for t in d.tags]) for d in b.inputs.dataset_inputs]


def test_search_runs_gives_what_get_run_gives(client, logged):
    experiment, ids = logged
    found = client.search_runs([experiment], order_by=["params.p"])
    assert [r.info.run_id for r in found] == ids
    for run in found:
        _same(run, client.get_run(run.info.run_id))
    assert found[4].inputs.dataset_inputs and not found[3].inputs.dataset_inputs


def test_search_runs_reads_no_record_the_index_has_a_row_of(client, logged, monkeypatch):
    experiment, ids = logged
    client.search_runs([experiment])  # the index holds every row now
    loads = []
    original = RunRecord.load.__func__

    def counting(cls, store, commit, what, **kw):
        loads.append(what)
        return original(cls, store, commit, what, **kw)

    monkeypatch.setattr(RunRecord, "load", classmethod(counting))
    found = client.search_runs([experiment], order_by=["params.p"])
    assert len(found) == 6
    assert loads == [f"run {ids[4]}"]  # only the run with dataset inputs


def test_a_run_changed_after_the_search_is_not_changed_in_the_index(client, logged):
    experiment, ids = logged
    first = client.search_runs([experiment], order_by=["params.p"])
    first[0].data.params["p"] = "changed"
    first[0].data.tags["t"] = "changed"
    again = client.search_runs([experiment], order_by=["params.p"])
    assert again[0].data.params["p"] == "v0" and again[0].data.tags["t"] == "0"
