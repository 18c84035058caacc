"""The manifest beside the shipped weights: every real file the corpus used (sha256, licence) and each model file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .names import PRETRAINED, WEIGHTS

MANIFEST = WEIGHTS / "MANIFEST.json"


def write_manifest(corpus: dict, corpus_hash: str, path: Path = MANIFEST) -> Path:
    """Write the manifest of the corpus (as recorded in the shipped checkpoints) and of the weight files."""
    models = {}
    for name, (file, what) in PRETRAINED.items():
        data = (WEIGHTS / file).read_bytes()
        models[f"pretrained:{name}"] = {"file": file, "sha256": hashlib.sha256(data).hexdigest(), "what": what}
    text = {"corpus_hash": corpus_hash, "corpus": corpus, "models": models,
            "note": "Synthetic dead-leaves images (napari_skd.pretrained.leaves) and photographs from installed "
                    "wheels only; nothing from sample_data/ (the evaluation set)."}  # fmt: skip
    path.write_text(json.dumps(text, indent=1) + "\n")
    return path


def read_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text())


if __name__ == "__main__":
    from ..checkpoint import load_checkpoint

    rec = load_checkpoint("pretrained:general-2d").record
    print(write_manifest(rec["corpus"], rec["corpus_hash"]))
