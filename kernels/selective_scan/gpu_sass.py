"""The Pallas GPU kernels compiled to NVIDIA machine code on a machine with no GPU, so that their
register use and the SASS of each time step can be read (and tested) without hardware.

The route: export the op's gradient for platforms=("cuda",), take the Triton IR that jaxlib
stores (as MLIR bytecode) in each `__gpu$xla.gpu.triton` custom call, print it as text with
jaxlib's Triton dialect, and compile that text with the `triton` wheel (which bundles ptxas and
cuobjdump) for a chosen compute capability. The wheel is upstream Triton, not XLA's fork that
compiles the kernel on a real GPU, so the figures are indicative: same IR, possibly different
layouts or scheduling.

The time loops are the innermost loops of the SASS (a backward branch whose range holds no
other one); an iteration holds one or more time steps (`time_loops` names each loop and its
steps per iteration), and its static instruction count per step times the length over the
clock is the issue floor of one warp running the scan (`issue_floor_ms`).
"""

import contextlib
import dataclasses
import os
import re
import subprocess
import tempfile

import jax
import jax.numpy as jnp

from mamba_jax_kernels.selective_scan import pallas_gpu, pallas_gpu_kernels, pallas_op

# The shape the figures are quoted at: a Mamba-130M layer, batch 8 (BUILD_NOTES.md).
SHAPE = (8, 2048, 1536, 16)
# H100 SXM boost clock and SM count: the issue floor's clock and the number of warp schedulers.
H100_CLOCK_HZ = 1.98e9
H100_SCHEDULERS = 132 * 4
TRITON_CALL = "__gpu$xla.gpu.triton"


def triton_wheel_status():
  """None when the `triton` wheel (compiler, ptxas, cuobjdump) is importable, else why not."""
  try:
    import triton  # noqa: F401  (only probing)
    from triton.backends.nvidia import compiler  # noqa: F401
  except ImportError as error:
    return f"the `triton` wheel is not installed ({error}); pip install the test extra"
  return None


@dataclasses.dataclass(frozen=True)
class TritonKernel:
  """One custom call's kernel: its name, Triton IR as text, and launch settings."""

  name: str
  ir: str
  num_warps: int
  num_stages: int
  grid: tuple[int, int, int]


@contextlib.contextmanager
def abstract_gpu():
  """JAX >= 0.11 lowers Pallas to Triton for a named GPU and, with no GPU present, asks for an
  abstract one; older JAX lowers for compute capability 9.0 without asking."""
  if jax.__version_info__ < (0, 11):
    yield
    return
  device = jax.sharding.AbstractDevice(device_kind="NVIDIA H100", num_cores=132, platform="gpu")
  with jax.sharding.use_abstract_mesh(
    jax.sharding.AbstractMesh((1,), ("data",), abstract_device=device)
  ):
    yield


def gradient_function(**options):
  """The gradient of a Mamba layer's scan (z, D, bias, softplus, lengths) w.r.t. every input:
  running it runs both kernels."""

  def loss(u, delta, A, B, C, D, z, bias, h0, lengths):
    out, state = pallas_op.selective_scan_pallas(
      *(u, delta, A, B[:, :, None], C[:, :, None], D, z, bias),
      delta_softplus=True,
      initial_state=h0,
      lengths=lengths,
      backend="gpu",
      **options,
    )
    return jnp.sum(out.astype(jnp.float32)) + jnp.sum(state)

  return jax.jit(jax.grad(loss, argnums=tuple(range(9))))


def abstract_arguments(shape, dtype):
  b, l, d, n = shape
  rows = jax.ShapeDtypeStruct((b, l, d), dtype)
  columns = jax.ShapeDtypeStruct((b, l, n), dtype)
  channels = jax.ShapeDtypeStruct((d,), jnp.float32)
  f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
  lengths = jax.ShapeDtypeStruct((b,), jnp.int32)
  return (rows, rows, f32(d, n), columns, columns, channels, rows, channels, f32(b, d, n), lengths)


def export_kernels(shape=SHAPE, dtype=jnp.bfloat16, **options):
  """{name: TritonKernel} of the forward and backward kernels at a shape, as JAX would launch
  them on a GPU (options: PallasOptions-like overrides such as num_warps or chunk_size)."""
  with abstract_gpu():
    exported = jax.export.export(
      gradient_function(**options),
      platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL)],
    )(*abstract_arguments(shape, dtype))
  return _triton_calls(exported.mlir_module())


def _triton_calls(module_text):
  from jax._src.interpreters import mlir  # jaxlib's MLIR and, for the kernels, its Triton dialect
  from jax._src.lib.mlir import ir  # pyright: ignore[reportPrivateImportUsage]
  from jax._src.pallas.triton import lowering

  calls = []
  with mlir.make_ir_context():

    def visit(op):
      op = op.operation
      if op.name == "stablehlo.custom_call" and (
        ir.StringAttr(op.attributes["call_target_name"]).value == TRITON_CALL
      ):
        config = ir.DictAttr(op.attributes["mhlo.backend_config"])
        integer = lambda key: ir.IntegerAttr(config[key]).value
        calls.append(
          dict(
            name=ir.StringAttr(config["name"]).value,
            ir=ir.StringAttr(config["ir"]).value_bytes,
            num_warps=integer("num_warps"),
            num_stages=integer("num_stages"),
            grid=(integer("grid_x"), integer("grid_y"), integer("grid_z")),
          )
        )
      for region in op.regions:
        for block in region:
          for inner in block:
            visit(inner)

    visit(ir.Module.parse(module_text).operation)
  with lowering._new_ir_context():  # pyright: ignore[reportPrivateUsage]
    for call in calls:
      call["ir"] = ir.Module.parse(call["ir"]).operation.get_asm(enable_debug_info=False)
  return {call["name"]: TritonKernel(**call) for call in calls}


@dataclasses.dataclass(frozen=True)
class Compiled:
  """A kernel compiled for one compute capability: ptxas's figures and the SASS."""

  kernel: TritonKernel
  capability: int
  registers: int
  spill_bytes: int  # spill stores + spill loads
  ptxas_log: str
  sass: str


def _nvidia_tool(name):
  from triton.backends.nvidia import compiler

  return os.path.join(os.path.dirname(compiler.__file__), "bin", name)


def gpu_arch(capability):
  """ptxas's name for a compute capability: sm_90a (Hopper's full instruction set), sm_80."""
  return f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"


def compile_kernel(kernel, capability, **triton_options):
  """Compiles a kernel's IR for `capability` (80, 90) with its own launch settings (extra Triton
  options, e.g. maxnreg, override them) and reads ptxas -v and the SASS."""
  import triton
  from triton.backends.compiler import GPUTarget

  options = dict(num_warps=kernel.num_warps, num_stages=kernel.num_stages, **triton_options)
  with tempfile.TemporaryDirectory() as folder:
    source = os.path.join(folder, f"{kernel.name}.ttir")
    with open(source, "w") as f:
      f.write(kernel.ir)
    previous = os.environ.get("TRITON_CACHE_DIR")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "cache")  # never reuse a binary
    try:
      result = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
    finally:
      if previous is None:
        del os.environ["TRITON_CACHE_DIR"]
      else:
        os.environ["TRITON_CACHE_DIR"] = previous
    ptx, cubin = os.path.join(folder, "k.ptx"), os.path.join(folder, "k.cubin")
    with open(ptx, "w") as f:
      f.write(result.asm["ptx"])
    ptxas = [_nvidia_tool("ptxas"), "-v", f"--gpu-name={gpu_arch(capability)}", ptx, "-o", cubin]
    if "maxnreg" in triton_options:
      ptxas[1:1] = [f"--maxrregcount={triton_options['maxnreg']}"]
    log = subprocess.run(ptxas, check=True, capture_output=True, text=True).stderr
    sass = subprocess.run(
      [_nvidia_tool("cuobjdump"), "-sass", cubin], check=True, capture_output=True, text=True
    ).stdout
  registers = int(re.search(r"Used (\d+) registers", log).group(1))  # pyright: ignore[reportOptionalMemberAccess]
  spills = sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", log))
  return Compiled(kernel, capability, registers, spills, log, sass)


# ---------------------------------------------------------------------------------------------
# Reading the SASS.

_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def instructions(sass):
  """[(address, text)] of every instruction in cuobjdump's listing."""
  return [(int(a, 16), text) for a, text in _LINE.findall(sass)]


@dataclasses.dataclass(frozen=True)
class Loop:
  """An innermost loop of the SASS: its instructions, first to the backward branch; `name` and
  `steps` (time steps per iteration) where `time_loops` knows them."""

  start: int
  body: tuple[str, ...]
  name: str = "loop"
  steps: int = 1

  def count(self, pattern):
    """Instructions whose opcode (predicate stripped) starts with one of `pattern`'s words."""
    words = tuple(pattern.split())
    return sum(_opcode(text).startswith(words) for text in self.body)

  def figures(self):
    """Per time step: the iteration's counts over its steps."""
    return {
      key: value / self.steps
      for key, value in dict(
        instructions=len(self.body),
        barriers=self.count("BAR"),
        shuffles=self.count("SHFL"),
        global_loads=self.count("LDG"),
        global_stores=self.count("STG"),
        shared=self.count("LDS STS"),
      ).items()
    }


def _opcode(text):
  return text.split()[1] if text.startswith("@") else text.split()[0]


def innermost_loops(sass):
  """Loops of the SASS that hold no other loop, in address order: (branch target, branch
  address) of every backward branch, less those whose range holds another."""
  listing = instructions(sass)
  loops = []
  for address, text in listing:
    match = re.match(r"(?:@!?U?P\w+\s+)?BRA\s+(?:\w+\s+)?(0x[0-9a-f]+)", text)
    if match and int(match.group(1), 16) < address:
      loops.append((int(match.group(1), 16), address))
  inner = [
    (start, end)
    for start, end in loops
    if not any(start <= s and e <= end and (s, e) != (start, end) for s, e in loops)
  ]
  return [
    Loop(start, tuple(text for address, text in listing if start <= address <= end))
    for start, end in sorted(inner)
  ]


def time_loops(kernel_name, sass, chunk):
  """The innermost loops of a kernel's SASS, named, with their time steps per iteration: the
  forward's time loop; the backward's recompute and reverse loops (`pallas_gpu_kernels`).
  Raises if the SASS has another number of loops."""
  per = pallas_gpu_kernels.steps_per_iteration(chunk)
  expected = {
    "selective_scan_fwd": [("time", per)],
    "selective_scan_bwd": [
      ("recompute", per),
      ("reverse", per),
    ],
  }[kernel_name]
  loops = innermost_loops(sass)
  if len(loops) != len(expected):
    raise ValueError(
      f"{kernel_name}: {len(loops)} innermost loops in the SASS, expected {len(expected)} "
      f"({', '.join(name for name, _ in expected)})"
    )
  return [
    dataclasses.replace(loop, name=name, steps=steps)
    for loop, (name, steps) in zip(loops, expected)
  ]


def issue_floor_ms(per_step, length, warps, clock_hz=H100_CLOCK_HZ, schedulers=H100_SCHEDULERS):
  """The scan's time if each warp issued one instruction per cycle and never stalled: length x
  instructions per step over the clock, times the warps that must share one scheduler."""
  sharing = max(1, -(-warps // schedulers))
  return length * per_step * sharing / clock_hz * 1e3


def report(shape=SHAPE, dtype=jnp.bfloat16, capability=90):
  """Lines of a Markdown table: per kernel and innermost loop, the SASS per time step and the
  issue floor at `shape` on an H100 (`python -m mamba_jax_kernels.selective_scan.bench --sass`)."""
  status = triton_wheel_status()
  if status is not None:
    return [f"# SASS report skipped: {status}"]
  lines = [
    f"# SASS per time step: JAX {jax.__version__}, {'x'.join(map(str, shape))} "
    f"{jnp.dtype(dtype).name}, upstream Triton for {gpu_arch(capability)} (indicative)",
    "| kernel | warps | registers | spill bytes | loop | steps/iteration | instructions/step "
    "| barriers | shuffles | global loads | global stores | shared ld/st | H100 issue floor ms |",
    "|" + "---|" * 13,
  ]
  chunk = pallas_gpu.launch_settings(*shape).chunk
  number = lambda x: f"{x:g}" if x == int(x) else f"{x:.2f}".rstrip("0")
  for kernel in export_kernels(shape, dtype).values():
    compiled = compile_kernel(kernel, capability)
    warps = kernel.num_warps * kernel.grid[0] * kernel.grid[1] * kernel.grid[2]
    for loop in time_loops(kernel.name, compiled.sass, chunk):
      f = loop.figures()
      floor = issue_floor_ms(f["instructions"], shape[1], warps)
      lines.append(
        f"| {kernel.name} | {kernel.num_warps} | {compiled.registers} | {compiled.spill_bytes} "
        f"| {loop.name} | {loop.steps} | "
        + " | ".join(
          number(f[key])
          for key in (
            "instructions",
            "barriers",
            "shuffles",
            "global_loads",
            "global_stores",
            "shared",
          )
        )
        + f" | {floor:.2f} |"
      )
  return lines
