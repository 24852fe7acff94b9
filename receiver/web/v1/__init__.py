"""The operator API under /v1, one module per resource; all of it behind the bearer check in common.py."""

from . import clocks, consent, deliveries, erasure, events, export, links, opt_outs, proof, review  # noqa: F401 (their routes hang on bp)
from .common import bp

__all__ = ["bp"]
