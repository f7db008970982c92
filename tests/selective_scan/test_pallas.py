"""The Pallas kernels against the reference (interpret mode), their launch rules, and their
lowering for real TPUs and GPUs.

Interpret mode checks the kernels' math and block bookkeeping on CPU. The export tests check
Pallas's own lowering (block shapes against the backend's rules, memory spaces, the ops it can
lower); they do not run the Mosaic or Triton compilers, which only run where the hardware is.
"""

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax_kernels.selective_scan import (
  PallasOptions,
  gpu_sass,
  pallas_gpu,
  pallas_op,
  pallas_tpu,
)
from tests.selective_scan.cases import CASES, Case, assert_matches_reference
from tests.selective_scan.implementations import FAST

PALLAS = [p for p in FAST if p.values[0] == "pallas"]


@pytest.mark.parametrize("implementation,options", PALLAS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(name, implementation, options):
  assert_matches_reference(CASES[name], implementation, options)


@pytest.mark.parametrize("backend", ["tpu", "gpu"])
def test_default_blocks_match_reference(backend):
  """Default chunk and block sizes (one chunk for short sequences, padded channel blocks)."""
  assert_matches_reference(
    Case(length=70, d_inner=20, groups=2, lengths=(70, 3, 50)),
    "pallas",
    PallasOptions(interpret=True, backend=backend),
  )


def test_tpu_kernel_at_sizes_that_compile_matches_reference():
  """Lane-wide channel blocks (two of 128), chunks of 16 with a padded last chunk, d_state 16."""
  case = Case(batch=2, length=40, d_inner=256, d_state=16, lengths=(40, 23), dtype=jnp.bfloat16)
  assert_matches_reference(
    case, "pallas", PallasOptions(interpret=True, backend="tpu", chunk_size=16, block_d=128)
  )


def _tpu_kernel_results(unroll, n):
  """Forward and backward TPU kernels on one problem, loops unrolled (static indices, as
  compiled) or rolled (as interpret mode runs them by default)."""
  batch, length, d, T = 1, 16, 128, 8
  cfg = pallas_op.kernel_config(
    "tpu",
    batch,
    length,
    d,
    n,
    has_z=True,
    delta_softplus=True,
    chunk_size=T,
    block_d=128,
    interpret=True,
  )
  cfg = dataclasses.replace(cfg, unroll=unroll)
  keys = iter(jax.random.split(jax.random.PRNGKey(0), 12))
  normal = lambda *shape: jax.random.normal(next(keys), shape)
  arrays = dict(
    u=normal(batch, length, d),
    delta=normal(batch, length, d),
    z=normal(batch, length, d),
    B=normal(batch, length, n),
    C=normal(batch, length, n),
    At=-jnp.exp(normal(n, d)),
    D=normal(1, d),
    bias=normal(1, d),
    lengths=jnp.array([13], jnp.int32),
  )
  out, final, bounds = pallas_tpu.forward(cfg, h0t=normal(batch, n, d), **arrays)
  grads = pallas_tpu.backward(
    cfg, bounds=bounds, g_out=normal(batch, length, d), g_final_t=normal(batch, n, d), **arrays
  )
  return dict(out=out, final=final, bounds=bounds, **grads)


@pytest.mark.parametrize("n", [4, 8])  # the forward's output summed per step, or deferred
def test_tpu_unrolled_loops_compute_what_the_rolled_loops_do(n, optimised_compile):
  """The compiled kernel's straight-line code (static indices) against the rolled loops the
  interpret-mode tests use, on the forward and the backward (at 1e-6: both compiled optimised;
  unoptimised, their rounding differs by up to 7e-6 in a few of dAt's sums)."""
  unrolled, rolled = _tpu_kernel_results(True, n), _tpu_kernel_results(False, n)
  assert unrolled.keys() == rolled.keys()
  for name in rolled:
    np.testing.assert_allclose(unrolled[name], rolled[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
  "chunk,block_d,message",
  [
    (12, 128, "multiple of 8"),
    (256, 128, "between 8 and 128"),
    (16, 96, "multiple of 128"),
    (16, 1024, "up to 512"),
  ],
)
def test_tpu_block_shapes_are_checked_against_the_tiling(chunk, block_d, message):
  with pytest.raises(ValueError, match=message):
    pallas_op.kernel_config(
      "tpu", 2, 64, 1536, 16, has_z=True, delta_softplus=True, chunk_size=chunk, block_d=block_d
    )


def test_tpu_defaults_are_legal_and_whole_width_blocks_are_allowed():
  assert pallas_tpu.default_block_d(1536) == 512 and pallas_tpu.default_block_d(640) == 128
  assert pallas_tpu.default_block_d(20) == 20
  assert pallas_tpu.default_chunk(2048, 16, 512) == 64 and pallas_tpu.default_chunk(5, 4, 20) == 8
  cfg = pallas_op.kernel_config("tpu", 2, 64, 20, 4, has_z=False, delta_softplus=False)
  assert (cfg.chunk, cfg.block_d) == (64, 20)
  with pytest.raises(ValueError, match="launch settings of the GPU"):
    pallas_op.kernel_config("tpu", 2, 64, 20, 4, has_z=False, delta_softplus=False, num_warps=4)


def test_tpu_vmem_limit_follows_the_blocks():
  small = pallas_tpu.vmem_limit_bytes([((64, 128), jnp.float32)], [((64, 16, 128), jnp.float32)])
  large = pallas_tpu.vmem_limit_bytes(
    [((64, 512), jnp.float32)] * 8, [((64, 16, 512), jnp.float32)] * 16
  )
  assert small == 32 * 2**20 < large <= 64 * 2**20
  with pytest.raises(ValueError, match="MiB of VMEM"):
    pallas_tpu.vmem_limit_bytes([], [((128, 128, 512), jnp.float32)] * 2)


def test_gpu_launch_table_and_overrides():
  settings = pallas_gpu.launch_settings(8, 2048, 1536, 16)
  assert (settings.block_d, settings.num_warps, settings.num_stages, settings.chunk) == (
    32,
    1,
    1,
    64,
  )
  assert pallas_gpu.launch_settings(8, 2048, 5120, 16).block_d == 64
  cfg = pallas_op.kernel_config(
    "gpu", 8, 2048, 1536, 16, has_z=True, delta_softplus=True, block_d=64, num_warps=8, num_stages=3
  )
  assert (cfg.block_d, cfg.num_warps, cfg.num_stages) == (64, 8, 3)
  with pytest.raises(ValueError, match="power of two"):
    pallas_op.kernel_config("gpu", 8, 2048, 1536, 16, has_z=True, delta_softplus=True, block_d=48)


def test_gpu_kernel_at_a_chunk_its_loops_do_not_divide():
  """Chunk 3: the time loops take one step per iteration instead of two
  (`pallas_gpu_kernels.time_loop`)."""
  options = PallasOptions(interpret=True, backend="gpu", chunk_size=3)
  assert_matches_reference(CASES["no_z_with_lengths"], "pallas", options)


def test_gpu_workspace_and_occupancy_rule():
  assert pallas_gpu.workspace_bytes(8, 1536, 16, 64, 64) == 51.75 * 2**20
  assert pallas_gpu.workspace_bytes(8, 5120, 16, 64, 64) == 172.5 * 2**20
  assert pallas_gpu.gpu_kernel_suits(8, 2048, 1536)
  assert not pallas_gpu.gpu_kernel_suits(1, 65536, 512)
  assert pallas_gpu.gpu_kernel_suits(1, 512, 512)


def _scan_args(dtype, b=2, l=300, d=256, n=16):
  rows = jax.ShapeDtypeStruct((b, l, d), dtype)
  columns = jax.ShapeDtypeStruct((b, l, n), dtype)
  channels = jax.ShapeDtypeStruct((d,), jnp.float32)
  return (
    rows,
    rows,
    jax.ShapeDtypeStruct((d, n), jnp.float32),
    columns,
    columns,
    channels,
    rows,
    channels,
    jax.ShapeDtypeStruct((b,), jnp.int32),
  )


def _gradient_of_scan(backend, interpret=False):
  def loss(u, delta, A, B, C, D, z, bias, lengths):
    out, _ = pallas_op.selective_scan_pallas(
      u,
      delta,
      A,
      B[:, :, None],
      C[:, :, None],
      D,
      z,
      bias,
      delta_softplus=True,
      lengths=lengths,
      backend=backend,
      interpret=interpret,
    )
    return jnp.sum(out.astype(jnp.float32))

  return jax.jit(jax.grad(loss, argnums=tuple(range(8))))


@pytest.mark.parametrize("backend", ["tpu", "gpu"])
def test_gradients_come_out_in_the_input_dtype(backend):
  """du, d_delta and dz leave the kernel in bfloat16 (no float32 copy converted afterwards)."""
  args = _scan_args(jnp.bfloat16, l=64, d=128)
  closed = jax.make_jaxpr(_gradient_of_scan(backend, interpret=True))(*args)
  kernels = {
    name: [v.aval.str_short() for v in eqn.outvars] for name, eqn in _pallas_calls(closed.jaxpr)
  }
  assert kernels["selective_scan_fwd"].count("bfloat16[2,64,128]") == 1  # out
  assert kernels["selective_scan_bwd"].count("bfloat16[2,64,128]") == 3  # du, d_delta, dz


def _pallas_calls(jaxpr):
  """(kernel name, equation) of every pallas_call in a jaxpr and the jaxprs nested in it."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "pallas_call":
      yield str(eqn.params["name"]), eqn
      continue
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from _pallas_calls(inner)


def test_gpu_backward_orders_its_workspace_with_barriers():
  """Per chunk, a barrier after the recompute's stores and after the reverse loop's loads (each
  outside the time loops)."""
  jaxpr = str(jax.make_jaxpr(_gradient_of_scan("gpu"))(*_scan_args(jnp.float32, l=64, d=64)))
  assert jaxpr.count("debug_barrier") == 2


@contextlib.contextmanager
def _target(platform):
  """The device the lowering is for: on cuda, gpu_sass's abstract GPU (JAX >= 0.11 refuses to
  lower Pallas to Triton on a machine with no GPU unless one is named)."""
  if platform == "cuda":
    with gpu_sass.abstract_gpu():
      yield
  else:
    yield


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated")
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("backend,platform", [("tpu", "tpu"), ("gpu", "cuda")])
def test_forward_and_backward_lower_for_the_accelerator(backend, platform, dtype):
  """Lowers both kernels for a TPU (to Mosaic) or a GPU (to Triton) from this CPU machine.

  This runs Pallas's own lowering: block shapes against the backend's tiling rules, memory
  spaces, and the ops it knows how to lower. It does not run the Mosaic or Triton compilers
  (layout assignment, register allocation, what the chip accepts), nor the kernel: those are
  checked only where the hardware is present (`python -m mamba_jax_kernels.selective_scan.check`).
  """
  with _target(platform):
    exported = jax.export.export(
      _gradient_of_scan(backend),
      platforms=[platform],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )(*_scan_args(dtype))
  module = exported.mlir_module()
  assert module.count("selective_scan_fwd") >= 1 and module.count("selective_scan_bwd") >= 1


def test_gpu_kernel_refuses_arrays_past_int32_offsets():
  """2**31 elements of u would wrap the kernel's int32 offsets; one fewer batch row does not."""
  args = _scan_args(jnp.bfloat16, b=1, l=2**21, d=1024)
  grad = _gradient_of_scan("gpu", interpret=True)
  with pytest.raises(ValueError, match=r"u \(1, 2097152, 1024\) has 2147483648 elements"):
    jax.eval_shape(grad, *args)
  jax.eval_shape(grad, *_scan_args(jnp.bfloat16, b=1, l=2**21 - 64, d=1024))


def test_unknown_backend_is_refused():
  with pytest.raises(ValueError, match="pallas_backend"):
    pallas_op.selective_scan_pallas(
      **CASES["minimal_d_state_1"].arrays()
      | dict(B=jnp.zeros((1, 16, 1, 1)), C=jnp.zeros((1, 16, 1, 1))),
      backend="cuda",
    )
