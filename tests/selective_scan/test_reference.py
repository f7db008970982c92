"""The reference is the ground truth: check it against first principles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from mamba_jax_kernels.selective_scan import selective_scan
from tests.selective_scan.cases import Case


def _naive_loop(case, args):
  """The recurrence written out per example, channel and step in NumPy float64."""
  a = {k: None if v is None else np.asarray(v, np.float64) for k, v in args.items()}
  b, l, d, n = case.batch, case.length, case.d_inner, case.d_state
  B, C = a["B"], a["C"]
  if B.ndim == 3:
    B, C = B[:, :, None], C[:, :, None]
  per_group = d // B.shape[2]
  out = np.zeros((b, l, d))
  final = np.zeros((b, d, n))
  for i in range(b):
    valid = l if case.lengths is None else case.lengths[i]
    for ch in range(d):
      h = np.zeros(n) if a["initial_state"] is None else a["initial_state"][i, ch].copy()
      for t in range(valid):
        dt = a["delta"][i, t, ch] + (0 if a["delta_bias"] is None else a["delta_bias"][ch])
        if case.softplus:
          dt = dt if dt > 20 else np.log1p(np.exp(dt))
        g = ch // per_group
        h = np.exp(dt * a["A"][ch]) * h + dt * B[i, t, g] * a["u"][i, t, ch]
        y = h @ C[i, t, g] + (0 if a["D"] is None else a["D"][ch] * a["u"][i, t, ch])
        if a["z"] is not None:
          zz = a["z"][i, t, ch]
          y *= zz / (1 + np.exp(-zz))
        out[i, t, ch] = y
      final[i, ch] = h
  return out, final


@pytest.mark.parametrize(
  "case", [Case(groups=2, lengths=(37, 20, 0)), Case(batch=1, d_state=3, z=False, softplus=False)]
)
def test_reference_matches_naive_loop(case):
  args = case.arrays()
  lengths = None if case.lengths is None else jnp.asarray(case.lengths)
  out, final = selective_scan(
    **args,
    delta_softplus=case.softplus,
    lengths=lengths,
    return_final_state=True,
    implementation="reference",
  )
  expected_out, expected_final = _naive_loop(case, args)
  np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(final, expected_final, rtol=1e-4, atol=1e-4)


def test_reference_gradients_match_finite_differences_in_float64():
  case = Case(batch=2, length=6, d_inner=4, d_state=3, groups=2, lengths=(6, 4))
  with jax.enable_x64(True):
    args = {k: None if v is None else jnp.asarray(v, jnp.float64) for k, v in case.arrays().items()}
    names = [k for k, v in args.items() if v is not None]
    lengths = jnp.asarray(case.lengths)

    def f(*values):
      out, final = selective_scan(
        **dict(args, **dict(zip(names, values))),
        delta_softplus=True,
        lengths=lengths,
        return_final_state=True,
        implementation="reference",
      )
      return jnp.sum(jnp.sin(out)) + jnp.sum(final**2)

    jtu.check_grads(
      f, [args[k] for k in names], order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7
    )


def test_softplus_is_identity_above_threshold():
  case = Case(
    batch=1, length=3, d_inner=2, d_state=2, z=False, D=False, delta_bias=False, initial_state=False
  )
  args = case.arrays()
  big = jnp.full_like(args["delta"], 25.0)
  a = selective_scan(**dict(args, delta=big), delta_softplus=True, implementation="reference")
  b = selective_scan(**dict(args, delta=big), delta_softplus=False, implementation="reference")
  np.testing.assert_array_equal(a, b)
