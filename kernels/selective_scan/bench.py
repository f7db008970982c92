r"""Benchmark of the selective-scan implementations:
`python -m mamba_jax_kernels.selective_scan.bench`.

Prints one table: implementation x shape x dtype x {forward, forward+backward} with the median
time after warm-up, GB/s against the minimal bytes (each input read once, each output written
once; for forward+backward the inputs and the output cotangent read once and every gradient
written once), that rate as a fraction of the measured device copy bandwidth, and memory:
XLA's compiled temporary buffers (every backend) and the device's peak (where it reports one).

Runs unchanged on CPU, GPU and TPU; implementations the platform cannot run natively (Pallas on
CPU) are left out rather than timed in interpret mode. Examples:
  python -m mamba_jax_kernels.selective_scan.bench                       # the issue's shapes
  python -m mamba_jax_kernels.selective_scan.bench --preset=small        # a quick look (the demo)
  python -m mamba_jax_kernels.selective_scan.bench --shapes=8x2048x1536x16 --dtypes=bfloat16
  python -m mamba_jax_kernels.selective_scan.bench --sass   # SASS per time step, no GPU needed
  python -m mamba_jax_kernels.selective_scan.bench --aot=v5e,v6e --shapes=8x2048x1536x16 \
    --dtypes=bfloat16
(--aot: no timing; the TPU compiler's static schedule on this host, see `tpu_static_cost`.)
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from mamba_jax_kernels.selective_scan import api, gpu_sass, tpu_static_cost
from mamba_jax_kernels.selective_scan.options import PallasOptions, XlaOptions

PRESETS = {
  # (batch, length, d_inner, d_state): a Mamba-130M layer, the image-reconstruction study's
  # layer, and one long sequence.
  "full": ["8x2048x1536x16", "64x2049x32x8", "1x65536x512x16"],
  "small": ["2x256x64x16", "16x257x32x8"],
}

_FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "full", list(PRESETS), "Shape set to run when --shapes is empty.")
flags.DEFINE_list("shapes", [], "Shapes as BATCHxLENGTHxD_INNERxD_STATE; overrides --preset.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Input dtypes.")
flags.DEFINE_list(
  "implementations",
  [],
  "Subset of reference, xla, xla-associative, "
  "xla-sequential, pallas (default: all this platform runs natively).",
)
flags.DEFINE_integer("repeats", 5, "Timed runs per measurement (median reported).")
flags.DEFINE_integer("chunk_size", 0, "Chunk size for xla/pallas; 0 uses each default.")
flags.DEFINE_bool("sass", False, "Print the GPU kernels' SASS per time step (gpu_sass.py); no run.")
flags.DEFINE_list("aot", [], "TPU chips (v5e, v6e): print static estimates instead of timing.")
flags.DEFINE_bool(
  "aot_plain", False, "With --aot: the op without its gate and softplus (the recurrence's floor)."
)


def available_implementations(platform):
  names = ["reference", "xla-sequential", "xla-associative"]
  if platform in api.PALLAS_PLATFORMS:
    names.append("pallas")
  return names


def variant(name, chunk_size=None, interpret=False):
  """(implementation, options) of a variant name: reference, xla (default strategy),
  xla-<strategy>, or pallas (in interpret mode when interpret)."""
  chunk = chunk_size or None
  if name == "reference":
    return "reference", None
  if name == "xla" or name.startswith("xla-"):
    return "xla", XlaOptions(chunk_size=chunk, strategy=name.partition("-")[2] or None)
  if name == "pallas":
    return "pallas", PallasOptions(chunk_size=chunk, interpret=interpret)
  raise ValueError(f"unknown variant {name!r}; expected reference, xla, xla-<strategy> or pallas")


def make_inputs(shape, dtype, seed=0):
  """A Mamba layer's call: z gate, D skip, dt bias with softplus, S4D-real A."""
  batch, length, d_inner, d_state = shape
  keys = jax.random.split(jax.random.PRNGKey(seed), 6)
  rows = lambda k: jax.random.normal(k, (batch, length, d_inner), jnp.float32).astype(dtype)
  columns = lambda k: jax.random.normal(k, (batch, length, d_state), jnp.float32).astype(dtype)
  A = -jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_inner, d_state))
  return dict(
    u=rows(keys[0]),
    delta=rows(keys[1]) * 0.5 - 4.0,
    A=A,
    B=columns(keys[2]),
    C=columns(keys[3]),
    D=jnp.ones((d_inner,), jnp.float32),
    z=rows(keys[4]),
    delta_bias=jnp.full((d_inner,), -1.0, jnp.float32),
  )


def _nbytes(arrays):
  return sum(int(np.prod(a.shape)) * jnp.dtype(a.dtype).itemsize for a in arrays)


def _median_seconds(fn, args, repeats):
  jax.block_until_ready(fn(*args))  # compile and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def parse_shape(text):
  """ "8x2048x1536x16" -> (8, 2048, 1536, 16): batch, length, d_inner, d_state."""
  return tuple(int(x) for x in text.split("x"))


def copy_bandwidth(repeats=5, n_bytes=1 << 28):
  """Measured device-to-device copy rate (bytes read + written per second): the bound."""
  x = jnp.zeros((n_bytes // 4,), jnp.float32)
  copy = jax.jit(lambda v: v + 1.0)
  return 2 * n_bytes / _median_seconds(copy, (x,), repeats)


def _memory(compiled):
  analysis = compiled.memory_analysis()
  temp = getattr(analysis, "temp_size_in_bytes", None) if analysis is not None else None
  stats = jax.devices()[0].memory_stats() or {}
  return temp, stats.get("peak_bytes_in_use")


def measure(name, implementation, options, shape, dtype, repeats, bound=None):
  """Rows for one implementation (labelled name), shape and dtype: forward and forward+backward.

  bound: the copy bandwidth in bytes/s to compare with (of_bound is None without it).
  """
  inputs = make_inputs(shape, dtype)
  diff_names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

  def forward(*values):
    return api.selective_scan(
      **dict(zip(diff_names, values)),
      delta_softplus=True,
      implementation=implementation,
      options=options,
    )

  values = tuple(inputs[k] for k in diff_names)
  cotangent = jax.random.normal(jax.random.PRNGKey(1), inputs["u"].shape).astype(dtype)

  def forward_backward(*values):
    out, vjp = jax.vjp(forward, *values)
    return vjp(cotangent)

  out_shape = jax.ShapeDtypeStruct(inputs["u"].shape, dtype)
  rows = []
  for mode, fn, minimal in (
    ("forward", forward, _nbytes(values) + _nbytes([out_shape])),
    ("fwd+bwd", forward_backward, 2 * _nbytes(values) + _nbytes([out_shape])),
  ):
    jitted = jax.jit(fn)
    compiled = jitted.lower(*values).compile()
    seconds = _median_seconds(compiled, values, repeats)
    temp, peak = _memory(compiled)
    rate = minimal / seconds
    rows.append(
      dict(
        impl=name,
        shape="x".join(map(str, shape)),
        dtype=jnp.dtype(dtype).name,
        mode=mode,
        ms=seconds * 1e3,
        gbps=rate / 1e9,
        of_bound=None if bound is None else rate / bound,
        temp_mib=None if temp is None else temp / 2**20,
        peak_mib=None if peak is None else peak / 2**20,
      )
    )
  return rows


_HEADER = (
  "implementation",
  "shape (BxLxDxN)",
  "dtype",
  "pass",
  "median ms",
  "GB/s",
  "% copy bw",
  "XLA temp MiB",
  "device peak MiB",
)


def format_header():
  return "| " + " | ".join(_HEADER) + " |\n|" + "---|" * len(_HEADER)


def format_row(r):
  fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
  return (
    "| "
    + " | ".join(
      [
        r["impl"],
        r["shape"],
        r["dtype"],
        r["mode"],
        fmt(r["ms"], ".1f"),
        fmt(r["gbps"], ".2f"),
        fmt(100 * r["of_bound"], ".1f"),
        fmt(r["temp_mib"], ".0f"),
        fmt(r["peak_mib"], ".0f"),
      ]
    )
    + " |"
  )


def main(argv):
  del argv
  if _FLAGS.sass:  # compiled from the exported Triton IR, on any machine
    print("\n".join(gpu_sass.report()))
    return
  shapes = [parse_shape(s) for s in (_FLAGS.shapes or PRESETS[_FLAGS.preset])]
  if _FLAGS.aot:
    print(tpu_static_cost.report(_FLAGS.aot, shapes, _FLAGS.dtypes, plain=_FLAGS.aot_plain))
    return
  platform = jax.default_backend()
  names = _FLAGS.implementations or available_implementations(platform)
  bound = copy_bandwidth()
  device = jax.devices()[0]
  print(
    f"# selective_scan benchmark: {time.strftime('%Y-%m-%d')}, JAX {jax.__version__}, "
    f"{platform} ({device.device_kind}), measured copy bandwidth {bound / 1e9:.1f} GB/s, "
    f"median of {_FLAGS.repeats} runs after warm-up"
  )
  print(format_header(), flush=True)
  for shape in shapes:
    for dtype in _FLAGS.dtypes:
      for name in names:
        for row in measure(
          name, *variant(name, _FLAGS.chunk_size), shape, jnp.dtype(dtype), _FLAGS.repeats, bound
        ):
          print(format_row(row), flush=True)


if __name__ == "__main__":
  app.run(main)
