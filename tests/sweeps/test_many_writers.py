"""Many writers, one remote: 8 worker processes, each with its own clone, run 50 Optuna trials each
of one study (shared through Optuna's journal storage), log them with gitml.optuna.Callback and push
after every 10 trials, all at once, to one bare remote served by ``git daemon`` (git://) or by
``git http-backend`` behind an HTTP server on loopback. Nothing is lost: every trial arrives once,
under the study's one parent run, ``git fsck`` finds the remote clean, and a ``gitml pull`` into a
fresh clone shows all 400 trials."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, git
from tests.store.test_http_backend import http_backend
from tests.store.test_remote import git_daemon

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WORKERS, TRIALS, ROUND = 8, 50, 10

WORKER = r"""
import json, sys
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
import gitml, gitml.optuna
from gitml import sync

url, journal, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
trials, per_round = int(sys.argv[4]), int(sys.argv[5])
optuna.logging.set_verbosity(optuna.logging.WARNING)
client = gitml.Client(".")
fetched = sync.fetch(client, url)            # the study's run and experiment, made by the coordinator
study = optuna.load_study(study_name="sweep", storage=JournalStorage(JournalFileBackend(journal)))
callback = gitml.optuna.Callback(client=client, tags={"worker": str(worker)})

def objective(trial):
    x = trial.suggest_float("x", -5, 5)
    for step in range(3):
        trial.report(x * x + step, step)
    return x * x

pushes = []
for _ in range(trials // per_round):
    study.optimize(objective, n_trials=per_round, callbacks=[callback])
    result = sync.push(client, url)
    pushes.append({"pushed": len(result.pushed), "rejected": result.rejected, "notes": result.notes})
client.close()
print(json.dumps(pushes))
"""


@contextlib.contextmanager
def served(transport: str, base):
    if transport == "git":
        with git_daemon(base) as port:
            yield f"git://127.0.0.1:{port}/team.git"
    else:
        with http_backend(base) as (url, _):
            yield f"{url}/team.git"


def _gitml(*args, cwd) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "gitml", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("transport", ["git", "http"])
def test_eight_workers_push_400_trials_to_one_remote_at_once(repo, tmp_path, transport):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    import gitml
    import gitml.optuna
    from gitml import sync
    from gitml.sweeps import TRIAL_TAG

    base = tmp_path / "served"
    base.mkdir()
    git(base, "init", "-q", "--bare", "team.git")
    git(base / "team.git", "config", "http.receivepack", "true")
    git(repo, "push", "-q", str(base / "team.git"), "main")
    journal = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="sweep", storage=JournalStorage(JournalFileBackend(journal)))

    with served(transport, base) as url:
        coordinator = gitml.Client(repo)
        parent = gitml.optuna.Callback(client=coordinator).study_run(study)
        assert not sync.push(coordinator, url).rejected
        procs = []
        for i in range(WORKERS):
            clone = tmp_path / f"worker{i}"
            git(tmp_path, "clone", "-q", url, str(clone))
            env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, url, journal, str(i), str(TRIALS), str(ROUND)],
                    cwd=clone,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=800)
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        # every push went through whole: each worker's 5 pushes sent its 10 new trials, none refused
        for report in reports:
            assert [p["pushed"] for p in report] == [ROUND] * (TRIALS // ROUND), report
            assert all(not p["rejected"] for p in report), report

        assert "error" not in git(base / "team.git", "fsck", "--no-progress", "--strict").lower()
        run_refs = git(base / "team.git", "for-each-ref", "--format=%(refname)", "refs/gitml/runs/").split()
        assert len(run_refs) == len(set(run_refs)) == WORKERS * TRIALS + 1

        # a fresh clone pulls them all: 400 trials under the one study run, each trial number once
        fresh = tmp_path / "fresh"
        git(tmp_path, "clone", "-q", url, str(fresh))
        _gitml("pull", url, cwd=fresh)
        client = gitml.Client(fresh)
        experiment = client.get_experiment_by_name("sweep")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        trials = [r for r in runs if TRIAL_TAG in r.data.tags]
        assert len(trials) == WORKERS * TRIALS
        assert sorted(int(r.data.tags[TRIAL_TAG]) for r in trials) == list(range(WORKERS * TRIALS))
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent}
        assert {r.data.tags["worker"] for r in trials} == {str(i) for i in range(WORKERS)}
        assert all(len(client.get_metric_history(r.info.run_id, "intermediate_value")) == 3 for r in trials[:20])
        assert [r.info.run_id for r in runs if TRIAL_TAG not in r.data.tags] == [parent]

        # the coordinator pulls, ends the study's run with its best trial, and pushes that too
        sync.fetch(coordinator, url, artifacts=True)
        gitml.optuna.Callback(client=coordinator).finish(study)
        assert not sync.push(coordinator, url).rejected
        sync.fetch(client, url)
        assert client.get_run(parent).info.status == "FINISHED"
        assert client.get_run(parent).data.tags["optuna.best_trial"] == str(study.best_trial.number)
        coordinator.close()
        client.close()
