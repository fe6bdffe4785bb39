"""``spark_udf``: a model as a Spark pandas UDF, with MLflow's ``mlflow.pyfunc.spark_udf`` semantics.

    predict = gitml.pyfunc.spark_udf(spark, "models:/churn@production", result_type="double")
    df.withColumn("p", predict(struct("age", "income")))   # a struct: its field names
    df.withColumn("p", predict("age", "income"))           # columns: named by the signature, in order
    df.withColumn("p", predict())                          # the signature's columns by name

The model is verified once, on the driver (:mod:`gitml.pyfunc.shipping`), and its verified bytes go
to the executors as one Spark broadcast: an executor never reads the repository or the artifact
store, never downloads per task, re-checks the bytes against the hashes in the UDF's closure and
loads the model once per Python worker (Spark reuses its Python workers, so once per executor core).
Results are shaped to ``result_type`` as MLflow shapes them: a primitive type takes the leftmost
output column of a fitting type, an array type every fitting column, a struct type its fields by
name. No ``result_type``: the signature's output schema decides, else ``double``.
"""

import os
from typing import Any, Iterator, Tuple, Union

from gitml.errors import InvalidInputError, SchemaEnforcementError

_PRIMITIVE = {
    "IntegerType": "int32",
    "LongType": "int64",
    "FloatType": "float32",
    "DoubleType": "float64",
    "BooleanType": "bool",
    "StringType": "str",
}


def _check_result_type(data_type: Any) -> None:
    from pyspark.sql.types import ArrayType, StructType

    if isinstance(data_type, ArrayType):
        return _check_result_type(data_type.elementType)
    if isinstance(data_type, StructType):
        for f in data_type.fields:
            _check_result_type(f.dataType)
        return None
    if type(data_type).__name__ not in _PRIMITIVE:
        raise InvalidInputError(
            f"spark_udf result type {data_type.simpleString()!r} is not one of int, long, float, "
            "double, string, boolean, an array of those, or a struct of those"
        )
    return None


def _parse_result_type(result_type: Any) -> Any:
    from pyspark.sql.types import DataType

    if isinstance(result_type, DataType):
        return result_type
    if not isinstance(result_type, str) or not result_type.strip():
        raise InvalidInputError(f"spark_udf result_type {result_type!r} is not a Spark type or a DDL type string")
    text = "boolean" if result_type.strip() == "bool" else result_type
    try:
        return DataType.fromDDL(text)
    except Exception as e:  # pyspark's parse errors have no common public base
        raise InvalidInputError(
            f"spark_udf result_type {result_type!r} does not parse as a Spark type: {str(e).splitlines()[0]}"
        ) from None


def _spark_type_of(spec: Any) -> Any:
    """The Spark type MLflow gives one output spec: a column its type, a 1-D tensor an array, a
    2-D tensor an array of arrays."""
    from pyspark.sql import types as T

    from gitml.modelformat.signature import ColSpec, DataType, data_type_of

    simple = {
        DataType.boolean: T.BooleanType(),
        DataType.integer: T.IntegerType(),
        DataType.long: T.LongType(),
        DataType.float: T.FloatType(),
        DataType.double: T.DoubleType(),
        DataType.string: T.StringType(),
        DataType.binary: T.BinaryType(),
        DataType.datetime: T.TimestampType(),
    }
    if isinstance(spec, ColSpec):
        if spec.type not in simple:
            raise InvalidInputError(
                f"the model's output column {spec.name!r} has a type spark_udf cannot return; give result_type"
            )
        return simple[spec.type]
    import numpy as np

    kind = data_type_of(np.dtype(spec.type))
    if kind is None or kind not in simple or len(spec.shape) not in (1, 2):
        raise InvalidInputError(
            f"the model's output tensor {spec.type}{list(spec.shape)} is not one spark_udf "
            "returns (a 1-D or 2-D tensor of numbers, strings or booleans); give result_type"
        )
    inner = T.ArrayType(simple[kind])
    return inner if len(spec.shape) == 1 else T.ArrayType(inner)


def _default_result_type(metadata: Any) -> Any:
    from pyspark.sql.types import DoubleType, StructField, StructType

    outputs = metadata.get_output_schema()
    if outputs is None or not outputs.inputs:
        return DoubleType()
    specs = outputs.inputs
    if len(specs) == 1:
        return _spark_type_of(specs[0])
    return StructType([StructField(s.name or str(i), _spark_type_of(s)) for i, s in enumerate(specs)])


def spark_udf(
    spark: Any,
    model_uri: "str | os.PathLike",
    result_type: Any = None,
    env_manager: "str | None" = "local",
    params: "dict | None" = None,
    extra_env: "dict[str, str] | None" = None,
    model_config: "dict | None" = None,
) -> Any:
    """A Spark pandas UDF scoring ``model_uri`` (a folder, ``runs:/``, ``models:/``) as MLflow's
    ``mlflow.pyfunc.spark_udf`` does (see the module's docstring for its calling forms).

    ``result_type``: a ``pyspark.sql.types.DataType`` or a DDL string (``"double"``,
    ``"array<float>"``, ``"label string, score double"``). ``env_manager``: ``"local"`` only (the
    executors' own Python scores; build that environment from the model's requirements).
    ``params``: passed to every ``predict`` (checked against the signature here). ``extra_env``:
    environment variables set on the executors while they score.

    Raises MissingExtraError (no pyspark), InvalidInputError (a bad argument),
    NotFoundError / RegisteredModelNotFoundError, ModelIntegrityError (a file of the model that does
    not match its run's hashes: nothing is shipped and no executor unpickles anything).
    """
    from gitml.errors import MissingExtraError

    MissingExtraError.unless_installed("spark", ("pyspark",))
    if env_manager not in (None, "local"):
        raise InvalidInputError(
            f"spark_udf env_manager {env_manager!r}: gitml scores in the executors' own Python "
            "('local'); install the model's requirements.txt on the executors"
        )
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect sessions have no SparkContext
        raise InvalidInputError(
            "spark_udf needs a classic SparkSession (Spark Connect cannot broadcast the verified model)"
        ) from None
    from gitml.modelformat.enforce import enforce_params
    from gitml.pyfunc.shipping import ship_model

    result_type = _given_result_type(result_type)
    shipped = ship_model(model_uri)  # downloaded, every byte checked: refused here if tampered
    metadata = shipped.metadata
    if result_type is None:
        result_type = _default_result_type(metadata)
    params = enforce_params(params, metadata.get_params_schema())
    broadcast = context.broadcast(shipped.files)
    key = shipped.key()
    schema = metadata.get_input_schema()
    names = None if schema is None else [str(n) for n in schema.input_names()]
    required = 0 if schema is None else len(schema.required_input_names())
    plan = _Plan(key, broadcast, model_config, params, result_type, names, required, dict(extra_env or {}))
    udf = _pandas_udf(plan)
    udf.metadata = metadata

    def predict(*columns: Any) -> Any:
        if columns:
            return udf(*columns)
        if schema is None or not schema.inputs:
            raise InvalidInputError(
                "the model has no input signature: call the UDF with its columns, e.g. udf(struct('a', 'b'))"
            )
        if not schema.has_input_names():
            raise InvalidInputError("the model's input signature names no columns: call the UDF with its columns")
        if len(schema.required_input_names()) < len(schema.inputs):
            raise InvalidInputError("the model's signature has optional columns: call the UDF with the columns to use")
        return udf(*names)  # type: ignore[misc]

    predict.metadata = metadata  # type: ignore[attr-defined]
    predict.__doc__ = f"Scores {model_uri} (gitml.pyfunc.spark_udf)."
    return predict


def _given_result_type(result_type: Any) -> Any:
    if result_type is None:
        return None
    parsed = _parse_result_type(result_type)
    _check_result_type(parsed)
    return parsed


class _Plan:
    """What every task carries: the hashes (not the bytes: those are in the broadcast), the
    calling conventions and the result type."""

    def __init__(
        self,
        key: Any,
        broadcast: Any,
        model_config: Any,
        params: Any,
        result_type: Any,
        names: "list[str] | None",
        required: int,
        extra_env: "dict[str, str]",
    ):
        self.key, self.broadcast, self.model_config, self.params = key, broadcast, model_config, params
        self.result_type, self.names, self.required, self.extra_env = result_type, names, required, extra_env

    def model(self) -> Any:
        return self.key.load(lambda: self.broadcast.value, self.model_config)


def _pandas_udf(plan: _Plan) -> Any:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StructType

    if isinstance(plan.result_type, StructType):

        def score_frames(batches: Iterator[Tuple[Union[pd.Series, pd.DataFrame], ...]]) -> Iterator[pd.DataFrame]:
            return score_batches(plan, batches)

        return pandas_udf(score_frames, returnType=plan.result_type)  # type: ignore[call-overload]

    def score_series(batches: Iterator[Tuple[Union[pd.Series, pd.DataFrame], ...]]) -> Iterator[pd.Series]:
        return score_batches(plan, batches)

    return pandas_udf(score_series, returnType=plan.result_type)  # type: ignore[call-overload]


def score_batches(plan: _Plan, batches: Iterator[Any]) -> Iterator[Any]:
    """On an executor: the model loaded once (from the broadcast, checked), then each Arrow batch
    scored and shaped to the result type."""
    saved = {k: os.environ.get(k) for k in plan.extra_env}
    os.environ.update(plan.extra_env)
    try:
        model = plan.model()
        for batch in batches:
            args = (batch,) if not isinstance(batch, tuple) else batch
            if len(args[0]) == 0:
                continue
            result = model.predict(_input_frame(plan, args), plan.params)
            yield to_spark_values(result, plan.result_type)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _input_frame(plan: _Plan, args: tuple) -> Any:
    """The model's input: a struct column's frame as it is; columns named by the signature (or
    ``0``, ``1``, ... with none), in the order given."""
    import pandas as pd

    if len(args) == 1 and isinstance(args[0], pd.DataFrame):
        return args[0]
    if plan.names is None:
        names = [str(i) for i in range(len(args))]
    else:
        names = plan.names
        args = args[: len(names)]
        if len(args) < plan.required:
            raise SchemaEnforcementError(
                f"the model takes {plan.required} required columns {names}, in that order; "
                f"the UDF was given {len(args)}"
            )
    columns = {}
    for name, arg in zip(names, args, strict=False):
        columns[name] = arg if isinstance(arg, pd.Series) else pd.Series(arg.to_dict("records"), index=arg.index)
    return pd.DataFrame(columns)


def _frame(result: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, pd.Series):
        return result.to_frame()
    if isinstance(result, dict):
        return pd.DataFrame({k: list(v) if not np.isscalar(v) else [v] for k, v in result.items()})
    if np.isscalar(result):
        return pd.DataFrame([result])
    return pd.DataFrame(result)


def _fits(dtype: Any, element: str) -> bool:
    if element == "str":
        return True
    if element == "bool":
        return dtype.kind == "b"
    if element in ("float32", "float64"):
        return dtype.kind in "iuf"
    if element == "int32":
        return (dtype.kind == "i" and dtype.itemsize <= 4) or (dtype.kind == "u" and dtype.itemsize <= 2)
    return (dtype.kind == "i" and dtype.itemsize <= 8) or (dtype.kind == "u" and dtype.itemsize <= 4)  # int64


def _primitive(series: Any, element: str) -> Any:
    if element == "str":
        return series.map(lambda v: None if v is None else str(v))
    return series.astype(element)


def _array_values(values: Any, data_type: Any) -> Any:
    import numpy as np
    from pyspark.sql.types import ArrayType

    if values is None or (isinstance(values, float) and np.isnan(values)):
        return None
    element = data_type.elementType
    if isinstance(element, ArrayType):
        return [_array_values(v, element) for v in values]
    kind = _PRIMITIVE.get(type(element).__name__)
    if kind is None:
        raise InvalidInputError(f"spark_udf cannot fill an array of {element.simpleString()}")
    if kind == "str":
        return [None if v is None else str(v) for v in values]
    return np.asarray(values, dtype=kind)


def to_spark_values(result: Any, result_type: Any) -> Any:
    """A model's output for one batch as the Series (or, for a struct type, the DataFrame)
    Spark expects for ``result_type`` (see the module's docstring). Raises InvalidInputError when
    the output has nothing of that type."""
    import numpy as np
    import pandas as pd
    from pyspark.sql.types import ArrayType, StructType

    if isinstance(result_type, StructType):
        frame = _frame(result)
        out = {}
        for f in result_type.fields:
            if f.name not in frame.columns:
                raise InvalidInputError(
                    f"the model's output has no column {f.name!r} for the result type's field "
                    f"(its columns: {', '.join(map(str, frame.columns))})"
                )
            column = frame[f.name]
            if isinstance(f.dataType, ArrayType):
                out[f.name] = pd.Series([_array_values(v, f.dataType) for v in column], index=column.index)
            else:
                kind = _PRIMITIVE[type(f.dataType).__name__]
                out[f.name] = column if column.isna().all() else _primitive(column, kind)
        return pd.DataFrame(out)
    nested = isinstance(result_type, ArrayType) and isinstance(result_type.elementType, ArrayType)
    if nested:
        return pd.Series(
            [
                _array_values(v, result_type.elementType)
                for v in (result if not isinstance(result, pd.DataFrame) else result.to_numpy().tolist())
            ]
        )
    element = result_type.elementType if isinstance(result_type, ArrayType) else result_type
    kind = _PRIMITIVE[type(element).__name__]
    if (
        not isinstance(result_type, ArrayType)
        and isinstance(result, np.ndarray)
        and result.ndim == 1
        and kind != "str"
        and _fits(result.dtype, kind)
    ):
        return pd.Series(result.astype(kind, copy=False))  # the common case: one column of numbers
    frame = _frame(result)
    picked = [c for c in frame.columns if _fits(frame[c].dtype, kind)]
    if not picked:
        raise InvalidInputError(
            f"the model's output has no column of Spark type {element.simpleString()} "
            "(ask for result_type='string' or 'array<string>')"
        )
    chosen = frame[picked]
    if isinstance(result_type, ArrayType):
        values = chosen.astype(kind).to_numpy() if kind != "str" else chosen.map(str).to_numpy()
        return pd.Series(list(values))
    return _primitive(chosen[picked[0]], kind)
