"""The selective-scan op (mamba_ssm's `selective_scan_fn`, channels-last) and its implementations."""

from kernels.selective_scan.api import Implementation, resolve_implementation, selective_scan
from kernels.selective_scan.reference import selective_scan_reference

__all__ = ["Implementation", "resolve_implementation", "selective_scan",
           "selective_scan_reference"]
