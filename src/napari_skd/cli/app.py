"""Command line ``napari-skd``: a thin adapter over the core (parse, call, print); never imports napari or Qt.

Exit codes: 0 success, 2 bad input or configuration (message, no traceback), 1 internal failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from ..distillation.config import DistillJob, TeacherJob
from ..errors import SkdError
from ..models import PRESETS
from ..restoration.job import RestoreJob
from .commands import COMMANDS
from .flags import DEST, add_model_flags
from .report import setup_logging

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors are bad input too
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"napari-skd: error: {message}\n")


DESCRIPTION = """\
Restore (denoise) microscopy and medical images with deep networks, on a laptop or a cluster: train a large
Restormer teacher on your own images (with clean pairs, or Noise2Void from noisy images alone), distil it into a
small fast student, and restore images of any size tile by tile into OME-Zarr. Runs headless with the same engine as
the napari plugin."""

EPILOG = """\
typical order:
  napari-skd train-teacher --config teacher.yaml   # 1. a teacher on your images
  napari-skd distill --config student.yaml         # 2. a small student from it
  napari-skd info runs/student.pt                  # 3. what it is, how it was trained, how well it did
  napari-skd restore big.tif --checkpoint runs/student.pt --output big-restored.ome.zarr   # 4. restore
  napari-skd export runs/student.pt --output student.zip   # optional: a bioimage.io model package
  bench compares teacher and students on an image; convert writes OME-Zarr from TIFF, NIfTI or DICOM.

'napari-skd COMMAND --help' lists every option of a command with its default.
docs: docs/cli.md (commands, YAML jobs), docs/napari.md (the plugin), docs/troubleshooting.md (error messages);
example jobs in docs/examples/; 'make demo' in the repository runs the whole chain on the shipped sample image."""


class _DefaultsOnce(argparse.HelpFormatter):
    """Each option's default once: added to its help unless the help already names one or there is none (None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class _TopHelp(_DefaultsOnce, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help; the description and the examples kept as written."""


def build_parser() -> argparse.ArgumentParser:

    fmt = _DefaultsOnce
    p = _Parser(prog="napari-skd", description=DESCRIPTION, epilog=EPILOG, formatter_class=_TopHelp)
    p.add_argument("--verbose", action="store_true", help="debug log lines and tracebacks of internal errors")
    p.add_argument("--quiet", action="store_true", help="only results and errors, no progress")
    p.add_argument("--log-file", help="also write every log line, with times, to this file")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser(
        "info", help="a checkpoint's training record, parameters and FLOPs (or a preset's)", formatter_class=fmt
    )
    src = info.add_mutually_exclusive_group(required=True)
    src.add_argument("checkpoint", nargs="?", help="checkpoint file (.pt) or official Restormer .pth")
    src.add_argument("--preset", choices=list(PRESETS), help="a named architecture instead of a checkpoint")
    info.add_argument("--size", type=int, default=256, help="side of the square (or cubic) input for FLOPs")
    info.add_argument("--in-channels", type=int, default=1, help="image channels (presets only)")
    info.add_argument("--spatial-dims", type=int, choices=(2, 3), default=2, help="2D or 3D network (presets only)")

    bench = sub.add_parser(
        "bench", help="teacher vs students: parameters, FLOPs, latency and quality on a real image", formatter_class=fmt
    )
    bench.add_argument(
        "--image",
        default="nuclei2d",
        help="a sample name (nuclei2d, cell, mri_t1, ct_slice; see sample_data/README.md) or the path of your own "
        "image (TIFF, OME-Zarr, NIfTI, DICOM); a stack is measured on one YX plane: the middle Z slice, the first "
        "channel and time point",
    )
    bench.add_argument("--axes", help="axes of --image when the file does not say, e.g. ZYX or CYX")
    bench.add_argument("--size", type=int, default=256, help="side of the square input timed for latency")
    bench.add_argument("--teacher", default="teacher", help="teacher preset name or checkpoint file")
    bench.add_argument("--students", nargs="+", default=["student-s", "student-xs"], help="presets or checkpoints")
    bench.add_argument("--repeats", type=int, default=3, help="timed forward passes per model (median reported)")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    bench.add_argument(
        "--degradation",
        choices=["gaussian", "poisson_gaussian", "rician", "blur_noise"],
        help="also measure PSNR/SSIM on the held-out bottom quarter of the image under this synthetic degradation",
    )
    bench.add_argument("--sigma", type=float, default=0.05, help="noise sigma of --degradation (normalised units)")
    bench.add_argument("--peak", type=float, default=20.0, help="photons at intensity 1 (poisson_gaussian)")
    bench.add_argument("--seed", type=int, default=1234, help="seed of the evaluation noise")
    bench.add_argument(
        "--presets",
        nargs="*",
        metavar="PRESET",
        help="instead: time model presets on this machine (all when none are named): restore Mpx/s, GFLOP/s and "
        "share of the matmul peak, training and distillation steps/s (the table of docs/benchmarks.md)",
    )

    for name, what, model in (
        ("train-teacher", "train a teacher (supervised, or Noise2Void without clean data)", TeacherJob),
        ("distill", "distil a student from a teacher checkpoint", DistillJob),
    ):
        job = sub.add_parser(
            name, help=what, description=f"{what}. Settings come from --config (YAML) and/or flags; flags win."
        )
        job.add_argument("--config", help="YAML job file (see docs/examples/ and docs/cli.md)")
        job.add_argument("--steps", dest=DEST + "train.steps", type=int, metavar="N", help="short for --train.steps")
        job.add_argument("--device", dest=DEST + "train.device", metavar="DEVICE", help="short for --train.device")
        if name == "distill":
            job.add_argument("--method", dest=DEST + "loss.method", metavar="METHOD", help="short for --loss.method")
        add_model_flags(job, model)

    rst = sub.add_parser(
        "restore",
        help="restore images tile by tile into OME-Zarr (many inputs, resumable, optionally on a dask cluster)",
        description="Restore images; settings come from --config (YAML) and/or flags; flags win. One output per "
        "input; finished outputs are skipped and partial ones resumed.",
    )
    rst.add_argument("inputs", nargs="*", help="images, globs or folders (same as --input)")
    rst.add_argument("--config", help="YAML job file (see docs/cli.md)")
    add_model_flags(rst, RestoreJob)
    conv = sub.add_parser(
        "convert", help="convert an image (TIFF, NIfTI, DICOM, zarr) to OME-Zarr", formatter_class=fmt
    )
    conv.add_argument("input", help="image file or folder")
    conv.add_argument("output", help="OME-Zarr store to write")
    conv.add_argument("--axes", help="axes of the input when the file does not say, e.g. ZYX")
    conv.add_argument("--chunks", type=int, default=256, help="chunk side in voxels")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing output")
    conv.add_argument(
        "--pyramid-levels", default="auto", help="2x levels for viewers: auto (until the smallest fits 1024 px) or N"
    )
    exp = sub.add_parser("export", help="write a checkpoint as a bioimage.io model package (.zip)", formatter_class=fmt)
    exp.add_argument("checkpoint", help="napari-skd checkpoint (student or teacher)")
    exp.add_argument("--output", required=True, help="package to write, e.g. model.zip")
    exp.add_argument("--name", help="model name (default: from the checkpoint)")
    exp.add_argument("--description", help="one-line description (default: from the checkpoint's record)")
    exp.add_argument(
        "--author",
        action="append",
        help="an author: a name, optionally with '; affiliation=...; email=...; orcid=...'; repeat for several "
        "(default: napari-skd user)",
    )
    exp.add_argument(
        "--include-paths",
        action="store_true",
        help="keep the training files' names in the package (withheld by default: they can be personal data)",
    )
    exp.add_argument("--license", default="BSD-3-Clause", help="SPDX licence of the weights")
    exp.add_argument(
        "--halo", type=int, help="pixels the consumer should crop from tile borders (default: 24 2D, 12 3D)"
    )
    exp.add_argument("--test-size", type=int, help="side of the test input, a multiple of 8 (default: 64 2D, 32 3D)")
    exp.add_argument(
        "--test-image",
        help="an image of yours (any format restore reads) whose centre crop becomes the package's test input "
        "(default: a shipped sample)",
    )
    exp.add_argument("--test-axes", help="axes of --test-image when the file does not say, e.g. ZYX")
    exp.add_argument("--no-onnx", action="store_true", help="TorchScript weights only")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing package")
    return p


def main(argv: Sequence[str] | None = None) -> int:

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose, args.log_file)
    cancel = threading.Event()
    previous = _stop_on_ctrl_c(cancel)
    try:
        COMMANDS[args.command](args, cancel)
    except SkdError as exc:
        print(f"napari-skd: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("napari-skd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an internal failure: say so plainly, traceback only on request
        if args.verbose:
            traceback.print_exc()
        print(
            f"napari-skd: internal error: {type(exc).__name__}: {exc} (rerun with --verbose for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if cancel.is_set():
        print("napari-skd: interrupted; the work so far is saved and a rerun of the same command resumes it",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    return EXIT_OK


def _stop_on_ctrl_c(cancel: threading.Event):
    """First Ctrl-C (or SIGTERM) asks the running job to stop cleanly; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\nnapari-skd: stopping after the current step (Ctrl-C again to abort)...", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return previous


if __name__ == "__main__":
    sys.exit(main())
