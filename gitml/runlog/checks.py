"""What a run takes in, checked: run names, params and tags (MLflow's limits; long
values cut with a warning, as MLflow does) and the name a run gets when none is given.
"""

from __future__ import annotations

import logging
import os
import random

from gitml.errors import InvalidInputError
from gitml.names import MAX_PARAM_VALUE_LENGTH, MAX_TAG_VALUE_LENGTH, check_key, check_mapping, check_text
from gitml.store.urls import redact_url

log = logging.getLogger("gitml")

RESERVED_TAG_PREFIX = "gitml."
URL_TAGS = frozenset(
    {"mlflow.source.git.repoURL", "mlflow.gitRepoURL", "mlflow.source.name"}
)  # recorded without credentials
_ADJECTIVES = (
    "amber bold brisk calm clever crisp eager fancy gentle glad keen lucid merry nimble quiet rapid shy sunny swift"
    " tidy vivid warm wise witty"
).split()
_NOUNS = (
    "ant bass bat bear cod crab crow deer dove eel finch fox goat hare hawk lark lynx mole moth newt owl seal swan toad"
    " wolf wren"
).split()


def _truncated(value: object, what: str, limit: int) -> object:
    """A string value cut to ``limit`` characters with a warning, as MLflow treats long
    param and tag values; ``GITML_TRUNCATE_LONG_VALUES=false`` refuses them instead."""
    if isinstance(value, (int, float)):
        return value
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # the validator names the unprintable value
        return value
    if len(text) <= limit or os.environ.get("GITML_TRUNCATE_LONG_VALUES", "true").lower() in ("false", "0", "no"):
        return value
    log.warning("gitml: %s %r... (%d characters) is truncated to %d characters", what, text[:40], len(text), limit)
    return text[:limit]


def check_run_name(name: object) -> str:
    """A run name: one line, up to 8,000 characters (the ``mlflow.runName`` tag's limit;
    MLflow sets no limit of its own on the name)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError("run name must be a non-empty string")
    return check_text(name, "run name", MAX_TAG_VALUE_LENGTH, single_line=True)


def check_params(params: dict) -> dict[str, str]:
    """Params as strings; a value over 6,000 characters is cut there, with a warning (as MLflow)."""
    check_mapping(params, "params")
    return {
        check_key(k, "param"): check_text(
            _truncated(v, f"param {k!r} value", MAX_PARAM_VALUE_LENGTH),
            f"param {k!r} value",
            MAX_PARAM_VALUE_LENGTH,
        )
        for k, v in params.items()
    }


def check_tags(tags: dict, *, allow_reserved: bool = False) -> dict[str, str]:
    check_mapping(tags, "tags")
    out = {}
    for key, value in tags.items():
        check_key(key, "tag")
        if key.startswith(RESERVED_TAG_PREFIX) and not allow_reserved:
            raise InvalidInputError(f"tag key {key!r} is reserved for gitml")
        value = _truncated(value, f"tag {key!r} value", MAX_TAG_VALUE_LENGTH)
        out[key] = check_text(value, f"tag {key!r} value", MAX_TAG_VALUE_LENGTH)
        if (
            key in URL_TAGS
        ):  # pushed to every teammate: never a credential (MLflow writes the remote's URL as git has it)
            out[key] = redact_url(out[key])
    return out


def random_run_name() -> str:
    """A run's name when none is given: adjective-noun-number, as MLflow names runs."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(1, 999)}"
