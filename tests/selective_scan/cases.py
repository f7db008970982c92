"""Random selective-scan problems and comparison helpers shared by the op's tests."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kernels.selective_scan import selective_scan

# DESIGN.md section 2 (mamba_ssm's own test tolerances), for outputs and every gradient.
TOLERANCES = {jnp.float32: dict(rtol=6e-4, atol=2e-3), jnp.bfloat16: dict(rtol=3e-2, atol=5e-2)}
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
    args = dict(u=normal((b, l, d)), delta=normal((b, l, d), 0.5),
                A=-jnp.exp(normal((d, n), 0.5)), B=normal(bc_shape), C=normal(bc_shape),
                D=normal((d,)) if self.D else None, z=normal((b, l, d)) if self.z else None,
                delta_bias=normal((d,), 0.3) if self.delta_bias else None,
                initial_state=normal((b, d, n)) if self.initial_state else None)
    low_precision = ("u", "delta", "B", "C", "z")
    return {k: (v.astype(self.dtype) if k in low_precision and v is not None else v)
            for k, v in args.items()}


def run(case, args, implementation, **options):
  lengths = None if case.lengths is None else jnp.asarray(case.lengths, jnp.int32)
  return selective_scan(args["u"], args["delta"], args["A"], args["B"], args["C"], args["D"],
                        args["z"], args["delta_bias"], delta_softplus=case.softplus,
                        initial_state=args["initial_state"], lengths=lengths,
                        return_final_state=True, implementation=implementation, **options)


def value_and_cotangents(case, implementation, seed=0, **options):
  """Outputs and the VJP of every present differentiable input, for a fixed random cotangent."""
  args = case.arrays(seed)
  names = [k for k in DIFFERENTIABLE if args[k] is not None]

  def f(*values):
    return run(case, dict(args, **dict(zip(names, values))), implementation, **options)

  outputs, vjp = jax.vjp(f, *[args[k] for k in names])
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), 2)
  cotangent = (jax.random.normal(keys[0], outputs[0].shape).astype(outputs[0].dtype),
               jax.random.normal(keys[1], outputs[1].shape))
  return outputs, dict(zip(names, vjp(cotangent)))


def assert_close(actual, expected, dtype, what):
  tol = TOLERANCES[dtype]
  np.testing.assert_allclose(np.asarray(actual, np.float32), np.asarray(expected, np.float32),
                             err_msg=what, **tol)


def assert_matches_reference(case, implementation, **options):
  expected_out, expected_grads = value_and_cotangents(case, "reference")
  out, grads = value_and_cotangents(case, implementation, **options)
  assert out[0].dtype == case.dtype and out[1].dtype == jnp.float32
  assert_close(out[0], expected_out[0], case.dtype, "output")
  assert_close(out[1], expected_out[1], case.dtype, "final state")
  assert grads.keys() == expected_grads.keys()
  for name, grad in grads.items():
    assert grad.dtype == expected_grads[name].dtype, name
    assert_close(grad, expected_grads[name], case.dtype, f"gradient of {name}")


# The grid every fast implementation is checked on (issue 2's list): lengths that are not a
# multiple of the chunk, d_inner not a multiple of the block, d_state 1 / 4 / 16, batch 1 and 3,
# grouped B/C, each optional argument on and off, float32 and bfloat16.
CASES = {
    "everything_grouped": Case(groups=2, lengths=(37, 20, 0)),
    "minimal_d_state_1": Case(batch=1, length=16, d_inner=8, d_state=1, z=False, D=False,
                              delta_bias=False, initial_state=False, softplus=False),
    "d_state_16_bfloat16": Case(d_state=16, length=29, initial_state=False, dtype=jnp.bfloat16),
    "no_z_with_lengths": Case(batch=3, length=21, d_inner=10, z=False, lengths=(5, 21, 13),
                              groups=1),
}
