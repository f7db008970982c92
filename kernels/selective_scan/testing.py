"""The grid of problems every implementation is checked on, shared by the tests and the
hardware self-check (`check.py`), with the tolerances of docs/design.md.

An implementation is right on a problem when its output, final state and the VJP of every
differentiable input, for a fixed random cotangent, are within the tolerances of the
reference's on the same inputs (`worst_ratio` <= 1, numpy's allclose criterion).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax_kernels.selective_scan.api import selective_scan

# mamba_ssm's own test tolerances, for outputs and every gradient (docs/design.md).
TOLERANCES = {
  jnp.dtype(jnp.float32): dict(rtol=6e-4, atol=2e-3),
  jnp.dtype(jnp.bfloat16): dict(rtol=3e-2, atol=5e-2),
}
DIFFERENTIABLE = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


@dataclasses.dataclass(frozen=True)
class Case:
  batch: int = 3
  length: int = 37
  d_inner: int = 12
  d_state: int = 4
  groups: int = 0  # 0: B and C as (batch, length, d_state); else grouped
  z: bool = True
  D: bool = True
  delta_bias: bool = True
  initial_state: bool = True
  lengths: tuple | None = None
  softplus: bool = True
  dtype: type = jnp.float32

  def arrays(self, seed=0):
    """Inputs in the ranges Mamba sees: A negative, delta around softplus's knee."""
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 16))
    normal = lambda shape, scale=1.0: scale * jax.random.normal(next(keys), shape)
    b, l, d, n = self.batch, self.length, self.d_inner, self.d_state
    bc_shape = (b, l, self.groups, n) if self.groups else (b, l, n)
    args = dict(
      u=normal((b, l, d)),
      delta=normal((b, l, d), 0.5),
      A=-jnp.exp(normal((d, n), 0.5)),
      B=normal(bc_shape),
      C=normal(bc_shape),
      D=normal((d,)) if self.D else None,
      z=normal((b, l, d)) if self.z else None,
      delta_bias=normal((d,), 0.3) if self.delta_bias else None,
      initial_state=normal((b, d, n)) if self.initial_state else None,
    )
    low_precision = ("u", "delta", "B", "C", "z")
    return {
      k: (v.astype(self.dtype) if k in low_precision and v is not None else v)
      for k, v in args.items()
    }


# The grid: lengths that are not a multiple of the chunk, d_inner not a multiple of the block,
# d_state 1 / 4 / 16, batch 1 and 3, grouped B/C, each optional argument on and off, float32 and
# bfloat16.
CASES = {
  "everything_grouped": Case(groups=2, lengths=(37, 20, 0)),
  "minimal_d_state_1": Case(
    batch=1,
    length=16,
    d_inner=8,
    d_state=1,
    z=False,
    D=False,
    delta_bias=False,
    initial_state=False,
    softplus=False,
  ),
  "d_state_16_bfloat16": Case(d_state=16, length=29, initial_state=False, dtype=jnp.bfloat16),
  "no_z_with_lengths": Case(batch=3, length=21, d_inner=10, z=False, lengths=(5, 21, 13), groups=1),
}


# Production-scale problems for the hardware self-check (`check.py` adds them on a GPU or TPU;
# far too slow interpreted on a CPU): the launch table's own settings over several channel
# blocks and several chunks, with lengths and an initial state. On a GPU (132 SMs) the table
# gives 2x300x1536 block_d 16 (96 blocks, 5 chunks of 64), 8x200x1536 block_d 32 (48 blocks,
# 4 chunks) and 4x130x5120 block_d 64 at 2 warps (80 blocks, 3 chunks); the backward's
# workspace is reused by every chunk. Checked in float32 and bfloat16 like the rest of the grid.
PRODUCTION_CASES = {
  "production_2x300x1536x16": Case(
    batch=2, length=300, d_inner=1536, d_state=16, lengths=(300, 217)
  ),
  "production_8x200x1536x16": Case(
    batch=8, length=200, d_inner=1536, d_state=16, lengths=(200, 199, 64, 65, 1, 0, 130, 200)
  ),
  "production_4x130x5120x16": Case(
    batch=4, length=130, d_inner=5120, d_state=16, lengths=(130, 100, 64, 129)
  ),
}
ALL_CASES = CASES | PRODUCTION_CASES


def default_cases(platform):
  """The self-check's grid: CASES, and PRODUCTION_CASES too on an accelerator."""
  return ALL_CASES if platform in ("gpu", "tpu") else CASES


def run(case, args, implementation, options=None):
  """The op on a case's arguments: (out, final state)."""
  lengths = None if case.lengths is None else jnp.asarray(case.lengths, jnp.int32)
  return selective_scan(
    args["u"],
    args["delta"],
    args["A"],
    args["B"],
    args["C"],
    args["D"],
    args["z"],
    args["delta_bias"],
    delta_softplus=case.softplus,
    initial_state=args["initial_state"],
    lengths=lengths,
    return_final_state=True,
    implementation=implementation,
    options=options,
  )


def vjp_function(case, implementation, options=None, seed=0):
  """(f, args): f(*args) returns (out, final state) and the VJP of every present differentiable
  input for a fixed random cotangent, as a dict; jit-able, so it can be compiled once."""
  base = case.arrays(seed)
  names = [k for k in DIFFERENTIABLE if base[k] is not None]
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), 2)

  def f(*values):
    forward = lambda *v: run(case, dict(base, **dict(zip(names, v))), implementation, options)
    outputs, vjp = jax.vjp(forward, *values)
    cotangent = (
      jax.random.normal(keys[0], outputs[0].shape).astype(outputs[0].dtype),
      jax.random.normal(keys[1], outputs[1].shape),
    )
    return outputs, dict(zip(names, vjp(cotangent)))

  return f, tuple(base[k] for k in names)


def value_and_cotangents(case, implementation, options=None, seed=0):
  """Outputs and the VJP of every present differentiable input, for a fixed random cotangent."""
  f, args = vjp_function(case, implementation, options, seed)
  return f(*args)


def worst_ratio(actual, expected, dtype):
  """max |actual - expected| / (atol + rtol |expected|): at most 1 means within tolerance."""
  tol = TOLERANCES[jnp.dtype(dtype)]
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  if actual.shape != expected.shape:
    return float("inf")
  if actual.size == 0:
    return 0.0
  ratio = np.abs(actual - expected) / (tol["atol"] + tol["rtol"] * np.abs(expected))
  both_nan = np.isnan(actual) & np.isnan(expected)
  ratio = np.where(both_nan, 0.0, np.where(np.isnan(ratio), np.inf, ratio))
  return float(ratio.max())


def comparisons(result, expected):
  """{quantity: worst_ratio} between two value_and_cotangents results on the same case."""
  (out, state), grads = result
  (expected_out, expected_state), expected_grads = expected
  dtype = expected_out.dtype
  ratios = {
    "output": worst_ratio(out, expected_out, dtype),
    "final state": worst_ratio(state, expected_state, dtype),
  }
  for name, grad in expected_grads.items():
    ratios[f"gradient of {name}"] = worst_ratio(grads.get(name), grad, dtype)
  return ratios
