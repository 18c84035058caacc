"""Shipped generalist models, pretrained on a synthetic and natural-image corpus, loaded by name.

``pretrained:general-2d`` is the teacher (a Restormer), ``pretrained:general-2d-cnn`` a CNN teacher (``unet-m``)
and ``pretrained:general-2d-student`` the student (``unet-s``, trained on the same corpus). They were trained only
on generated dead-leaves images and on photographs that ship inside the scikit-image and scikit-learn wheels
(``weights/MANIFEST.json`` lists each file with sha256 and licence), never on ``sample_data/``. They normalise each
input with its own percentiles.
"""

from __future__ import annotations

from .names import CNN_TEACHER, PREFIX, PRETRAINED, STUDENT, TEACHER, is_pretrained_name, resolve

__all__ = ["CNN_TEACHER", "PREFIX", "PRETRAINED", "STUDENT", "TEACHER", "is_pretrained_name", "resolve"]
