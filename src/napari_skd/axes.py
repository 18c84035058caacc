"""Axes strings with OME-NGFF letters (T, C, Z, Y, X): validation and resolution, never a silent guess.

``S`` (CAREamics' sample axis: a stack of independent images) is accepted and read as ``T``: napari-skd trains on
and restores every time point, like every sample, as an image of its own, so the two mean the same here. An axes
string may name one of them, not both (merge them into one axis first). Outputs name that axis ``T``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InputError

AXES_LETTERS = "TCZYX"  # the canonical order
SAMPLE = "S"  # CAREamics' sample axis, read as T

# What a shape without axes could mean, by number of dimensions (offered in the ambiguity error).
_CHOICES = {
    3: "'ZYX' (a volume), 'CYX' (channels) or 'TYX' (a time series)",
    4: "'CZYX' (a volume with channels), 'TZYX' (a volume over time) or 'TCYX' (channels over time)",
    5: "'TCZYX' (channels of a volume over time)",
}


def validate_axes(axes: str, ndim: int) -> str:
    """Upper-cased ``axes`` after checking it names each of ``ndim`` dimensions once, with Y and X among them;
    a sample axis ``S`` comes back as ``T``."""
    if not isinstance(axes, str):
        raise InputError(f"axes must be a string of letters such as 'ZYX', not {type(axes).__name__}")
    axes = axes.upper()
    unknown = sorted({a for a in axes if a not in AXES_LETTERS + SAMPLE}, key=axes.index)
    if unknown:
        raise InputError(
            f"axes {axes!r} contains unknown letter(s) {', '.join(unknown)}; "
            f"allowed letters are {', '.join(AXES_LETTERS)} (time, channel, Z, Y, X) and S (samples, read as T)"
        )
    repeated = sorted({a for a in axes if axes.count(a) > 1}, key=axes.index)
    if repeated:
        raise InputError(f"axes {axes!r} repeats {', '.join(repeated)}; each letter may appear only once")
    missing = [a for a in "YX" if a not in axes]
    if missing:
        raise InputError(f"axes {axes!r} lacks {' and '.join(missing)}; every image needs a Y and an X axis")
    if len(axes) != ndim:
        example = f", e.g. {AXES_LETTERS[-ndim:]!r}" if 2 <= ndim <= len(AXES_LETTERS) else ""
        raise InputError(
            f"axes {axes!r} has {len(axes)} letter(s) but the image has {ndim} dimension(s); "
            f"give one letter per dimension{example}"
        )
    if SAMPLE in axes and "T" in axes:
        raise InputError(
            f"axes {axes!r} name both S (samples) and T (time): napari-skd treats each sample and each time point "
            "as an independent image along one axis, so give only one of them; merge the two dimensions first "
            "(e.g. reshape an (S, T, Y, X) array to (S*T, Y, X) and pass axes 'SYX')"
        )
    return axes.replace(SAMPLE, "T")


def resolve_axes(shape: Sequence[int], axes: str | None = None, metadata_axes: str | None = None) -> str:
    """Axes of an image of ``shape``: explicit ``axes`` first, then the file's OME metadata, else only 2-D is sure."""
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if axes is not None:
        return validate_axes(axes, ndim)
    if metadata_axes is not None:
        try:
            return validate_axes(metadata_axes, ndim)
        except InputError as err:
            raise InputError(f"the file's axes metadata cannot be used ({err}); pass axes explicitly") from err
    if ndim == 2:
        return "YX"
    if ndim < 2:
        raise InputError(f"a {ndim}-D array of shape {shape} is not an image: expected at least Y and X dimensions")
    if ndim > len(AXES_LETTERS):
        raise InputError(
            f"a {ndim}-D image of shape {shape} has more dimensions than {AXES_LETTERS!r} can name; "
            "select or squeeze the extra dimensions first"
        )
    raise InputError(f"a {ndim}-D image of shape {shape} is ambiguous: pass axes, e.g. {_CHOICES[ndim]}")


def canonical_order(axes: str) -> tuple[int, ...]:
    """Permutation that puts the dimensions named by ``axes`` into TCZYX order (for ``array.transpose``)."""
    axes = validate_axes(axes, len(axes) if isinstance(axes, str) else 0)
    return tuple(sorted(range(len(axes)), key=lambda i: AXES_LETTERS.index(axes[i])))
