"""Command-line flags generated from the pydantic job models, so every option is documented with its default.

``--data.patch-size 64`` sets ``data.patch_size``; flags override the YAML job file; the merged job is validated by
the same models the GUI uses.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

DEST = "job:"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional) of ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), type(None) in typing.get_args(annotation)
    return annotation, False


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _scalar(t: Any, name: str) -> dict[str, Any] | None:
    """argparse keyword arguments for a scalar field type, or None when it is not one."""
    origin = typing.get_origin(t)
    if t in (int, float, str):
        return {"type": t}
    if t is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        values = typing.get_args(t)
        return {"choices": values, "type": type(values[0])}
    if origin in (tuple, list):
        inner = typing.get_args(t)[0]
        return {"nargs": "+", "type": inner if inner in (int, float, str) else str}
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(t)
        if str in args:  # e.g. str | ModelConfig: the string form on the command line
            return {"type": str}
        sequences = [a for a in args if typing.get_origin(a) in (tuple, list)]
        return _scalar(sequences[0], name) if sequences else None  # int | tuple[int, ...]: one value or several
    if t is Any:  # data sources take several paths; a checkpoint one
        return {"nargs": "+", "type": str} if name in _SINGLE else {"type": str}
    return None


def add_model_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = "", group: Any = None
) -> None:
    """One flag per field of ``model`` (recursing into nested models, one help group each), defaults in the help."""
    group = group if group is not None else parser.add_argument_group(f"{prefix.rstrip('.') or 'job'} settings")
    for name, field in model.model_fields.items():
        if name == "version":
            continue
        t, _ = _unwrap(field.annotation)
        path = f"{prefix}{name}"
        if _is_model(t):
            add_model_flags(parser, t, path + ".", parser.add_argument_group(f"{path} settings"))
            continue
        kwargs = _scalar(t, name)
        if kwargs is None:
            continue
        default = field.default if field.default is not PydanticUndefined else "required"
        if isinstance(default, BaseModel):
            continue
        helptext = (field.description or "").rstrip(".")
        if "default" not in helptext:
            helptext = f"{helptext} (default: {default})" if helptext else f"(default: {default})"
        if "action" not in kwargs:
            kwargs["metavar"] = name.upper() if "choices" not in kwargs else None
        group.add_argument(f"--{path.replace('_', '-')}", dest=DEST + path, default=None, help=helptext, **kwargs)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The nested dict of the flags that were given."""
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if not dest.startswith(DEST) or value is None:
            continue
        keys = dest[len(DEST) :].split(".")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value[0] if isinstance(value, list) and len(value) == 1 and keys[-1] in _SINGLE else value
    return out


_SINGLE = {"degraded", "clean", "unlabelled", "input"}  # one source given as a single flag value stays a string


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``extra`` (flags win over the file)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
