"""The entry points ``train_teacher(config)`` and ``distill(config)``: validated job in, saved checkpoint out.

Each lives with its job (``teacher``, ``student``); what they share is in ``checks`` (the job and its output),
``prepare`` (device, network, patch plan, sampler) and ``record`` (metrics, fingerprint, record, saving).
"""

from .student import distill
from .teacher import train_teacher

__all__ = ["distill", "train_teacher"]
