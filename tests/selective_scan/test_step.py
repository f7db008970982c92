"""selective_scan_step against the scan: one step, several steps, gradients, argument errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax_kernels.selective_scan import selective_scan, selective_scan_step
from tests.selective_scan.cases import Case, assert_close

STEP_CASES = {
  "everything_grouped": Case(batch=3, length=9, d_inner=12, d_state=4, groups=2),
  "minimal_d_state_1": Case(
    batch=1, length=9, d_inner=8, d_state=1, z=False, D=False, delta_bias=False, softplus=False
  ),
  "d_state_16_bfloat16": Case(batch=2, length=9, d_state=16, dtype=jnp.bfloat16),
  "one_group_no_z": Case(batch=2, length=9, d_inner=10, z=False, groups=1),
}
SEQUENCES = ("u", "delta", "z", "B", "C")


def _at(args, t):
  """The step arguments of time step t: sequences sliced at t, the rest unchanged."""
  return {k: (v[:, t] if k in SEQUENCES and v is not None else v) for k, v in args.items()}


def _step(case, args, state):
  return selective_scan_step(
    state,
    args["u"],
    args["delta"],
    args["A"],
    args["B"],
    args["C"],
    D=args["D"],
    z=args["z"],
    delta_bias=args["delta_bias"],
    delta_softplus=case.softplus,
  )


def _scan(case, args, state):
  rest = {k: v for k, v in args.items() if k != "initial_state"}
  return selective_scan(
    **rest,
    delta_softplus=case.softplus,
    initial_state=state,
    return_final_state=True,
    implementation="reference",
  )


@pytest.mark.parametrize("name", list(STEP_CASES))
def test_one_step_equals_the_scan_of_one_step(name):
  case = STEP_CASES[name]
  args = case.arrays()
  state = args["initial_state"]
  y, new_state = _step(case, _at(args, 0), state)
  one = {k: (v[:, :1] if k in SEQUENCES and v is not None else v) for k, v in args.items()}
  out, final = _scan(case, one, state)
  assert y.dtype == case.dtype and new_state.dtype == jnp.float32
  # The same float32 arithmetic: equal up to rounding, far inside the op's tolerances.
  np.testing.assert_allclose(
    np.asarray(y, np.float32), np.asarray(out[:, 0], np.float32), rtol=1e-6, atol=1e-6
  )
  np.testing.assert_allclose(new_state, final, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(STEP_CASES))
def test_steps_from_a_state_equal_the_scan(name):
  case = STEP_CASES[name]
  args = case.arrays()
  state, outputs = args["initial_state"], []
  step = jax.jit(lambda a, s: _step(case, a, s))
  for t in range(case.length):
    y, state = step(_at(args, t), state)
    outputs.append(y)
  out, final = _scan(case, args, args["initial_state"])
  assert_close(jnp.stack(outputs, axis=1), out, case.dtype, "outputs")
  assert_close(state, final, jnp.float32, "final state")


def test_gradients_of_one_step_equal_those_of_the_scan():
  case = STEP_CASES["everything_grouped"]
  args = case.arrays()
  names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
  step_args = _at(args, 0)
  one = {k: (v[:, :1] if k in SEQUENCES and v is not None else v) for k, v in args.items()}

  def step_loss(*values):
    a = dict(step_args, **dict(zip(names, values)))
    y, state = _step(case, a, a["initial_state"])
    return jnp.sum(jnp.sin(y)) + jnp.sum(state**2)

  def scan_loss(*values):
    a = dict(one, **dict(zip(names, values)))
    out, state = _scan(case, a, a["initial_state"])
    return jnp.sum(jnp.sin(out)) + jnp.sum(state**2)

  argnums = tuple(range(len(names)))
  step_grads = jax.grad(step_loss, argnums)(*[step_args[k] for k in names])
  scan_grads = jax.grad(scan_loss, argnums)(*[one[k] for k in names])
  for name, got, expected in zip(names, step_grads, scan_grads):
    assert_close(got, expected.reshape(got.shape), jnp.float32, f"gradient of {name}")


def _step_args():
  return _at(Case(batch=2, length=1, d_inner=4, d_state=3).arrays(), 0)


@pytest.mark.parametrize(
  "change,message",
  [
    (dict(u=jnp.zeros((2, 1, 4))), r"'u' has shape \(2, 1, 4\); expected \(batch, d_inner\)"),
    (dict(delta=jnp.zeros((2, 3))), r"'delta' has shape \(2, 3\); expected .*\(2, 4\)"),
    (dict(initial_state=jnp.zeros((2, 4))), r"'state' has shape \(2, 4\); expected .*\(2, 4, 3\)"),
    (dict(B=jnp.zeros((2, 2))), r"'B' has shape \(2, 1, 2\); expected \(batch, d_state\)"),
    (
      dict(B=jnp.zeros((2, 3, 3)), C=jnp.zeros((2, 3, 3))),
      r"'B' has shape \(2, 3, 3\); expected groups \(axis 1\) dividing d_inner = 4",
    ),
    (dict(D=jnp.zeros((3,))), r"'D' has shape \(3,\); expected \(d_inner,\) = \(4,\)"),
    (dict(z=jnp.zeros((2, 4), jnp.int32)), r"'z' has dtype int32"),
  ],
)
def test_bad_arguments_name_the_op_the_argument_and_shapes(change, message):
  args = _step_args() | change
  with pytest.raises(ValueError, match=f"selective_scan_step: argument {message}"):
    selective_scan_step(
      args["initial_state"],
      args["u"],
      args["delta"],
      args["A"],
      args["B"],
      args["C"],
      args["D"],
      args["z"],
      args["delta_bias"],
    )
