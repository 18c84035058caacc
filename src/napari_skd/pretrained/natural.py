"""Natural photographs that ship inside the scikit-image and scikit-learn wheels: the real half of the pretraining
corpus, read from the installed packages (nothing is downloaded).

Only photographs of everyday scenes, textures and astronomy are used. Microscopy and medical images (scikit-image's
``cell``, ``ihc``, ``microaneurysms``, ``retina``, ``phantom``) are left out on purpose: they belong with
``sample_data/``, the evaluation set, and must not leak into what we ship.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class NaturalFile:
    """A photograph inside an installed package."""

    package: str  # import name
    path: str  # relative to the package folder
    licence: str


#: Every real file the corpus may use, with its licence (as stated in the package's docs).
NATURAL_FILES: tuple[NaturalFile, ...] = (
    NaturalFile("skimage", "data/astronaut.png", "public domain (NASA)"),
    NaturalFile("skimage", "data/brick.png", "CC0 (CC0Textures)"),
    NaturalFile("skimage", "data/camera.png", "CC0 (Lav Varshney)"),
    NaturalFile("skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)"),
    NaturalFile("skimage", "data/coffee.png", "CC0 (Rachel Michetti)"),
    NaturalFile("skimage", "data/coins.png", "no known copyright restrictions (Brooklyn Museum)"),
    NaturalFile("skimage", "data/grass.png", "CC0 (CC0Textures)"),
    NaturalFile("skimage", "data/gravel.png", "CC0 (CC0Textures)"),
    NaturalFile("skimage", "data/hubble_deep_field.jpg", "public domain (NASA), CC0"),
    NaturalFile("skimage", "data/page.png", "public domain (Stefan van der Walt)"),
    NaturalFile("skimage", "data/rocket.jpg", "public domain (SpaceX)"),
    NaturalFile("skimage", "data/text.png", "public domain"),
    NaturalFile("sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele, Flickr)"),
    NaturalFile("sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion, Flickr)"),
)


def locate(item: NaturalFile) -> Path | None:
    """The file's path in the installed package, or None when the package is not installed."""
    spec = importlib.util.find_spec(item.package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / item.path
    return path if path.exists() else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_gray(path: Path) -> np.ndarray:
    """A photograph as float32 grey values in [0, 1] (luminance of colour images)."""
    from skimage.io import imread  # skimage.io loads imageio: only pretraining reads photographs

    img = np.asarray(imread(path)).astype(np.float32)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if img.shape[-1] >= 3 else img[..., 0]
    img -= img.min()
    return img / max(float(img.max()), 1e-6)


def natural_images() -> tuple[list[np.ndarray], list[dict]]:
    """The photographs that are installed, and their manifest entries (package, path, sha256, licence, shape)."""
    images, entries = [], []
    for item in NATURAL_FILES:
        path = locate(item)
        if path is None:
            continue
        img = read_gray(path)
        images.append(img)
        entries.append(
            {"package": item.package, "path": item.path, "sha256": sha256(path), "licence": item.licence,
             "shape": list(img.shape)}
        )  # fmt: skip
    return images, entries
