"""Widgets made from the fields of the pydantic job models, so a form's defaults, ranges and tooltips are the
models' own (one definition for the GUI, the CLI, YAML jobs and Python)."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import annotated_types as at
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox
from pydantic import BaseModel

#: Upper ends of spin boxes whose field has none.
_LARGEST = {int: 10**6, float: 10**5}


def field_widget(model: type[BaseModel], name: str, *, label: str | None = None, **changes: Any) -> Any:
    """A magicgui widget for ``model.name``: its default, bounds and description; ``changes`` override them.

    ``int``/``float`` fields become spin boxes bounded by the field's ``ge``/``gt``/``le``/``lt``; an optional
    number (default ``None``) shows 0 for "automatic"; a ``Literal`` becomes a combo box; ``bool`` a check box;
    anything else a line edit (tuples of strings as comma-separated text).
    """
    field = model.model_fields[name]
    kind, optional = _kind(field.annotation)
    default = field.default
    text = label or name.replace("_", " ")
    options: dict[str, Any] = {"label": text, "tooltip": field.description or ""}
    if kind is bool:
        return CheckBox(**({"text": text, "value": default, "tooltip": options["tooltip"]} | changes))
    if typing.get_origin(kind) is Literal:
        return ComboBox(**(options | {"choices": list(typing.get_args(kind)), "value": default} | changes))
    if kind in (int, float):
        low, high = _bounds(field.metadata, kind)
        if optional and default is None:
            options["label"] = f"{text} (0 = auto)"
            default, low = 0, 0
        options |= {"value": default, "min": low, "max": high}
        if kind is float:
            options["step"] = max(abs(default) / 10, 1e-4)
        return (SpinBox if kind is int else FloatSpinBox)(**(options | changes))
    value = ", ".join(default) if isinstance(default, tuple) else ("" if default is None else str(default))
    return LineEdit(**(options | {"value": value} | changes))


def _kind(annotation: Any) -> tuple[Any, bool]:
    """The widget's value type of an annotation, and whether ``None`` is allowed (``int | tuple | None`` -> int)."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation, False
    args = typing.get_args(annotation)
    inner = [a for a in args if a is not type(None)]
    number = [a for a in inner if a in (int, float, bool)]
    return (number[0] if number else inner[0]), type(None) in args


def _bounds(metadata: list[Any], kind: type) -> tuple[float, float]:
    """(min, max) from a field's constraints; an exclusive bound moves in by one unit (ints) or a small step."""
    low, high = 0, _LARGEST[kind]
    step = 1 if kind is int else 1e-6
    for m in metadata:
        if isinstance(m, at.Ge):
            low = m.ge
        elif isinstance(m, at.Gt):
            low = m.gt + step
        elif isinstance(m, at.Le):
            high = m.le
        elif isinstance(m, at.Lt):
            high = m.lt - step
    return low, high
