r"""Compiles the selective scan for a TPU that is not here and reads the compiler's static schedule.

libtpu holds XLA:TPU and the Mosaic compiler and runs without a chip: a compile-only topology
(`jax.experimental.topologies.get_topology_desc`) gives TPU devices to lower and compile for, so
`jax.jit(f).lower(abstract args on such a device).compile()` runs the same compilers as on a TPU
host. A kernel Mosaic refuses fails here as it would there.

With `LIBTPU_INIT_ARGS="--xla_jf_dump_to=DIR --xla_jf_dump_llo_text=true"` set before libtpu
starts, the compiler writes, per program, the final per-bundle slot use
(`*final_hlo-static-per-bundle-utilization.txt`: one line per VLIW bundle, one column per slot).
A Pallas kernel's program is one grid step; its body is straight-line (the time loops are
unrolled), so bundles x grid steps / clock is its compute time on the static schedule (DMA
waits and pipeline bubbles not counted). XLA's own programs loop over chunks, which the static
file does not count, so for `xla` this reports XLA's cost analysis and the HBM bound.

  python -m mamba_jax_kernels.selective_scan.tpu_static_cost --chips=v5e,v6e --shapes=8x2048x1536x16
(`python -m mamba_jax_kernels.selective_scan.bench --aot=v5e` prints the same).
"""

import atexit
import dataclasses
import functools
import importlib.util
import os
import pathlib
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
from jax.sharding import SingleDeviceSharding

from mamba_jax_kernels.selective_scan import api, pallas_op
from mamba_jax_kernels.selective_scan.options import XlaOptions


@dataclasses.dataclass(frozen=True)
class Chip:
  """A TPU generation as compiled for: its compile-only topology and public clock and HBM rate."""

  topology: str
  clock_hz: float
  hbm_bytes_per_s: float


# Clocks from the published bf16 peak over the MXU array size (v5e: 197 TF / (4 x 128^2 x 2)
# = 1.5 GHz; v6e: 918 TF / (4 x 256^2 x 2) = 1.75 GHz); HBM rates as published.
CHIPS = {
  "v5e": Chip("v5e:2x2", 1.5e9, 819e9),
  "v6e": Chip("v6e:2x2", 1.75e9, 1640e9),
}
SLOTS = ("VALU", "XLU", "EUP", "VLOAD", "VSTORE", "VLOAD:FILL", "VSTORE:SPILL", "MXU")
_UTILIZATION = "final_hlo-static-per-bundle-utilization.txt"
_KERNELS = ("selective_scan_fwd", "selective_scan_bwd")


def libtpu_available():
  """Whether the TPU compiler is installed (the `libtpu` wheel of the matching version)."""
  return importlib.util.find_spec("libtpu") is not None


@functools.cache
def device(chip):
  """A compile-only TPU device of `chip` (no TPU needed). Several processes may load libtpu at
  once (pytest workers): without ALLOW_MULTIPLE_LIBTPU_LOAD the second fails on its lockfile."""
  from jax.experimental import topologies

  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  return topologies.get_topology_desc(CHIPS[chip].topology, "tpu").devices[0]


def scan_arguments(chip, shape, dtype, groups=1):
  """Abstract (u, delta, A, B, C, D, z, delta_bias) of a Mamba layer's call, on `chip`."""
  batch, length, d_inner, d_state = shape
  sharding = SingleDeviceSharding(device(chip))
  spec = lambda s, t: jax.ShapeDtypeStruct(s, t, sharding=sharding)
  rows = spec((batch, length, d_inner), dtype)
  bc = spec((batch, length, groups, d_state), dtype)
  channels = spec((d_inner,), jnp.float32)
  return rows, rows, spec((d_inner, d_state), jnp.float32), bc, bc, channels, rows, channels


def scan_functions(implementation, plain=False):
  """(forward, gradient of every input) of the op as a Mamba layer calls it. `pallas` is the TPU
  kernel called directly (the public op refuses it on a CPU host); `xla` is the associative
  strategy `auto` runs on a TPU. `plain`: without the gate and the softplus, so that the
  recurrence's own cost shows (a floor for the kernel as the layer calls it)."""

  def forward(u, delta, A, B, C, D, z, bias):
    if plain:
      z = None
    if implementation == "pallas":
      out, _ = pallas_op.selective_scan_pallas(
        u, delta, A, B, C, D, z, bias, delta_softplus=not plain, backend="tpu"
      )
      return out
    out = api.selective_scan(
      u,
      delta,
      A,
      B,
      C,
      D,
      z,
      bias,
      delta_softplus=not plain,
      implementation="xla",
      options=XlaOptions(strategy="associative"),
    )
    assert isinstance(out, jax.Array)  # no final state asked for
    return out

  loss = lambda *args: jnp.sum(forward(*args).astype(jnp.float32))
  return forward, jax.grad(loss, argnums=tuple(range(8)))


def compile_for(chip, fn, args):
  """Runs XLA:TPU (and Mosaic for Pallas kernels) on `fn` for `chip`; raises what they raise."""
  del chip  # the arguments carry the device
  return jax.jit(fn).lower(*args).compile()


@dataclasses.dataclass(frozen=True)
class Schedule:
  """One compiled program's static schedule: bundles and the ops issued per slot."""

  bundles: int
  ops: dict[str, int]
  capacity: dict[str, int]


def read_schedule(path):
  """Parses a per-bundle utilization file: a header naming the slots and their capacity, then
  one line of per-slot counts per bundle."""
  lines = pathlib.Path(path).read_text().splitlines()
  names = [n.strip() for n in lines[1].split(",")]
  capacity = dict(zip(names, map(int, lines[2].split())))
  rows = [list(map(int, line.split())) for line in lines[4:] if line.strip()]
  ops = {name: sum(r[i] for r in rows) for i, name in enumerate(names)}
  return Schedule(bundles=len(rows), ops=ops, capacity=capacity)


def _kernel_schedules(dump_dir, before):
  """{kernel: Schedule} of the Pallas kernels among the files written since `before`."""
  found = {}
  for path in sorted(set(os.listdir(dump_dir)) - before):
    for kernel in _KERNELS:
      if path.endswith(_UTILIZATION) and kernel in path:
        found[kernel] = read_schedule(os.path.join(dump_dir, path))
  return found


def grid_steps(shape, groups=1):
  """Grid steps of either TPU kernel at its default blocks: batch x channel blocks x chunks,
  summed over the groups of B/C (one launch each)."""
  batch, length, d_inner, d_state = shape
  cfg = pallas_op.kernel_config(
    "tpu", batch, length, d_inner // groups, d_state, has_z=True, delta_softplus=True
  )
  per_group = batch * -(-(d_inner // groups) // cfg.block_d) * -(-length // cfg.chunk)
  return groups * per_group


def hbm_bytes(shape, dtype, program):
  """Bytes a program must move at least, each array once: the forward reads u, delta, z, B, C
  and writes out; the backward reads those and the output cotangent and writes du, d_delta, dz,
  dB, dC; "fwd+bwd" is both (the saved chunk states and partial sums are not counted)."""
  batch, length, d_inner, d_state = shape
  size = jnp.dtype(dtype).itemsize
  rows, bc = batch * length * d_inner * size, batch * length * d_state * size
  forward, backward = 4 * rows + 2 * bc, 7 * rows + 4 * bc
  return {"forward": forward, "backward": backward, "fwd+bwd": forward + backward}[program]


_dump_dir = None


def start_dumping():
  """Asks libtpu to dump per-bundle schedules; must run before libtpu starts in this process
  (before the first TPU topology or device is made). Returns the dump folder."""
  global _dump_dir
  if _dump_dir is None:
    if device.cache_info().currsize:
      raise RuntimeError("libtpu already started without the schedule dump; call this first")
    _dump_dir = tempfile.mkdtemp(prefix="tpu_schedule_")
    atexit.register(shutil.rmtree, _dump_dir, ignore_errors=True)
    flags = f"--xla_jf_dump_to={_dump_dir} --xla_jf_dump_llo_text=true"
    os.environ["LIBTPU_INIT_ARGS"] = (os.environ.get("LIBTPU_INIT_ARGS", "") + " " + flags).strip()
  return _dump_dir


def _clear(dump_dir, before):
  for path in set(os.listdir(dump_dir)) - before:
    os.remove(os.path.join(dump_dir, path))


def static_costs(chip, shape, dtype, implementation, groups=1, plain=False):
  """Rows (one per compiled kernel, or per pass for xla) of the static cost at one shape."""
  dump_dir = start_dumping()
  forward, gradient = scan_functions(implementation, plain)
  args = scan_arguments(chip, shape, dtype, groups)
  clock = CHIPS[chip].clock_hz
  rows = []
  for mode, fn in (("forward", forward), ("fwd+bwd", gradient)):
    before = set(os.listdir(dump_dir))
    compiled = compile_for(chip, fn, args)
    schedules = _kernel_schedules(dump_dir, before)
    _clear(dump_dir, before)
    hbm_ms = lambda program: 1e3 * hbm_bytes(shape, dtype, program) / CHIPS[chip].hbm_bytes_per_s
    name = f"{implementation} (no gate, no softplus)" if plain else implementation
    base = dict(chip=chip, implementation=name, shape=shape, dtype=jnp.dtype(dtype).name)
    if implementation == "pallas":
      kernel, program = (
        ("selective_scan_fwd", "forward")
        if mode == "forward"
        else ("selective_scan_bwd", "backward")
      )
      steps = grid_steps(shape, groups)
      s = schedules[kernel]
      rows.append(
        base
        | dict(
          program=kernel,
          bundles=s.bundles,
          grid_steps=steps,
          ops=s.ops,
          estimate_ms=1e3 * s.bundles * steps / clock,
          valu_ms=1e3 * s.ops["VALU"] / s.capacity["VALU"] * steps / clock,
          hbm_ms=hbm_ms(program),
        )
      )
    else:
      cost = compiled.cost_analysis()
      cost = (cost[0] if isinstance(cost, list) else cost) or {}
      optimal = cost.get("optimal_seconds", -1.0)
      rows.append(
        base
        | dict(
          program=f"xla {mode}",
          bundles=None,
          grid_steps=None,
          ops={},
          estimate_ms=1e3 * optimal if optimal > 0 else None,
          valu_ms=None,
          hbm_ms=hbm_ms(mode),
        )
      )
  return rows


_HEADER = (
  "chip",
  "implementation",
  "program",
  "shape",
  "dtype",
  "bundles/step",
  "grid steps",
  *SLOTS,
  "estimate ms",
  "VALU bound ms",
  "HBM bound ms",
)


def format_table(rows):
  """Markdown table; slot columns are ops per grid step. The VALU bound is the time if every
  bundle filled the vector ALU slots (4 on v5e and v6e, no fused multiply-add): no schedule of
  the same ops beats it. For xla the estimate is XLA's own `optimal_seconds` (n/a where it
  gives none)."""
  fmt = lambda v: "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
  lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
  for r in rows:
    cells = [r["chip"], r["implementation"], r["program"], "x".join(map(str, r["shape"]))]
    cells += [r["dtype"], fmt(r["bundles"]), fmt(r["grid_steps"])]
    cells += [fmt(r["ops"].get(slot)) for slot in SLOTS]
    cells += [fmt(r["estimate_ms"]), fmt(r["valu_ms"]), fmt(r["hbm_ms"])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def report(chips, shapes, dtypes, implementations=("pallas", "xla"), plain=False):
  """The static-cost table for every chip x shape x dtype x implementation (`plain`: the op
  without gate and softplus, `scan_functions`)."""
  if not libtpu_available():
    raise RuntimeError("libtpu is not installed: pip install the libtpu that matches this jax")
  start_dumping()
  from importlib import metadata

  title = (
    f"# TPU static schedule: {time.strftime('%Y-%m-%d')}, JAX {jax.__version__}, libtpu "
    f"{metadata.version('libtpu')}; pallas: estimate = bundles x grid steps / clock, slot "
    f"columns = ops per grid step; xla: XLA's own cost analysis (optimal_seconds), n/a where "
    f"it gives none; HBM bound = each array moved once"
  )
  rows = [
    row
    for chip in chips
    for shape in shapes
    for dtype in dtypes
    for implementation in implementations
    for row in static_costs(chip, shape, jnp.dtype(dtype), implementation, plain=plain)
  ]
  return title + "\n" + format_table(rows)


def main():
  import argparse

  parser = argparse.ArgumentParser(description="Static cost of the selective scan on a TPU.")
  parser.add_argument("--chips", default="v5e,v6e")
  parser.add_argument("--shapes", default="8x2048x1536x16")
  parser.add_argument("--dtypes", default="bfloat16")
  parser.add_argument("--implementations", default="pallas,xla")
  parser.add_argument("--plain", action="store_true", help="without gate and softplus")
  args = parser.parse_args()
  shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
  chips, dtypes = args.chips.split(","), args.dtypes.split(",")
  print(report(chips, shapes, dtypes, args.implementations.split(","), args.plain))


if __name__ == "__main__":
  main()
