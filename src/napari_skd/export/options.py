"""Checks of ``export_bioimageio``'s arguments, with messages that say what to change."""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..checkpoint import Checkpoint
from ..errors import InputError
from .layout import DEFAULT_HALO, DEFAULT_TEST_SIZE, MULTIPLE, min_input_size

AUTHOR_KEYS = {"name", "affiliation", "email", "orcid"}


#: The author a package gets when none is given (bioimage.io needs one).
DEFAULT_AUTHOR = "napari-skd user"


def require_packages(onnx: bool) -> None:
    """Raise ``InputError`` naming the extra to install when ``bioimageio.spec`` (or ``onnx``) is missing."""
    try:
        import bioimageio.spec  # noqa: F401  # optional dependency: probed here for the install hint

        if onnx:
            import onnx as _onnx  # noqa: F401  # optional dependency: probed here for the install hint
    except ImportError as err:
        raise InputError(
            f"exporting bioimage.io packages needs the {err.name} package, which is not installed; "
            "install the export extra: pip install -e '.[export]' in your napari-skd clone (or pip install "
            "bioimageio.spec onnx)"
        ) from err


def _our_package(path: Path) -> bool:
    """Whether ``path`` is a zip whose ``rdf.yaml`` napari-skd wrote (it holds ``config.napari_skd``)."""
    try:
        with zipfile.ZipFile(path) as z:
            rdf = yaml.safe_load(z.read("rdf.yaml"))
    except (OSError, KeyError, zipfile.BadZipFile, yaml.YAMLError):
        return False
    return isinstance(rdf, dict) and isinstance(rdf.get("config"), dict) and "napari_skd" in rdf["config"]


def check_output(output: str | os.PathLike, overwrite: bool) -> Path:
    """The package path: a ``.zip`` in a writable folder, not existing unless ``overwrite``."""
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise InputError(f"the package must be a .zip file, got {output}; e.g. use {output.stem}.bioimageio.zip")
    if output.is_dir():
        raise InputError(f"{output} is a folder; give the path of the .zip file to write")
    if output.exists() and not _our_package(output):
        raise InputError(
            f"{output} exists and is not a bioimage.io package napari-skd exported: napari-skd never replaces what "
            "it did not write, even with overwrite; choose another path"
        )
    if output.exists() and not overwrite:
        raise InputError(f"{output} exists; choose another path or overwrite it (overwrite=True, --overwrite)")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as err:
        raise InputError(
            f"cannot write to the folder {output.parent} ({err.strerror or err}); choose an output folder you can "
            "write to"
        ) from err
    return output


def check_halo(halo: int | None, dims: int) -> int:
    """``halo``, or the default for ``dims`` spatial dimensions when None; a whole number of pixels >= 0."""
    halo = DEFAULT_HALO[dims] if halo is None else halo
    if not isinstance(halo, int) or halo < 0:
        raise InputError(f"halo must be a whole number of pixels >= 0, got {halo!r}")
    return halo


def check_test_size(test_size: int | None, dims: int, halo: int) -> int:
    """Side of the test input: ``test_size`` if valid for ``halo``, else the default for ``dims`` dimensions."""
    smallest = min_input_size(halo)
    if test_size is None:
        return max(DEFAULT_TEST_SIZE[dims], smallest)
    if not isinstance(test_size, int) or test_size % MULTIPLE or test_size < smallest:
        raise InputError(
            f"test_size must be a multiple of {MULTIPLE} and at least {smallest} (the smallest input allowed with "
            f"halo {halo}), got {test_size!r}"
        )
    return test_size


def check_metadata(
    ck: Checkpoint,
    name: str | None,
    description: str | None,
    authors: Sequence[str | Mapping[str, str]] | None,
    license: str,
) -> dict[str, Any]:
    """Name, description, licence and authors as the model description takes them, with defaults filled in."""
    from bioimageio.spec.model.v0_5 import Author, LicenseId  # optional dependency: imported on use

    cfg = ck.config
    name = name or f"napari-skd {ck.role} {cfg.arch} {cfg.spatial_dims}D"
    if not re.fullmatch(r"[A-Za-z0-9_+\- ()]{5,128}", name):
        raise InputError(f"invalid package name {name!r}: use 5 to 128 letters, digits, spaces and _ + - ( ) only")
    description = description or (
        f"{cfg.arch.capitalize()} {ck.role} ({cfg.spatial_dims}D, {cfg.in_channels}->{cfg.out_channels} channels) "
        "for image denoising and restoration, trained with napari-skd (soft knowledge distillation of a Restormer)."
    )
    if len(description) > 1024:
        raise InputError(f"the description has {len(description)} characters; at most 1024 are allowed")
    try:
        license_id = LicenseId(license)
    except ValidationError as err:
        raise InputError(
            f"unknown licence {license!r}: use an SPDX identifier such as BSD-3-Clause, MIT, CC-BY-4.0"
        ) from err
    people = []
    # bioimage.io requires at least one author; without one we put a placeholder the user can see and replace
    # (--author, the Models widget's 'authors'), never a name guessed from the machine (personal data)
    for author in authors or [{"name": DEFAULT_AUTHOR}]:
        entry = {"name": author} if isinstance(author, str) else dict(author)
        extra = set(entry) - AUTHOR_KEYS
        if extra or "name" not in entry:
            raise InputError(
                f"invalid author {author!r}: give a name, or a dict with 'name' and optionally "
                f"{', '.join(sorted(AUTHOR_KEYS - {'name'}))} (github_user is not supported: checking it needs the "
                "internet)"
            )
        try:
            people.append(Author(**entry))
        except ValidationError as err:
            raise InputError(f"invalid author {author!r}: {_first_error(err)}") from err
    return {"name": name, "description": description, "license": license_id, "authors": people}


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    return f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
