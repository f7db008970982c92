"""What the Pallas TPU and GPU variants of the selective scan share: the launch description and
the per-element math of the step size and the output gate.

The recurrences themselves differ by backend: the TPU kernel (`pallas_tpu_kernels.py`) works on
whole chunks staged in VMEM with B/C as (time, d_state) rows; the GPU kernel
(`pallas_gpu_kernels.py`) steps through rows and columns of global memory.
"""

import dataclasses

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import elementwise


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  """Static description of one kernel launch (hashable: it is a custom_vjp nondiff argument).

  num_warps and num_stages are Triton launch settings (GPU variant only; None on TPU).
  unroll: the TPU kernel unrolls its time loops (static indices); None means "unless
  interpreting" (`unrolled`).
  """

  chunk: int
  block_d: int
  has_z: bool
  delta_softplus: bool
  backend: str  # "tpu" or "gpu"
  interpret: bool
  num_warps: int | None = None
  num_stages: int | None = None
  unroll: bool | None = None

  @property
  def unrolled(self):
    return (not self.interpret) if self.unroll is None else self.unroll


def step_size(raw, valid, cfg):
  """dt from delta + bias (`raw`): softplus when asked, 0 where the step is masked."""
  dt = elementwise.softplus(raw) if cfg.delta_softplus else raw
  return jnp.where(valid, dt, 0.0)


def step_size_grad(raw, cfg):
  """d dt / d raw at unmasked steps."""
  return elementwise.softplus_grad(raw) if cfg.delta_softplus else jnp.ones_like(raw)


def gate_and_grad(z, y0, g):
  """For out = y0 * silu(z): (d out/d y0 applied to g, dz = g * y0 * silu'(z))."""
  gate = jax.nn.sigmoid(z)
  dz = g * y0 * gate * (1.0 + z * (1.0 - gate))
  return g * z * gate, dz
