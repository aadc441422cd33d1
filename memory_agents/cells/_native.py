"""Optional fused C kernels for the pointwise updates (float32, CPU). Filled in below."""

from __future__ import annotations


def pointwise_for(tensor):
    """The native pointwise implementation for ``tensor``'s dtype/device, or None."""
    return None


def backend_name() -> str:
    return "torch"
