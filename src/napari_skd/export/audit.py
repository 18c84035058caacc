"""The no-Python-pickle audit of a package zip: which members could run code when loaded.

TorchScript archives pass when their pickles name only tensor-rebuilding functions, containers and TorchScript
classes: the restricted format ``torch.jit.load`` reads with its own unpickler.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path

import numpy as np

# Python-pickle globals a TorchScript archive may name. ``__torch__.*`` are TorchScript classes resolved by the
# TorchScript type system (never imported as Python code); the rest rebuild tensors and containers.
_TORCHSCRIPT_GLOBALS = {
    "collections": {"OrderedDict"},
    "torch._utils": {"_rebuild_tensor_v2"},
    "torch.jit._pickle": {
        "restore_type_tag",
        "build_intlist",
        "build_doublelist",
        "build_boollist",
        "build_tensorlist",
    },
}
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib")


def pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle stream references (what unpickling would import), without loading it.

    Protocol-2 ``GLOBAL`` names are exact; ``STACK_GLOBAL``, ``INST`` and ``OBJ`` are reported in ``<...>``, which
    no allow-list accepts.
    """
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, name = str(arg).split(" ", 1)
            found.add(f"{module}.{name}")
        elif op.name == "STACK_GLOBAL":  # operands may come from the memo: never trusted
            found.add(f"<STACK_GLOBAL {'.'.join(strings[-2:])}>")
        elif op.name in ("INST", "OBJ"):
            found.add(f"<{op.name} {arg}>")
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _torchscript_global_ok(ref: str) -> bool:
    if ref.startswith("__torch__."):
        return True
    module, _, name = ref.rpartition(".")
    if module == "torch" and name.endswith("Storage"):
        return True
    return name in _TORCHSCRIPT_GLOBALS.get(module, set())


def _is_pickle(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5  # PROTO opcode, protocols 2-5


def unsafe_pickles(package: str | Path) -> list[str]:
    """Members of a package zip that are, or may hold, Python pickles able to run code; empty means none.

    Flagged: a member that starts like a pickle (protocol 2-5) or has a pickle/PyTorch suffix (``.pkl``, ``.pt``,
    ...) and is not a zip archive; a ``.npy`` array of Python objects; a zip archive (such as a ``torch.save`` file)
    holding a pickle, unless it is a TorchScript archive whose pickles name only tensor-rebuilding functions,
    containers and TorchScript classes (``_TORCHSCRIPT_GLOBALS``): the restricted format ``torch.jit.load`` reads.
    """
    bad: list[str] = []
    with zipfile.ZipFile(package) as z:
        for name in z.namelist():
            data = z.read(name)
            if data[:4] == b"PK\x03\x04":
                bad += [f"{name}: {problem}" for problem in _archive_problems(data)]
            elif _is_pickle(data) or name.lower().endswith(_PICKLE_SUFFIXES) or _is_object_npy(data):
                bad.append(name)
    return bad


def _is_object_npy(data: bytes) -> bool:
    """A ``.npy`` that numpy refuses to load without pickle (an array of Python objects)."""
    if not data.startswith(b"\x93NUMPY"):
        return False
    try:
        np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError:
        return True
    return False


def _archive_problems(archive: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        names = z.namelist()
        torchscript = any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
        problems = []
        for n in names:
            data = z.read(n)
            if not (n.endswith(".pkl") or _is_pickle(data)):
                continue
            if not torchscript:
                problems.append(f"{n} is a Python pickle")
                continue
            problems += [f"{n} references {g}" for g in sorted(pickle_globals(data)) if not _torchscript_global_ok(g)]
        return problems
