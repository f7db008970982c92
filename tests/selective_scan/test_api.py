"""The public op: dispatch, argument errors, and properties every implementation must have."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mamba_jax
from kernels.selective_scan import resolve_implementation, selective_scan
from tests.selective_scan.cases import Case, assert_close
from tests.selective_scan.implementations import FAST

IMPLEMENTATIONS = [pytest.param("reference", {}, id="reference")] + FAST


def test_mamba_jax_reexports_the_op():
  assert mamba_jax.selective_scan is selective_scan


def test_auto_resolves_by_platform():
  expected = "pallas" if jax.default_backend() in ("gpu", "tpu") else "xla"
  assert resolve_implementation("auto").value == expected


@pytest.mark.skipif(jax.default_backend() in ("gpu", "tpu"), reason="CPU-only behaviour")
def test_pallas_without_interpret_on_cpu_is_refused_not_replaced():
  args = Case(batch=1, length=4, d_inner=2, d_state=2).arrays()
  with pytest.raises(ValueError, match="interpret=True"):
    selective_scan(**args, implementation="pallas")


def test_unknown_implementation_is_refused():
  with pytest.raises(ValueError, match="implementation='cuda'"):
    selective_scan(**Case(batch=1, length=4, d_inner=2, d_state=2).arrays(),
                   implementation="cuda")


@pytest.mark.parametrize("implementation,options", IMPLEMENTATIONS)
def test_chaining_equals_one_scan(implementation, options):
  """Scanning a sequence equals scanning its first part and continuing from the final state."""
  case = Case(batch=2, length=24, d_inner=8, d_state=4, groups=2)
  args = case.arrays()
  run = lambda **kw: selective_scan(**kw, delta_softplus=True, return_final_state=True,
                                    implementation=implementation, **options)
  whole_out, whole_state = run(**args)
  cut = 11
  first = {k: (v[:, :cut] if k in ("u", "delta", "z", "B", "C") else v) for k, v in args.items()}
  rest = {k: (v[:, cut:] if k in ("u", "delta", "z", "B", "C") else v) for k, v in args.items()}
  out1, state1 = run(**first)
  out2, state2 = run(**dict(rest, initial_state=state1))
  assert_close(jnp.concatenate([out1, out2], axis=1), whole_out, jnp.float32, "output")
  assert_close(state2, whole_state, jnp.float32, "final state")


@pytest.mark.parametrize("implementation,options", IMPLEMENTATIONS)
def test_padding_with_lengths_changes_nothing(implementation, options):
  """A padded batch with lengths gives each example's unpadded outputs, final state and
  gradients (mamba_ssm issue 368), and zeros past the end."""
  case = Case(batch=2, length=19, d_inner=8, d_state=4, z=True)
  args = case.arrays()
  lengths = (19, 7)

  def loss_and_aux(padded_args, lengths_):
    out, state = selective_scan(**padded_args, delta_softplus=True, lengths=lengths_,
                                return_final_state=True, implementation=implementation, **options)
    return jnp.sum(out ** 2) + jnp.sum(state), (out, state)

  grads, (out, state) = jax.grad(loss_and_aux, has_aux=True)(args, jnp.asarray(lengths))
  for i, n in enumerate(lengths):
    alone = {k: (v[i:i + 1, :n] if k in ("u", "delta", "z", "B", "C") else
                 v[i:i + 1] if k == "initial_state" else v) for k, v in args.items()}
    grads_i, (out_i, state_i) = jax.grad(loss_and_aux, has_aux=True)(alone, None)
    assert_close(out[i, :n], out_i[0], jnp.float32, f"output of example {i}")
    np.testing.assert_array_equal(out[i, n:], 0.0)
    assert_close(state[i], state_i[0], jnp.float32, f"final state of example {i}")
    for name in ("u", "delta", "B", "C", "z"):
      assert_close(grads[name][i, :n], grads_i[name][0], jnp.float32, f"d{name} of example {i}")
      np.testing.assert_array_equal(grads[name][i, n:], 0.0)


def _args():
  return Case(batch=2, length=5, d_inner=4, d_state=3).arrays()


@pytest.mark.parametrize("change,message", [
    (dict(u=jnp.zeros((2, 5))), r"'u' has shape \(2, 5\); expected \(batch, length, d_inner\)"),
    (dict(delta=jnp.zeros((2, 5, 3))), r"'delta' has shape \(2, 5, 3\); expected .*\(2, 5, 4\)"),
    (dict(z=jnp.zeros((2, 4, 4))), r"'z' has shape \(2, 4, 4\)"),
    (dict(A=jnp.zeros((3, 3))), r"'A' has shape \(3, 3\); expected \(d_inner, d_state\)"),
    (dict(B=jnp.zeros((2, 5, 2))), r"'B' has shape \(2, 5, 1, 2\); expected .*\(2, 5, 3\)"),
    (dict(C=jnp.zeros((2, 5, 1, 3, 1))), r"'C' has shape \(2, 5, 1, 3, 1\)"),
    (dict(B=jnp.zeros((2, 5, 3, 3)), C=jnp.zeros((2, 5, 3, 3))),
     r"'B' has shape \(2, 5, 3, 3\); expected groups \(axis 2\) dividing d_inner = 4"),
    (dict(D=jnp.zeros((3,))), r"'D' has shape \(3,\); expected \(d_inner,\) = \(4,\)"),
    (dict(delta_bias=jnp.zeros((4, 1))), r"'delta_bias' has shape \(4, 1\)"),
    (dict(initial_state=jnp.zeros((2, 4))), r"'initial_state' has shape \(2, 4\)"),
    (dict(u=jnp.zeros((2, 5, 4), jnp.int32)), r"'u' has dtype int32; expected a real floating"),
    (dict(B=jnp.zeros((2, 5, 3), jnp.complex64)), r"'B' has dtype complex64"),
])
def test_bad_arguments_name_the_argument_and_shapes(change, message):
  with pytest.raises(ValueError, match=message):
    selective_scan(**(_args() | change))


@pytest.mark.parametrize("lengths,message", [
    (jnp.array([5, 6]), r"'lengths' has values in \[5, 6\]; expected 0 <= lengths <= length = 5"),
    (jnp.array([-1, 2]), r"'lengths' has values in \[-1, 2\]"),
    (jnp.array([2]), r"'lengths' has shape \(1,\); expected \(batch,\) = \(2,\)"),
    (jnp.array([2.0, 3.0]), r"'lengths' has dtype float32; expected an integer dtype"),
])
def test_bad_lengths_are_refused(lengths, message):
  with pytest.raises(ValueError, match=message):
    selective_scan(**_args(), lengths=lengths)


def test_traced_lengths_are_accepted_under_jit():
  args = _args()
  f = jax.jit(lambda lengths: selective_scan(**args, lengths=lengths))
  assert f(jnp.array([5, 2])).shape == (2, 5, 4)
