"""The TPU kernels compiled by the real TPU compilers (XLA:TPU and Mosaic, from libtpu) on this
CPU machine, for compile-only v5e and v6e devices (`tpu_static_cost`).

Each case compiles the gradient of the op, whose program holds both kernels (the forward under
the VJP and the backward), once. The cases cover the production shapes (8x2048x1536x16,
8x2048x5120x16, 1x16384x1536x16), a d_inner that is no multiple of 128 with a ragged last
chunk, grouped B/C, float32 and bfloat16, spread over the two chips to keep the run short
(about 30 s); `python -m mamba_jax_kernels.selective_scan.tpu_static_cost` compiles any other. A
negative control, a kernel loading at a dynamic lane offset, must be refused by Mosaic: it shows
the compiler runs here. Skipped only where libtpu is not installed.
"""

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import pallas as pl

from mamba_jax_kernels.selective_scan import tpu_static_cost

pytestmark = pytest.mark.skipif(
  not tpu_static_cost.libtpu_available(),
  reason="libtpu is not installed (the `test` extra installs the one matching this jax)",
)

# (chip, shape BxLxDxN, dtype, groups)
CASES = [
  ("v5e", (8, 2048, 1536, 16), jnp.bfloat16, 1),
  ("v6e", (8, 2048, 1536, 16), jnp.float32, 1),
  ("v5e", (8, 2048, 5120, 16), jnp.bfloat16, 1),
  ("v6e", (8, 2048, 5120, 16), jnp.float32, 1),
  ("v6e", (1, 16384, 1536, 16), jnp.bfloat16, 1),
  ("v5e", (2, 1000, 300, 16), jnp.float32, 1),  # blocks of 128 over 384 channels, ragged chunk
  ("v6e", (2, 520, 1024, 16), jnp.bfloat16, 2),  # two groups of 512 channels, ragged chunk
]


def _custom_call_targets(compiled):
  text = compiled.as_text()
  return text.count('custom_call_target="tpu_custom_call"')


@pytest.mark.parametrize(
  "chip,shape,dtype,groups",
  CASES,
  ids=[f"{c}-{'x'.join(map(str, s))}-{jnp.dtype(d).name}-g{g}" for c, s, d, g in CASES],
)
def test_forward_and_backward_compile_for_tpu(chip, shape, dtype, groups):
  _, gradient = tpu_static_cost.scan_functions("pallas")
  args = tpu_static_cost.scan_arguments(chip, shape, dtype, groups)
  compiled = tpu_static_cost.compile_for(chip, gradient, args)
  # One forward and one backward Mosaic kernel per group of B/C, compiled into the program.
  assert _custom_call_targets(compiled) == 2 * groups
  text = compiled.as_text()
  assert "selective_scan_fwd" in text and "selective_scan_bwd" in text


def _dynamic_lane_load(x):
  def kernel(x_ref, o_ref):
    o_ref[...] = x_ref[:, pl.ds(pl.program_id(0) * 3, 128)]

  return pl.pallas_call(
    kernel,
    grid=(2,),
    in_specs=[pl.BlockSpec((8, 512), lambda i: (0, 0))],
    out_specs=pl.BlockSpec((8, 128), lambda i: (0, 0)),
    out_shape=jax.ShapeDtypeStruct((8, 128), jnp.float32),
  )(x)


def test_mosaic_refuses_a_load_at_a_dynamic_lane_offset():
  """Pallas lowers this kernel; only Mosaic's compiler knows the offset is unaligned (E2003)."""
  sharding = jax.sharding.SingleDeviceSharding(tpu_static_cost.device("v5e"))
  x = jax.ShapeDtypeStruct((8, 512), jnp.float32, sharding=sharding)
  with pytest.raises(Exception, match="E2003"):
    tpu_static_cost.compile_for("v5e", _dynamic_lane_load, (x,))
