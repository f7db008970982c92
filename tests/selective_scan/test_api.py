"""The public op: dispatch (registry, options, the auto table), argument errors, and properties
every implementation must have."""

import ast
import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mamba_jax
from mamba_jax_kernels.selective_scan import (
  IMPLEMENTATIONS,
  PallasOptions,
  XlaOptions,
  api,
  make_options,
  pallas_op,
  resolve_implementation,
  selective_scan,
  selective_scan_step,
)
from tests.selective_scan.cases import Case, assert_close
from tests.selective_scan.implementations import FAST

IMPLEMENTATION_PARAMS = [pytest.param("reference", None, id="reference")] + FAST
CPU = api.Target("cpu", "cpu", (0, 10, 2))
H200 = api.Target("gpu", "NVIDIA H200", (0, 11, 2))


def test_mamba_jax_reexports_the_op():
  assert mamba_jax.selective_scan is selective_scan
  assert mamba_jax.selective_scan_step is selective_scan_step


def test_mamba_jax_imports_only_the_public_api():
  import mamba_jax_kernels.selective_scan as op

  package = pathlib.Path(mamba_jax.__file__).parent
  imported = []
  for path in package.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        imported += [(path.name, alias.name, None) for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module:
        imported += [(path.name, node.module, alias.name) for alias in node.names]
  from_kernels = [entry for entry in imported if entry[1].startswith("mamba_jax_kernels")]
  assert from_kernels, "mamba_jax uses the op"
  for file, module, name in from_kernels:
    assert module == "mamba_jax_kernels.selective_scan" and name in op.__all__, (file, module, name)


def test_names_are_the_registry_plus_auto_and_the_config_accepts_each():
  assert IMPLEMENTATIONS == ("auto", "reference", "xla", "pallas")
  assert set(IMPLEMENTATIONS) - {"auto"} == set(api.REGISTRY)
  for name in IMPLEMENTATIONS:
    assert mamba_jax.MambaConfig(d_model=8, n_layers=1, scan_implementation=name)
  with pytest.raises(ValueError, match="scan_implementation"):
    mamba_jax.MambaConfig(d_model=8, n_layers=1, scan_implementation="cuda")


@pytest.mark.parametrize(
  "target,strategy",
  [
    (CPU, "sequential"),
    (H200, "associative"),
    (api.Target("tpu", "TPU v5 lite", (0, 10, 2)), "associative"),
  ],
)
def test_auto_without_a_table_row_runs_xla_with_the_platform_strategy(
  monkeypatch, target, strategy
):
  monkeypatch.setattr(api, "AUTO_TABLE", ())
  assert api.auto_choice(target) == ("xla", XlaOptions(strategy=strategy), None)
  assert resolve_implementation("auto", target=target) == ("xla", XlaOptions(strategy=strategy))


def test_auto_on_this_machine_follows_the_table():
  name, options, rule = api.auto_choice()
  assert resolve_implementation("auto")[0] == name
  if rule is None:
    assert (name, options) == ("xla", XlaOptions(strategy=api.xla.default_strategy()))


def test_every_table_row_is_well_formed():
  for rule in api.AUTO_TABLE:
    assert rule.platform in ("cpu", "gpu", "tpu") and rule.device_kinds and rule.evidence
    low, high = rule.jax_versions
    assert low < high
    resolve_implementation(
      rule.implementation, rule.options, api.Target(rule.platform, rule.device_kinds[0], low)
    )


_PROMOTED = api.AutoRule(
  "gpu",
  ("NVIDIA H200",),
  ((0, 11, 2), (0, 12)),
  "pallas",
  PallasOptions(block_d=128),
  evidence="test row",
)
_XLA_ON_ACCELERATORS = ("xla", XlaOptions(strategy="associative"))


@pytest.mark.parametrize(
  "target,expected",
  [
    (H200, ("pallas", PallasOptions(block_d=128, backend="gpu"))),
    (
      dataclasses.replace(H200, jax_version=(0, 11, 9, 1)),
      ("pallas", PallasOptions(block_d=128, backend="gpu")),
    ),
    (dataclasses.replace(H200, device_kind="NVIDIA A100-SXM4-80GB"), _XLA_ON_ACCELERATORS),
    (dataclasses.replace(H200, jax_version=(0, 11, 1)), _XLA_ON_ACCELERATORS),
    (dataclasses.replace(H200, jax_version=(0, 12, 0)), _XLA_ON_ACCELERATORS),
    (dataclasses.replace(H200, platform="tpu"), _XLA_ON_ACCELERATORS),
  ],
)
def test_a_table_row_applies_only_to_its_platform_device_and_jax_range(
  monkeypatch, target, expected
):
  monkeypatch.setattr(api, "AUTO_TABLE", (_PROMOTED,))
  assert resolve_implementation("auto", target=target) == expected
  assert api.auto_choice(target)[2] == (_PROMOTED if expected[0] == "pallas" else None)


def test_auto_runs_what_the_table_says_through_the_op(monkeypatch):
  """A row for the current (monkeypatched) target sends auto through the Pallas path."""
  calls = []
  real = pallas_op.selective_scan_pallas

  def spy(*args, **kwargs):
    calls.append(kwargs)
    return real(*args, **kwargs)

  tpu = api.Target("tpu", "TPU v5 lite", (0, 10, 2))
  monkeypatch.setattr(api, "current_target", lambda: tpu)
  monkeypatch.setattr(
    api,
    "AUTO_TABLE",
    (
      api.AutoRule(
        "tpu",
        ("TPU v5 lite",),
        ((0, 10), (1,)),
        "pallas",
        PallasOptions(interpret=True),
        evidence="test row",
      ),
    ),
  )
  monkeypatch.setattr(pallas_op, "selective_scan_pallas", spy)
  args = Case(batch=1, length=6, d_inner=4, d_state=2).arrays()
  out = selective_scan(**args, delta_softplus=True)
  assert len(calls) == 1 and calls[0]["interpret"] and calls[0]["backend"] == "tpu"
  assert_close(
    out,
    selective_scan(**args, delta_softplus=True, implementation="reference"),
    jnp.float32,
    "output",
  )


@pytest.mark.parametrize(
  "version,expected",
  [
    ("0.10.2", (0, 10, 2)),
    ("0.12.0.1", (0, 12, 0, 1)),
    ("0.11.0.dev20260101", (0, 11, 0)),
    ("0.7.0rc1", (0, 7, 0)),
  ],
)
def test_jax_version_tuple(version, expected):
  assert api.jax_version_tuple(version) == expected


@pytest.mark.skipif(jax.default_backend() in ("gpu", "tpu"), reason="CPU-only behaviour")
def test_pallas_without_interpret_on_cpu_is_refused_not_replaced():
  args = Case(batch=1, length=4, d_inner=2, d_state=2).arrays()
  with pytest.raises(ValueError, match=r"PallasOptions\(interpret=True\)"):
    selective_scan(**args, implementation="pallas")


def test_unknown_implementation_is_refused():
  with pytest.raises(ValueError, match="implementation='cuda'"):
    selective_scan(**Case(batch=1, length=4, d_inner=2, d_state=2).arrays(), implementation="cuda")


@pytest.mark.parametrize(
  "implementation,options,message",
  [
    ("auto", XlaOptions(), "implementation='auto' takes no options"),
    ("reference", XlaOptions(), "implementation='reference' takes no options"),
    ("xla", PallasOptions(interpret=True), "meant for implementation='pallas'"),
    ("pallas", XlaOptions(chunk_size=8), "meant for implementation='xla'"),
    ("xla", dict(chunk_size=8), "takes XlaOptions or None; got dict"),
  ],
)
def test_options_for_another_implementation_are_refused(implementation, options, message):
  args = Case(batch=1, length=4, d_inner=2, d_state=2).arrays()
  with pytest.raises(ValueError, match=message):
    selective_scan(**args, implementation=implementation, options=options)


@pytest.mark.parametrize(
  "make,message",
  [
    (lambda: XlaOptions(strategy="parallel"), r"XlaOptions.strategy = 'parallel'"),
    (lambda: XlaOptions(chunk_size=0), r"XlaOptions.chunk_size = 0"),
    (lambda: PallasOptions(block_d=True), r"PallasOptions.block_d = True"),
    (lambda: PallasOptions(backend="cuda"), r"PallasOptions.backend = 'cuda'"),
    (lambda: PallasOptions(interpret=1), r"PallasOptions.interpret = 1; expected a bool"),
    (lambda: PallasOptions(backend="tpu", num_warps=4), "launch settings of the GPU"),
  ],
)
def test_bad_option_values_fail_at_construction(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_gpu_launch_settings_are_refused_where_the_tpu_variant_runs():
  tpu = api.Target("tpu", "TPU v5 lite", (0, 10, 2))
  with pytest.raises(ValueError, match="runs the TPU variant"):
    resolve_implementation("pallas", PallasOptions(num_stages=2), tpu)
  assert resolve_implementation("pallas", PallasOptions(num_stages=2), H200)[1].backend == "gpu"


def test_gpu_launch_settings_reach_the_kernel_only_when_set(monkeypatch):
  calls = []
  reference = api.REGISTRY["reference"].run

  def spy(u, delta, A, B, C, D, z, delta_bias, **kwargs):
    calls.append(dict(kwargs))
    options = {
      k: kwargs.pop(k)
      for k in list(kwargs)
      if k not in ("delta_softplus", "initial_state", "lengths")
    }
    assert options["interpret"]
    return reference(u, delta, A, B, C, D, z, delta_bias, None, **kwargs)

  monkeypatch.setattr(pallas_op, "selective_scan_pallas", spy)
  args = Case(batch=1, length=4, d_inner=2, d_state=2).arrays()
  for options in (
    PallasOptions(interpret=True, backend="gpu"),
    PallasOptions(interpret=True, backend="gpu", num_warps=2, num_stages=3),
  ):
    selective_scan(**args, implementation="pallas", options=options)
  assert "num_warps" not in calls[0] and "num_stages" not in calls[0]
  assert calls[1]["num_warps"] == 2 and calls[1]["num_stages"] == 3


def test_make_options_maps_fields_and_refuses_the_rest():
  assert make_options("xla") is None and make_options("auto") is None
  assert make_options("xla", chunk_size=4) == XlaOptions(chunk_size=4)
  assert make_options("pallas", chunk_size=4, interpret=True) == PallasOptions(
    chunk_size=4, interpret=True
  )
  with pytest.raises(ValueError, match="has no option 'interpret'"):
    make_options("xla", interpret=True)
  with pytest.raises(ValueError, match="need a named implementation"):
    make_options("auto", chunk_size=4)
  with pytest.raises(ValueError, match="'reference' takes no options"):
    make_options("reference", chunk_size=4)


@pytest.mark.parametrize("implementation,options", IMPLEMENTATION_PARAMS)
def test_chaining_equals_one_scan(implementation, options):
  """Scanning a sequence equals scanning its first part and continuing from the final state."""
  case = Case(batch=2, length=24, d_inner=8, d_state=4, groups=2)
  args = case.arrays()
  run = lambda **kw: selective_scan(
    **kw,
    delta_softplus=True,
    return_final_state=True,
    implementation=implementation,
    options=options,
  )
  whole_out, whole_state = run(**args)
  cut = 11
  first = {k: (v[:, :cut] if k in ("u", "delta", "z", "B", "C") else v) for k, v in args.items()}
  rest = {k: (v[:, cut:] if k in ("u", "delta", "z", "B", "C") else v) for k, v in args.items()}
  out1, state1 = run(**first)
  out2, state2 = run(**dict(rest, initial_state=state1))
  assert_close(jnp.concatenate([out1, out2], axis=1), whole_out, jnp.float32, "output")
  assert_close(state2, whole_state, jnp.float32, "final state")


@pytest.mark.parametrize("implementation,options", IMPLEMENTATION_PARAMS)
def test_padding_with_lengths_changes_nothing(implementation, options):
  """A padded batch with lengths gives each example's unpadded outputs, final state and
  gradients (mamba_ssm issue 368), and zeros past the end."""
  case = Case(batch=2, length=19, d_inner=8, d_state=4, z=True)
  args = case.arrays()
  lengths = (19, 7)

  def loss_and_aux(padded_args, lengths_):
    out, state = selective_scan(
      **padded_args,
      delta_softplus=True,
      lengths=lengths_,
      return_final_state=True,
      implementation=implementation,
      options=options,
    )
    return jnp.sum(out**2) + jnp.sum(state), (out, state)

  gradient = jax.jit(jax.grad(loss_and_aux, has_aux=True))  # compiled: eager is slower
  grads, (out, state) = gradient(args, jnp.asarray(lengths))
  for i, n in enumerate(lengths):
    alone = {
      k: (
        v[i : i + 1, :n]
        if k in ("u", "delta", "z", "B", "C")
        else v[i : i + 1]
        if k == "initial_state"
        else v
      )
      for k, v in args.items()
    }
    grads_i, (out_i, state_i) = gradient(alone, None)
    assert_close(out[i, :n], out_i[0], jnp.float32, f"output of example {i}")
    np.testing.assert_array_equal(out[i, n:], 0.0)
    assert_close(state[i], state_i[0], jnp.float32, f"final state of example {i}")
    for name in ("u", "delta", "B", "C", "z"):
      assert_close(grads[name][i, :n], grads_i[name][0], jnp.float32, f"d{name} of example {i}")
      np.testing.assert_array_equal(grads[name][i, n:], 0.0)


def _args():
  return Case(batch=2, length=5, d_inner=4, d_state=3).arrays()


@pytest.mark.parametrize(
  "change,message",
  [
    (dict(u=jnp.zeros((2, 5))), r"'u' has shape \(2, 5\); expected \(batch, length, d_inner\)"),
    (dict(delta=jnp.zeros((2, 5, 3))), r"'delta' has shape \(2, 5, 3\); expected .*\(2, 5, 4\)"),
    (dict(z=jnp.zeros((2, 4, 4))), r"'z' has shape \(2, 4, 4\)"),
    (dict(A=jnp.zeros((3, 3))), r"'A' has shape \(3, 3\); expected \(d_inner, d_state\)"),
    (dict(B=jnp.zeros((2, 5, 2))), r"'B' has shape \(2, 5, 1, 2\); expected .*\(2, 5, 3\)"),
    (dict(C=jnp.zeros((2, 5, 1, 3, 1))), r"'C' has shape \(2, 5, 1, 3, 1\)"),
    (
      dict(B=jnp.zeros((2, 5, 3, 3)), C=jnp.zeros((2, 5, 3, 3))),
      r"'B' has shape \(2, 5, 3, 3\); expected groups \(axis 2\) dividing d_inner = 4",
    ),
    (dict(D=jnp.zeros((3,))), r"'D' has shape \(3,\); expected \(d_inner,\) = \(4,\)"),
    (dict(delta_bias=jnp.zeros((4, 1))), r"'delta_bias' has shape \(4, 1\)"),
    (dict(initial_state=jnp.zeros((2, 4))), r"'initial_state' has shape \(2, 4\)"),
    (dict(u=jnp.zeros((2, 5, 4), jnp.int32)), r"'u' has dtype int32; expected a real floating"),
    (dict(B=jnp.zeros((2, 5, 3), jnp.complex64)), r"'B' has dtype complex64"),
  ],
)
def test_bad_arguments_name_the_argument_and_shapes(change, message):
  with pytest.raises(ValueError, match=message):
    selective_scan(**(_args() | change))


@pytest.mark.parametrize(
  "lengths,message",
  [
    (jnp.array([5, 6]), r"'lengths' has values in \[5, 6\]; expected 0 <= lengths <= length = 5"),
    (jnp.array([-1, 2]), r"'lengths' has values in \[-1, 2\]"),
    (jnp.array([2]), r"'lengths' has shape \(1,\); expected \(batch,\) = \(2,\)"),
    (jnp.array([2.0, 3.0]), r"'lengths' has dtype float32; expected an integer dtype"),
  ],
)
def test_bad_lengths_are_refused(lengths, message):
  with pytest.raises(ValueError, match=message):
    selective_scan(**_args(), lengths=lengths)


def test_traced_lengths_are_accepted_under_jit():
  args = _args()
  f = jax.jit(lambda lengths: selective_scan(**args, lengths=lengths))
  assert f(jnp.array([5, 2])).shape == (2, 5, 4)


@pytest.mark.parametrize("length, kernel_runs", [(64, True), (2048, False)])
def test_auto_sends_low_occupancy_gpu_shapes_to_xla(monkeypatch, length, kernel_runs):
  """A table row choosing the GPU kernel still yields to `xla` where pallas_gpu.gpu_kernel_suits
  says the shape would leave most SMs idle (batch 1 x 16 channels over a long sequence)."""
  monkeypatch.setattr(
    api,
    "auto_choice",
    lambda target=None: ("pallas", PallasOptions(interpret=True, backend="gpu"), None),
  )
  calls = []

  def fake_kernel(u, *args, **kwargs):
    calls.append(u.shape)
    return jnp.zeros_like(u), jnp.zeros((u.shape[0], u.shape[2], 2), jnp.float32)

  monkeypatch.setattr(api.pallas_op, "selective_scan_pallas", fake_kernel)
  u = jnp.ones((1, length, 16))
  A = -jnp.ones((16, 2))
  B = jnp.ones((1, length, 2))
  api.selective_scan(u, u, A, B, B)
  assert bool(calls) == kernel_runs
