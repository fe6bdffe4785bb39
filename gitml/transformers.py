"""Hugging Face ``transformers`` pipelines in MLflow's ``transformers`` flavor, as
``mlflow.transformers`` writes and reads it.

    clf = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    gitml.transformers.log_model(clf, name="model", input_example=["a fine film"])
    gitml.pyfunc.load_model("runs:/<run>/model").predict(["an awful one"])   # label, score

The folder is MLflow's: ``model/`` (the model's ``save_pretrained``), ``components/<name>/``
(tokenizer, feature extractor, image processor), ``LICENSE.txt``; flavor keys ``task``,
``instance_type``, ``pipeline_model_type``, ``source_model_name``, ``model_binary``,
``<component>_type``, ``components``, ``transformers_version``; ``loader_module:
mlflow.transformers``. gitml saves the weights always (``save_pretrained=True``) and contacts no
hub: a model card is written only when given, the license file says where to look. It loads
classes only by their names in ``transformers`` itself (never ``trust_remote_code``), and
predicts through ``pyfunc`` as MLflow's wrapper does for text classification (a ``label``/``score``
frame), token classification (each text's entities joined by commas), text generation (the
generated strings) and feature extraction (MLflow's array: the first text's token vectors);
other tasks load as pipelines through :func:`load_model`, and through ``pyfunc`` with MLflow installed.
transformers and torch are optional (``pip install 'gitml[transformers]'``).
"""

from __future__ import annotations

import os
from typing import Any

from gitml.errors import InvalidInputError, UnsupportedFlavorError

FLAVOR = "transformers"
LOADER = "mlflow.transformers"
MODEL_DIR = "model"
COMPONENTS_DIR = "components"
LICENSE_FILE = "LICENSE.txt"
_COMPONENTS = ("feature_extractor", "tokenizer", "image_processor")  # MLflow's order
PYFUNC_TASKS = (  # the tasks gitml predicts through pyfunc, as MLflow's wrapper does
    "text-classification",
    "sentiment-analysis",
    "token-classification",
    "ner",
    "text-generation",
    "feature-extraction",
)


def _transformers():
    from gitml.modelformat.flavor import require

    return require("transformers", "transformers")


def _components(pipeline) -> dict:
    return {name: getattr(pipeline, name) for name in _COMPONENTS if getattr(pipeline, name, None)}


def save_model(
    transformers_model: Any,
    path: str | os.PathLike,
    processor=None,
    task: str | None = None,
    torch_dtype=None,
    model_card=None,
    code_paths: list[str] | None = None,
    mlflow_model=None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    conda_env=None,
    metadata: dict | None = None,
    model_config: dict | None = None,
    save_pretrained: bool = True,
    **kwargs,
) -> None:
    """Save a ``transformers.Pipeline`` as an MLflow model folder at ``path``. ``signature`` None
    is inferred from ``input_example`` (else MLflow's default for the task)."""
    import yaml

    from gitml.modelformat.mlmodel import Model
    from gitml.modelformat.save import copy_code_paths, finish_folder, prepare_folder

    transformers = _transformers()
    if conda_env is not None:
        raise InvalidInputError("conda_env is not supported; give pip_requirements")
    if not isinstance(transformers_model, transformers.Pipeline):
        raise InvalidInputError(
            f"transformers_model must be a transformers Pipeline, not {type(transformers_model).__name__}"
        )
    if processor is not None or not save_pretrained or kwargs:
        raise InvalidInputError(
            "gitml.transformers saves a pipeline with its weights (no processor=, "
            "save_pretrained=False or prompt templates)"
        )
    pipeline = transformers_model
    if task is not None and task != pipeline.task:
        raise InvalidInputError(f"task {task!r} is not the pipeline's task {pipeline.task!r}")
    folder = prepare_folder(path)
    model = mlflow_model if mlflow_model is not None else Model()
    code = copy_code_paths(folder, code_paths)
    components = _components(pipeline)
    conf: dict[str, Any] = {"task": pipeline.task, "instance_type": type(pipeline).__name__}
    if framework := getattr(pipeline, "framework", None):
        conf["framework"] = framework
    import torch

    dtype = torch_dtype if torch_dtype is not None else getattr(pipeline.model, "dtype", None)
    if torch_dtype is not None or isinstance(dtype, torch.dtype):  # as MLflow: the model's torch dtype
        conf["torch_dtype"] = str(dtype)
    conf.update(
        {
            "pipeline_model_type": type(pipeline.model).__name__,
            "source_model_name": pipeline.model.name_or_path,
            "model_binary": MODEL_DIR,
        }
    )
    for name, component in components.items():
        conf[f"{name}_type"] = type(component).__name__
    conf["components"] = list(components)
    pipeline.model.save_pretrained(os.path.join(folder, MODEL_DIR))
    for name, component in components.items():
        component.save_pretrained(os.path.join(folder, COMPONENTS_DIR, name))
    if model_card is not None:  # as MLflow: the card's text and data, when there is one
        with open(os.path.join(folder, "model_card.md"), "w", encoding="utf-8") as f:
            f.write(model_card.text)
        with open(os.path.join(folder, "model_card_data.yaml"), "w") as f:
            yaml.safe_dump(model_card.data.to_dict(), f, default_flow_style=False)
    with open(os.path.join(folder, LICENSE_FILE), "w", encoding="utf-8") as f:
        name = pipeline.model.name_or_path
        f.write(
            f"A license file could not be found for the '{name}' repository. \n"
            "To ensure that you are in compliance with the license requirements for this "
            f"model, please visit the model repository here: https://huggingface.co/{name}"
        )
    pyfunc = type(pipeline).__name__ not in _NO_PYFUNC
    if pyfunc and signature is None:
        signature = None
        if input_example is not None:
            from gitml.modelformat.signature import infer_signature

            try:
                signature = infer_signature(
                    input_example, _TransformersWrapper(pipeline, model_config).predict(input_example)
                )
            except Exception:
                signature = None
        if signature is None and pipeline.task in PYFUNC_TASKS:  # MLflow's default for the task
            signature = _default_signature(pipeline.task)

    finish_folder(
        folder,
        model,
        flavor=FLAVOR,
        flavor_conf={"transformers_version": transformers.__version__, "code": code, **conf},
        pyfunc_conf={"loader_module": LOADER, "code": code, "config": model_config} if pyfunc else None,
        packages=[f"transformers=={transformers.__version__}", f"torch=={torch.__version__.split('+')[0]}"],
        signature=signature if signature is not None else False,
        input_example=input_example,
        predict=None,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )


def _default_signature(task: str):
    """MLflow's signature for a task when none is inferred (mlflow/transformers/signature.py)."""
    import numpy as np

    from gitml.modelformat.signature import ColSpec, DataType, ModelSignature, Schema, TensorSpec

    text = Schema([ColSpec(DataType.string)])
    if task in ("text-classification", "sentiment-analysis"):
        return ModelSignature(text, Schema([ColSpec(DataType.string, "label"), ColSpec(DataType.double, "score")]))
    if task == "feature-extraction":
        return ModelSignature(text, Schema([TensorSpec(np.dtype("float64"), [-1], "double")]))
    return ModelSignature(text, Schema([ColSpec(DataType.string)]))


# pipelines MLflow saves without a python_function flavor
_NO_PYFUNC = {
    "DocumentQuestionAnsweringPipeline",
    "ImageToTextPipeline",
    "VisualQuestionAnsweringPipeline",
    "ImageSegmentationPipeline",
    "DepthEstimationPipeline",
    "ObjectDetectionPipeline",
    "VideoClassificationPipeline",
    "ZeroShotImageClassificationPipeline",
    "ZeroShotObjectDetectionPipeline",
    "ZeroShotAudioClassificationPipeline",
}


def log_model(
    transformers_model: Any,
    artifact_path: str | None = None,
    processor=None,
    task: str | None = None,
    torch_dtype=None,
    model_card=None,
    code_paths: list[str] | None = None,
    registered_model_name: str | None = None,
    signature=None,
    input_example=None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    conda_env=None,
    metadata: dict | None = None,
    model_config: dict | None = None,
    *,
    name: str | None = None,
    run_id: str | None = None,
):
    """Save a pipeline and log it to the active run (or ``run_id``) under ``name``;
    returns a ModelInfo (``model_uri`` is ``runs:/<run_id>/<name>``)."""
    from gitml.modelformat.save import log_model_folder

    return log_model_folder(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        run_id,
        transformers_model=transformers_model,
        processor=processor,
        task=task,
        torch_dtype=torch_dtype,
        model_card=model_card,
        code_paths=code_paths,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        conda_env=conda_env,
        metadata=metadata,
        model_config=model_config,
    )


def _class(transformers, name: object, what: str) -> Any:
    """A class by its name in ``transformers`` itself: a model file never brings its own code."""
    found = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(found, type):
        raise InvalidInputError(
            f"{what} {name!r} is not a class of the installed transformers "
            "(gitml loads no model code from a model folder)"
        )
    return found


def _load(folder: str, conf: dict, return_type: str = "pipeline"):
    from gitml.pyfunc import inside

    transformers = _transformers()
    if conf.get("source_model_revision") or conf.get("local_base_model_path") or conf.get("peft_adaptor"):
        raise UnsupportedFlavorError(
            "this transformers model references weights outside its folder "
            "(a hub revision, a local base model or a PEFT adaptor): load it with MLflow"
        )
    model_cls = _class(transformers, conf.get("pipeline_model_type"), "model type")
    loaded: dict[str, Any] = {
        "model": model_cls.from_pretrained(inside(folder, conf.get("model_binary") or MODEL_DIR, "model_binary"))
    }
    components = list(conf.get("components") or [])
    if "processor_type" in conf:
        components.append("processor")
    for name in components:
        if name not in (*_COMPONENTS, "processor"):
            raise InvalidInputError(f"unknown transformers component {name!r}")
        cls = _class(transformers, conf.get(f"{name}_type"), f"{name} type")
        loaded[name] = cls.from_pretrained(inside(folder, f"{COMPONENTS_DIR}/{name}", name))
    if return_type == "components":
        return {"task": conf.get("task"), **loaded}
    return transformers.pipeline(task=conf.get("task"), **loaded)


def load_model(model_uri: str | os.PathLike, dst_path: str | None = None, return_type: str = "pipeline", **kwargs):
    """The pipeline (or, with ``return_type="components"``, its parts), a run's model verified
    against its manifest first."""
    from gitml.modelformat.flavor import on_disk

    if return_type not in ("pipeline", "components"):
        raise InvalidInputError(f"return_type {return_type!r} is not pipeline or components")
    return on_disk(model_uri, dst_path, FLAVOR, lambda folder, conf: _load(folder, conf, return_type))


class _TransformersWrapper:
    """``predict`` as MLflow's for a text-classification pipeline: strings (a DataFrame's first
    column, a list, one string) or ``{"text", "text_pair"}`` mappings in, a ``label``/``score``
    frame out."""

    def __init__(self, pipeline, model_config: dict | None = None):
        self.pipeline = pipeline
        self.model_config = dict(model_config or {})

    def predict(self, data, params: dict | None = None):
        import pandas as pd

        task = self.pipeline.task
        if task not in PYFUNC_TASKS:
            raise UnsupportedFlavorError(
                f"gitml predicts {', '.join(PYFUNC_TASKS)} pipelines through pyfunc, not "
                f"{task!r}: load it with MLflow, or use gitml.transformers.load_model"
            )
        config = {**self.model_config, **(params or {})}
        if task in ("text-classification", "sentiment-analysis"):
            return self._classify(data, config)
        if isinstance(data, pd.DataFrame):
            data = data.to_dict(orient="records")
        if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
            data = [next(iter(item.values())) for item in data]  # a frame's one column, as MLflow
        if task == "feature-extraction":
            import numpy as np

            output = self.pipeline(data, **config)
            return output if isinstance(output, np.ndarray) else np.array(output[0][0])  # MLflow's choice
        if not isinstance(data, (str, list)) or (isinstance(data, list) and not all(isinstance(t, str) for t in data)):
            raise InvalidInputError(f"a {task} pipeline takes a string or a list of strings, not {type(data).__name__}")
        if task == "text-generation":
            config.pop("include_prompt", None)
            collapse = config.pop("collapse_whitespace", False)
            output = self.pipeline(data, **config)
            if all(isinstance(item, dict) for item in output):
                texts: Any = output[0]["generated_text"]
            else:
                texts = [item["generated_text"] for group in output for item in group]
            if collapse:
                import re

                texts = [re.sub(r"\s+", " ", t).strip() for t in texts] if isinstance(texts, list) else texts
            if isinstance(data, str) and isinstance(texts, list):
                texts = texts[0]
        else:  # token classification: each text's entities, joined by commas
            output = self.pipeline(data, **config)

            def entities(found: list) -> str:
                key = "entity_group" if found and "entity_group" in found[0] else "entity"
                return ",".join(item[key] for item in found)

            texts = (
                [entities(found) for found in output] if output and isinstance(output[0], list) else entities(output)
            )
        return _strip(texts)

    def _classify(self, data, config: dict):
        import ast

        import pandas as pd

        if isinstance(data, pd.DataFrame):
            data = data.to_dict(orient="records")
        if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
            if list(data[0])[0] == 0:  # a frame's unnamed column
                data = [item[0] for item in data]
            for item in data:
                if isinstance(item, dict) and set(item) - {"text", "text_pair"}:
                    raise InvalidInputError("text classification mappings take only the keys text and text_pair")
            parsed = []
            for item in data:
                if isinstance(item, str):
                    try:
                        item = ast.literal_eval(item)  # a mapping the server passed as its repr, as MLflow
                    except (ValueError, SyntaxError):
                        pass
                parsed.append(item)
            data = parsed
        elif not isinstance(data, (str, dict, list)):
            raise InvalidInputError(f"a text classifier takes strings, not {type(data).__name__}")
        output = self.pipeline(data, **config)
        return pd.DataFrame(output if isinstance(output, list) else [output])

    def get_raw_model(self):
        return self.pipeline


def _strip(output):
    """MLflow's output sanitising: strings stripped, a list of one string is that string, and a
    lone string goes back in a list (a batch)."""
    if isinstance(output, list) and all(isinstance(t, str) for t in output):
        output = [t.strip() for t in output]
        output = output if len(output) > 1 else output[0]
    elif isinstance(output, str):
        output = output.strip()
    return [output] if isinstance(output, str) else output


def _load_pyfunc(path: str, model_config: dict | None = None) -> _TransformersWrapper:
    """Called by ``gitml.pyfunc.load_model`` for ``loader_module: mlflow.transformers``."""
    from gitml.modelformat.flavor import flavor_conf, model_folder
    from gitml.modelformat.mlmodel import PYFUNC, Model

    folder = model_folder(path)
    conf = flavor_conf(folder, FLAVOR)
    if conf.get("task") not in PYFUNC_TASKS:
        raise UnsupportedFlavorError(
            f"gitml predicts {', '.join(PYFUNC_TASKS)} pipelines through pyfunc, not {conf.get('task')!r}"
        )
    conf_py = Model.load(folder).flavors.get(PYFUNC) or {}
    saved = conf_py.get("config", conf_py.get("model_config"))  # MLflow's key; earlier gitml wrote model_config
    return _TransformersWrapper(_load(folder, conf), {**(saved or {}), **(model_config or {})})


__all__ = ["load_model", "log_model", "save_model"]
