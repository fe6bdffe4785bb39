"""Autologging for PyTorch Lightning (``lightning.Trainer.fit``; ``pytorch_lightning``'s too
when it is imported), as ``mlflow.pytorch.autolog`` (3.17) logs it: when training starts the
params ``epochs`` (``max_epochs``), ``optimizer_name`` and the first optimizer's defaults
(``lr``, ``momentum``...) and the tag ``Mode: training``; an ``EarlyStopping``'s ``monitor``,
``mode``, ``patience``, ``min_delta``, ``stopped_epoch`` as params and, when it stopped,
``stopped_epoch``, ``restored_epoch``, ``best_score``, ``wait_count`` as metrics; at each
epoch's end every metric in ``trainer.callback_metrics`` (what ``self.log`` recorded, training
and validation) at step ``epoch``; the best checkpoint by ``checkpoint_monitor``
(``val_loss``, ``min``) under ``checkpoints/latest_checkpoint.pth`` with its metrics in
``checkpoints/latest_checkpoint_metrics.json``; ``model_summary.txt``; and the module under
``model`` through ``gitml.pytorch`` with a signature from the first batch ``forward`` saw
(one tensor in, one out). Not done: ``log_every_n_step`` (per-step metrics), checkpoints by
step (``checkpoint_save_freq`` an integer) and ``restored_model_checkpoint``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from typing import Any

from gitml.autologging import Config, TrainingCall, config, now_ms, step, warn

NAME = "pytorch"
_LIBRARIES = ("lightning", "pytorch_lightning")
_originals: dict[str, Any] = {}


def patch() -> None:
    for library in _LIBRARIES:
        if library in _originals or (library != "lightning" and library not in sys.modules):
            continue
        try:
            trainer = __import__(library).Trainer
        except ImportError:
            continue
        _originals[library] = trainer.fit
        trainer.fit = _wrap(trainer.fit, library)


def unpatch() -> None:
    for library, original in list(_originals.items()):
        __import__(library).Trainer.fit = original
        del _originals[library]


def _wrap(original, library: str):
    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        found = config(NAME)
        with TrainingCall() as outermost:
            if found is None or not outermost:
                return original(self, *args, **kwargs)
            return _fit(found, original, library, self, args, kwargs)

    setattr(fit, "__gitml_autolog__", True)  # noqa: B010  (typed either way whether the library is typed or not)
    return fit


def _early_stopping(library: str, trainer) -> Any:
    kinds = [_base(library).callbacks.EarlyStopping]
    if "pytorch_lightning" in sys.modules and library == "lightning":
        kinds.append(sys.modules["pytorch_lightning"].callbacks.EarlyStopping)
    return next((c for c in trainer.callbacks if isinstance(c, tuple(kinds))), None)


def _fit(cfg: Config, original, library: str, trainer, args: tuple, kwargs: dict):
    from gitml import fluent

    active = fluent.active_run()
    if active is not None and cfg.exclusive:
        return original(trainer, *args, **kwargs)
    run = active if active is not None else fluent.start_run(tags={"mlflow.autologging": NAME, **cfg.extra_tags})
    run_id = run.info.run_id
    client = fluent.client()
    failed = True
    captured: list = []  # (input, output) of the first forward
    added = [_callback(cfg, library, client, run_id, captured)]
    if cfg.options.get("checkpoint", True):
        added.append(_checkpointer(cfg, library, client, run_id))
    stopper = _early_stopping(library, trainer)
    if stopper is not None:
        fields = ("monitor", "mode", "patience", "min_delta", "stopped_epoch")
        params = [(p, str(getattr(stopper, p))) for p in fields if hasattr(stopper, p)]
        step(cfg, "logging the early stopping params", lambda: client.log_batch(run_id, params=params))
    trainer.callbacks += added
    try:
        try:
            result = original(trainer, *args, **kwargs)
        finally:
            trainer.callbacks[:] = [c for c in trainer.callbacks if not any(c is a for a in added)]
        if stopper is not None and stopper.stopped_epoch != 0:
            step(cfg, "logging the early stopping metrics", lambda: _stopped(client, run_id, stopper))
        step(cfg, "logging the model summary", lambda: _summary(library, client, run_id, trainer))
        if cfg.log_models:
            step(cfg, "logging the model", lambda: _log_model(cfg, run_id, trainer.model, captured))
        failed = False
        return result
    finally:
        if active is None:
            fluent.end_run("FAILED" if failed else "FINISHED")


def _stopped(client, run_id: str, stopper) -> None:
    metrics = {
        "stopped_epoch": stopper.stopped_epoch,
        "restored_epoch": stopper.stopped_epoch - max(1, stopper.patience),
    }
    if hasattr(stopper, "best_score"):
        metrics["best_score"] = float(stopper.best_score)
    if hasattr(stopper, "wait_count"):
        metrics["wait_count"] = stopper.wait_count
    client.log_batch(run_id, metrics=[(k, float(v), now_ms(), 0) for k, v in metrics.items()])


def _summary(library: str, client, run_id: str, trainer) -> None:
    import importlib

    module = importlib.import_module(f"{_base(library).__name__}.utilities.model_summary")
    client.log_text(run_id, str(module.ModelSummary(trainer.model, max_depth=-1)), "model_summary.txt")


def _base(library: str):
    import importlib

    return importlib.import_module("lightning.pytorch" if library == "lightning" else library)


def _callback(cfg: Config, library: str, client, run_id: str, captured: list):
    pl: Any = _base(library)

    class Recorder(pl.Callback):  # a class of the module loaded at run time
        def on_train_start(self, trainer, pl_module):
            def start() -> None:
                client.set_tag(run_id, "Mode", "training")
                params: dict[str, Any] = {"epochs": trainer.max_epochs}
                if trainer.optimizers:
                    optimizer = trainer.optimizers[0]
                    inner = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps it
                    params["optimizer_name"] = type(inner).__name__
                    params.update(getattr(optimizer, "defaults", None) or {})
                client.log_batch(run_id, params=[(k, str(v)) for k, v in params.items()])

            step(cfg, "logging the params", start)
            if cfg.log_models and cfg.log_model_signatures:
                _capture_first_forward(pl_module, captured)

        def on_train_epoch_end(self, trainer, pl_module, *args):
            if trainer.sanity_checking:
                return
            values = [
                (str(k), float(v), now_ms(), pl_module.current_epoch) for k, v in trainer.callback_metrics.items()
            ]
            if values:
                step(cfg, "logging the metrics", lambda: client.log_batch(run_id, metrics=values))

    return Recorder()


def _capture_first_forward(module, captured: list) -> None:
    import torch

    original = module.forward
    own = "forward" in vars(module)  # someone set the instance's forward: put it back, else the class's

    def forward(*inputs, **kwargs):
        result = original(*inputs, **kwargs)
        if not captured:
            captured.append(None)  # only the first call
            if len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and isinstance(result, torch.Tensor):
                captured[0] = (inputs[0].detach().cpu().numpy(), result.detach().cpu().numpy())
            if own:
                module.forward = original
            else:
                del module.forward
        return result

    module.forward = forward


def _checkpointer(cfg: Config, library: str, client, run_id: str):
    pl: Any = _base(library)
    monitor = cfg.options.get("checkpoint_monitor", "val_loss")
    mode = cfg.options.get("checkpoint_mode", "min")
    best_only = cfg.options.get("checkpoint_save_best_only", True)
    weights_only = cfg.options.get("checkpoint_save_weights_only", False)

    class Checkpointer(pl.Callback):
        last: float | None = None

        def on_train_epoch_end(self, trainer, pl_module):
            values = {k: float(v) for k, v in trainer.callback_metrics.items()}
            if best_only:
                if monitor not in values:
                    return
                value = values[monitor]
                if self.last is not None and (value >= self.last if mode == "min" else value <= self.last):
                    return
                self.last = value
            step(cfg, "logging a checkpoint", lambda: self.save(trainer, values))

        def save(self, trainer, values: dict) -> None:
            weights = ".weights" if weights_only else ""
            if best_only:
                folder, model, metrics = (
                    "checkpoints",
                    f"latest_checkpoint{weights}.pth",
                    "latest_checkpoint_metrics.json",
                )
            else:
                folder = f"checkpoints/epoch_{trainer.current_epoch}"
                model, metrics = f"checkpoint{weights}.pth", "checkpoint_metrics.json"
            client.set_tag(run_id, "mlflow.latest_checkpoint_artifact", f"{folder}/{model}")
            record = {**values, "epoch": trainer.current_epoch, "global_step": trainer.global_step}
            client.artifacts.log_bytes(run_id, json.dumps(record, indent=2).encode(), f"{folder}/{metrics}")
            with tempfile.TemporaryDirectory(prefix="gitml-checkpoint-") as tmp:
                path = os.path.join(tmp, model)
                trainer.strategy.save_checkpoint(trainer._checkpoint_connector.dump_checkpoint(weights_only), path)
                client.log_artifact(run_id, path, folder)

    return Checkpointer()


def _log_model(cfg: Config, run_id: str, module, captured: list) -> None:
    log_model: Any = cfg.log_model  # gitml.pytorch.log_model
    signature = None
    if captured and captured[0] is not None:
        try:
            from gitml.modelformat.signature import infer_signature

            signature = infer_signature(*captured[0])
        except Exception as e:  # noqa: BLE001
            warn(cfg, "inferring the model signature", e)
    log_model(module, name="model", run_id=run_id, signature=signature if signature is not None else False)


__all__ = ["patch", "unpatch"]
