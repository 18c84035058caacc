"""What the command line prints: progress as a bar on terminals or as log lines, from the main process only."""

from __future__ import annotations

import logging
import os
import sys

from ..progress import ProgressEvent, ProgressFn

log = logging.getLogger("napari_skd")


def is_main_rank() -> bool:
    """Under torchrun every rank runs the command; only rank 0 reports."""
    return os.environ.get("RANK", "0") == "0"


def say(text: str) -> None:
    """A result line on stdout (main rank only; shown even with --quiet)."""
    if is_main_rank():
        print(text, flush=True)


def progress_printer(quiet: bool = False) -> ProgressFn | None:
    """A progress bar redrawn in place on a terminal; otherwise log lines about every 10 % and at validations.

    On a terminal the message of a bar's first event is printed above it. An event without a total (e.g.
    restoration retrying a block with smaller tiles) is a plain message: no bar, no ``0/0`` counter.
    """
    if quiet or not is_main_rank():
        return None
    bar = sys.stderr.isatty()
    bar_open = False  # a bar line is drawn and not yet ended with a newline
    bar_running = False  # a bar has started and not reached its total

    def show(e: ProgressEvent) -> None:
        nonlocal bar_open, bar_running
        if e.diagnostics:
            log.debug("[diagnostics] step %d: %s", e.step, describe_terms(e.diagnostics))
        losses = " ".join(f"{k}={v:.4g}" for k, v in e.losses.items())
        metrics = " ".join(f"{k}={v:.4g}" for k, v in e.metrics.items())
        eta = f"eta {e.eta_s:.0f}s" if e.eta_s is not None else ""
        if bar and e.phase in ("train", "teacher", "restore", "qc") and e.total:
            if e.message and not bar_running:  # what a new bar is about (e.g. the restoration plan) on its own line
                log.info(f"[{e.phase}] {e.message}")
            width = 30
            filled = int(width * min(e.step, e.total) / e.total)
            line = f"\r[{e.phase}] [{'#' * filled}{'.' * (width - filled)}] {e.step}/{e.total} {eta} {losses}"
            sys.stderr.write(line[:160].ljust(100))
            bar_open = bar_running = e.step < e.total
            if e.step == e.total or e.metrics:
                sys.stderr.write("\n")
                bar_open = False
                if metrics:
                    log.info("[%s] %d/%d %s", e.phase, e.step, e.total, metrics)
            sys.stderr.flush()
            return
        every = max(1, e.total // 10)
        routine = not e.metrics and not e.message and e.step % every and e.step != e.total
        if e.phase in ("train", "teacher", "restore", "qc") and routine:
            return
        if bar_open:  # a message in the middle of a bar starts on its own line
            sys.stderr.write("\n")
            sys.stderr.flush()
            bar_open = False
        counter = f"{e.step}/{e.total}" if e.total else ""
        log.info(" ".join(part for part in (f"[{e.phase}]", counter, losses, metrics, eta, e.message) if part))

    return show


def describe_terms(diag: dict[str, float]) -> str:
    """``rec 0.081 |g| 0.52; gk 0.004 |g| 0.052 cos +0.12`` from a trainer's per-term diagnostics."""
    parts = []
    for term in (k for k in diag if not k.endswith(("_grad", "_cos"))):
        text = f"{term} {diag[term]:.4g} |g| {diag.get(term + '_grad', float('nan')):.3g}"
        if term + "_cos" in diag:
            text += f" cos {diag[term + '_cos']:+.2f}"
        parts.append(text)
    return "; ".join(parts)


def setup_logging(quiet: bool, verbose: bool, log_file: str | None) -> None:
    """Log lines to stdout (INFO, or DEBUG with --verbose, WARNING with --quiet) and, on request, to a file."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    handlers[0].setFormatter(logging.Formatter("%(message)s"))
    for h in handlers[1:]:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = handlers
    log.setLevel(logging.DEBUG if log_file else level)
    handlers[0].setLevel(level)
    log.propagate = False
