"""MLflow stores made by MLflow 3.17.2 itself (in its venv), for the import/export tests and benchmark.

``MAKE_STORE`` is a script run by MLflow's Python: ``python -c MAKE_STORE URI RUNS CODE_COMMIT``
fills the tracking store at URI with what ``gitml import mlflow`` must bring: experiments
with tags (one deleted), runs with params, tags, every status, pinned start/end times,
nested runs, a deleted run, dataset inputs, metric histories with steps and timestamps,
artifacts (some identical across runs, one binary), a logged model, and a registry
(versions, a stage, an alias, tags, descriptions, a deleted version). ``CODE_COMMIT`` is
recorded as ``mlflow.source.git.commit`` of the first run (the rest record a commit no
repository has). It prints the ids it made as JSON.

``READ_STORE`` prints (as JSON) what ``mlflow.search_runs`` and ``get_metric_history`` read
from a tracking URI: the differential tests compare it with what gitml holds.
"""

from __future__ import annotations

MAKE_STORE = r"""
import json, os, sys
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

uri, n_runs, code = sys.argv[1], int(sys.argv[2]), sys.argv[3]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 20
mlflow.set_tracking_uri(uri)
mlflow.set_registry_uri(uri)
c = MlflowClient()
T0 = 1_700_000_000_000
churn = c.create_experiment("churn", tags={"team": "ml", "note": "first"})
vision = c.create_experiment("vision")
old = c.create_experiment("old-stuff")
out = {"experiments": {"churn": churn, "vision": vision, "old": old}, "runs": []}
statuses = ["FINISHED", "FAILED", "KILLED", "FINISHED", "RUNNING"]
parent = None
work = os.path.join(os.getcwd(), "artifacts-src")
os.makedirs(work, exist_ok=True)
shared = os.path.join(work, "shared.bin")
with open(shared, "wb") as f:
    f.write(bytes(range(256)) * 64)  # 16 KiB, the same in every run: stored once
for i in range(n_runs):
    exp = [churn, vision, "0"][i % 3]
    tags = {"mlflow.source.git.commit": code if i == 0 else "%040x" % (i + 1), "mlflow.source.name": "train.py",
            "mlflow.source.type": "LOCAL", "mlflow.user": "alice" if i % 2 else "bob", "kind": "k%d" % (i % 4)}
    if parent is not None and i % 5 == 1:
        tags["mlflow.parentRunId"] = parent
    run = c.create_run(exp, start_time=T0 + i * 1000, tags=tags, run_name="run-%03d" % i)
    rid = run.info.run_id
    if i % 5 == 0:
        parent = rid
    c.log_batch(rid, params=[Param("lr", str(0.1 / (i + 1))), Param("layers", str(i % 4)), Param("opt", "adam")])
    metrics = [Metric("loss", 1.0 / (s + 1 + i), T0 + i * 1000 + s * 10, s) for s in range(steps)]
    metrics += [Metric("acc", 0.5 + s / (2.0 * steps), T0 + i * 1000 + s * 10 + 5, s) for s in range(0, steps, 2)]
    # two points, one step
    metrics += [Metric("val/auc", 0.9, T0 + i * 1000, 0), Metric("val/auc", 0.8, T0 + i * 1000 + 1, 0)]
    if i % 7 == 3:
        metrics.append(Metric("weird", float("nan"), T0, 0))
    c.log_batch(rid, metrics=metrics, tags=[RunTag("mlflow.note.content", "run %d notes" % i)])
    if i % 3 == 0:
        import pandas as pd
        frame = pd.DataFrame({"x": [1, 2, i], "y": [0, 1, 0]})
        ds = mlflow.data.from_pandas(frame, name="train", source="s3://bucket/train.csv")
        with mlflow.start_run(run_id=rid):
            mlflow.log_input(ds, context="training", tags={"split": "a"})
    c.log_text(rid, "hello %d" % i, "notes/readme.txt")
    c.log_dict(rid, {"i": i, "lr": 0.1}, "cfg/config.json")
    c.log_artifact(rid, shared, "data")
    status = statuses[i % len(statuses)]
    if status != "RUNNING":
        c.set_terminated(rid, status, end_time=T0 + i * 1000 + 500)
    out["runs"].append(rid)
deleted = c.create_run(vision, start_time=T0 - 5, run_name="deleted-one", tags={"mlflow.user": "bob"})
c.log_param(deleted.info.run_id, "p", "1")
c.set_terminated(deleted.info.run_id, "FINISHED", end_time=T0)
c.delete_run(deleted.info.run_id)
out["deleted_run"] = deleted.info.run_id
gone = c.create_run(old, start_time=T0, run_name="in-deleted-experiment", tags={"mlflow.user": "bob"})
c.set_terminated(gone.info.run_id, "FINISHED", end_time=T0 + 1)
c.delete_experiment(old)

# a logged model (MLflow 3: files apart from the run's), registered twice, a stage and an alias
import mlflow.pyfunc

class Add(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input + 1

with mlflow.start_run(run_id=out["runs"][0]):
    info = mlflow.pyfunc.log_model(name="model", python_model=Add(), pip_requirements=["pandas"])
with mlflow.start_run(run_id=out["runs"][3]):
    other = mlflow.pyfunc.log_model(name="scorer", python_model=Add(), pip_requirements=["pandas"])
out["model_ids"] = [info.model_id, other.model_id]
c.create_registered_model("churn-model", tags={"owner": "ml"}, description="predicts churn")
v1 = mlflow.register_model(info.model_uri, "churn-model")
c.update_model_version("churn-model", v1.version, description="first")
# a second version on the same run: gitml (as GTO) tells versions apart by commit, so it is skipped
v2 = c.create_model_version("churn-model", "runs:/%s/model" % out["runs"][0], run_id=out["runs"][0], tags={"t": "1"})
v3 = mlflow.register_model(other.model_uri, "churn-model")
v4 = mlflow.register_model("runs:/%s/scorer" % out["runs"][3], "churn-model")
c.delete_model_version("churn-model", v4.version)
c.transition_model_version_stage("churn-model", v1.version, "Production")
c.set_registered_model_alias("churn-model", "champion", v3.version)
out["versions"] = [v1.version, v2.version, v3.version]
print(json.dumps(out))
"""

READ_STORE = r"""
import json, math, os, sys
import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

uri = sys.argv[1]
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
c = MlflowClient(uri, registry_uri=uri)
def num(v):
    return "nan" if isinstance(v, float) and math.isnan(v) else v
runs = {}
for e in c.search_experiments(view_type=ViewType.ALL):
    for view in (ViewType.ALL,):
        for r in c.search_runs([e.experiment_id], run_view_type=view, max_results=50000):
            i = r.info
            runs[i.run_id] = {
                "experiment": e.name, "name": i.run_name, "status": i.status, "start": i.start_time, "end": i.end_time,
                "user": i.user_id, "stage": i.lifecycle_stage, "params": r.data.params, "tags": r.data.tags,
                "metrics": {k: num(v) for k, v in r.data.metrics.items()},
                "history": {k: [[m.step, m.timestamp, num(m.value)] for m in c.get_metric_history(i.run_id, k)]
                            for k in r.data.metrics},
                "inputs": sorted([d.dataset.name, d.dataset.digest, d.dataset.source,
                                  sorted((t.key, t.value) for t in d.tags)] for d in r.inputs.dataset_inputs),
            }
import hashlib, tempfile
def files(run_id, path=None):
    out = {}
    for f in c.list_artifacts(run_id, path):
        out.update(files(run_id, f.path) if f.is_dir else {f.path: f.file_size})
    return out
for run_id, r in runs.items():
    listed = files(run_id)
    r["artifacts"] = {}
    if listed:
        root = c.download_artifacts(run_id, "", tempfile.mkdtemp())
        r["artifacts"] = {p: hashlib.sha256(open(os.path.join(root, p), "rb").read()).hexdigest() for p in listed}
frames = {}
mlflow.set_tracking_uri(uri)
for e in c.search_experiments(view_type=ViewType.ALL):
    frame = mlflow.search_runs([e.experiment_id], run_view_type=ViewType.ALL)
    keep = [k for k in frame.columns if k.startswith(("params.", "metrics.", "tags.")) or k in ("run_id", "status")]
    frames[e.name] = json.loads(frame[keep].to_json(orient="records"))
registry = {}
for rm in c.search_registered_models():
    versions = sorted(c.search_model_versions("name = '%s'" % rm.name), key=lambda v: int(v.version))
    registry[rm.name] = {"aliases": {k: str(v) for k, v in rm.aliases.items()}, "description": rm.description or "",
                         "tags": dict(rm.tags), "versions": {
        v.version: {"run_id": v.run_id, "stage": v.current_stage, "description": v.description or ""}
        for v in versions}}
print(json.dumps({"runs": runs, "frames": frames, "registry": registry,
                  "experiments": {e.name: {"tags": e.tags, "stage": e.lifecycle_stage}
                                  for e in c.search_experiments(view_type=ViewType.ALL)}}))
"""
