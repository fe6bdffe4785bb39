"""Autologging for Keras 3 (any backend: tested on torch), as ``mlflow.keras.autolog`` (3.17)
logs ``keras.Model.fit``: ``fit``'s arguments as params (not ``x``, ``y``, ``callbacks``,
``validation_data``, ``verbose``; ``batch_size`` also from a dataset that carries one), the
optimizer's config as ``optimizer_<key>`` when training begins, ``model_summary.txt``, each
epoch's logs (``loss``, ``accuracy``, ``val_loss``...) at step ``epoch``, each validation
pass's results as ``validation_<name>`` (step 0, as MLflow's ``on_test_end``), the training
data as an input (context ``train``; ``validation_data`` as ``eval``, which MLflow attempts
but only manages under TensorFlow), and the model under ``model`` through ``gitml.keras``
with MLflow's tensor signature (from the model's input and output shapes). Not done:
``log_every_n_steps`` (per-batch metrics) and ``save_exported_model``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from gitml.autologging import Config, TrainingCall, config, step, warn

NAME = "keras"
_UNLOGGED = {"self", "x", "y", "callbacks", "validation_data", "verbose"}
_originals: dict[str, Any] = {}


def patch() -> None:
    import keras

    if "fit" in _originals:
        return
    _originals["fit"] = keras.Model.fit
    keras.Model.fit = _wrap(keras.Model.fit)


def unpatch() -> None:
    import keras

    if "fit" in _originals:
        keras.Model.fit = _originals.pop("fit")


def _wrap(original):
    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        found = config(NAME)
        with TrainingCall() as outermost:
            if found is None or not outermost:
                return original(self, *args, **kwargs)
            return _fit(found, original, self, args, kwargs)

    setattr(fit, "__gitml_autolog__", True)  # noqa: B010  (typed either way whether the library is typed or not)
    return fit


def _fit(cfg: Config, original, model, args: tuple, kwargs: dict):
    from gitml import fluent

    active = fluent.active_run()
    if active is not None and cfg.exclusive:
        return original(model, *args, **kwargs)
    run = active if active is not None else fluent.start_run(tags={"mlflow.autologging": NAME, **cfg.extra_tags})
    run_id = run.info.run_id
    client = fluent.client()
    parameters = inspect.signature(original).parameters
    bound = dict(zip([n for n in parameters if n != "self"], args, strict=False)) | kwargs
    failed = True
    try:

        def params() -> None:
            given = {n: bound.get(n, p.default) for n, p in parameters.items() if n not in _UNLOGGED}
            if "batch_size" not in kwargs:
                found = getattr(bound.get("x"), "batch_size", None) or getattr(bound.get("x"), "_batch_size", None)
                if isinstance(found, int):
                    given["batch_size"] = found
            client.log_batch(run_id, params=[(k, str(v)) for k, v in given.items()])
            if cfg.log_datasets:
                _datasets(client, run_id, bound)

        step(cfg, "logging the params", params)
        callbacks = list(bound.get("callbacks") or []) + [_callback(cfg, client, run_id)]
        kwargs = {**kwargs, "callbacks": callbacks}
        names = [n for n in parameters if n != "self"]
        if len(args) > names.index("callbacks"):
            args = args[: names.index("callbacks")] + (callbacks,) + args[names.index("callbacks") + 1 :]
            del kwargs["callbacks"]
        history = original(model, *args, **kwargs)
        if cfg.log_models:
            step(cfg, "logging the model", lambda: _log_model(cfg, run_id, model))
        failed = False
        return history
    finally:
        if active is None:
            fluent.end_run("FAILED" if failed else "FINISHED")


def _datasets(client, run_id: str, bound: dict) -> None:
    import numpy as np

    from gitml import data

    x, y = bound.get("x"), bound.get("y")
    if isinstance(x, np.ndarray):
        client.log_inputs(
            run_id, [data.from_numpy(x, targets=y if isinstance(y, np.ndarray) else None)], context="train"
        )
    held = bound.get("validation_data")
    if isinstance(held, tuple) and held and isinstance(held[0], np.ndarray):
        targets = held[1] if len(held) > 1 and isinstance(held[1], np.ndarray) else None
        client.log_inputs(run_id, [data.from_numpy(held[0], targets=targets)], context="eval")


def _callback(cfg: Config, client, run_id: str):
    import keras

    def now() -> int:
        import time

        return int(time.time() * 1000)

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            def begin() -> None:
                settings = self.model.optimizer.get_config()
                client.log_batch(run_id, params=[(f"optimizer_{k}", str(v)) for k, v in settings.items()])
                lines: list[str] = []
                self.model.summary(print_fn=lambda line, *a, **k: lines.append(line))
                client.log_text(run_id, "\n".join(lines), "model_summary.txt")

            step(cfg, "logging the optimizer", begin)

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                metrics = [(str(k), float(v), now(), int(epoch)) for k, v in logs.items()]
                step(cfg, "logging the metrics", lambda: client.log_batch(run_id, metrics=metrics))

        def on_test_end(self, logs=None):
            if logs:
                metrics = [(f"validation_{k}", float(v), now(), 0) for k, v in logs.items()]
                step(cfg, "logging the metrics", lambda: client.log_batch(run_id, metrics=metrics))

    return Recorder()


def signature_of(model):
    """MLflow's Keras signature: tensors of the model's input dtype and shapes, output compute dtype."""
    import numpy as np

    from gitml.modelformat.signature import ModelSignature, Schema, TensorSpec

    def specs(shapes, dtype) -> Schema:
        shapes = shapes if isinstance(shapes, list) else [shapes]
        return Schema([TensorSpec(np.dtype(dtype), [-1 if n is None else n for n in shape]) for shape in shapes])

    return ModelSignature(specs(model.input_shape, model.input_dtype), specs(model.output_shape, model.compute_dtype))


def _log_model(cfg: Config, run_id: str, model) -> None:
    log_model: Any = cfg.log_model  # gitml.keras.log_model
    signature = None
    if cfg.log_model_signatures:
        try:
            signature = signature_of(model)
        except Exception as e:  # noqa: BLE001
            warn(cfg, "inferring the model signature", e)
    log_model(
        model,
        name="model",
        run_id=run_id,
        signature=signature if signature is not None else False,
        save_model_kwargs=cfg.options.get("save_model_kwargs"),
    )


__all__ = ["patch", "signature_of", "unpatch"]
