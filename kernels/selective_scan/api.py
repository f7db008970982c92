"""The public selective-scan op: argument checks, a registry of implementations, and `auto`.

Semantics are mamba_ssm's `selective_scan_fn` in a channels-last layout (docs/design.md, the
op's semantics). Every implementation receives the same normalised arguments (B and C grouped as
(batch, length, groups, d_state), optional arguments None when absent) and its own options
object (`options.py`); options meant for another implementation are refused, never ignored.

`implementation="auto"` picks from AUTO_TABLE, the one place that says where a fast path is
trusted: a row names a platform, the device kinds and the JAX versions on which an
implementation passed the hardware self-check
(`python -m mamba_jax_kernels.selective_scan.check`), with that evidence. Where no row matches,
auto runs `xla` with the in-chunk strategy measured fastest for the platform
(`xla.default_strategy`).
"""

import dataclasses
import re
from collections.abc import Callable

import jax

from mamba_jax_kernels.selective_scan import arguments, pallas_gpu, pallas_op, reference, xla
from mamba_jax_kernels.selective_scan.options import Options, PallasOptions, XlaOptions

AUTO = "auto"
# Platforms on which the Pallas kernels compile natively (elsewhere: interpret mode only).
PALLAS_PLATFORMS = ("tpu", "gpu")


@dataclasses.dataclass(frozen=True)
class Implementation:
  """A registered implementation: its name, its options type (None: takes no options) and the
  function that runs it on normalised arguments, returning (out, final state)."""

  name: str
  options_type: type | None
  run: Callable[..., tuple[jax.Array, jax.Array]]
  summary: str


def _run_reference(u, delta, A, B, C, D, z, delta_bias, options, **kwargs):
  del options
  return reference.selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, **kwargs)


def _run_xla(u, delta, A, B, C, D, z, delta_bias, options, **kwargs):
  return xla.selective_scan_xla(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    **kwargs,
    chunk_size=options.chunk_size,
    strategy=options.strategy,
  )


def _run_pallas(u, delta, A, B, C, D, z, delta_bias, options, **kwargs):
  launch = {
    name: getattr(options, name)
    for name in ("num_warps", "num_stages")
    if getattr(options, name) is not None
  }
  return pallas_op.selective_scan_pallas(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    **kwargs,
    chunk_size=options.chunk_size,
    block_d=options.block_d,
    interpret=options.interpret,
    backend=options.backend,
    **launch,
  )


REGISTRY = {
  impl.name: impl
  for impl in (
    Implementation(
      "reference", None, _run_reference, "lax.scan over time with plain autodiff; the ground truth"
    ),
    Implementation(
      "xla",
      XlaOptions,
      _run_xla,
      "chunked pure JAX with a hand-written reverse-scan gradient; every platform",
    ),
    Implementation(
      "pallas",
      PallasOptions,
      _run_pallas,
      "Pallas kernels (Mosaic TPU, Triton GPU); elsewhere in interpret mode",
    ),
  )
}
# Every name `selective_scan(implementation=...)` accepts; mamba_jax's config checks against it.
IMPLEMENTATIONS = (AUTO,) + tuple(REGISTRY)


# ---------------------------------------------------------------------------------------------
# Where `auto` trusts a fast path.


@dataclasses.dataclass(frozen=True)
class Target:
  """What `auto` decides on: the platform, the device kind and the JAX version."""

  platform: str  # jax.default_backend(): "cpu", "gpu" or "tpu"
  device_kind: str  # jax.devices()[0].device_kind, e.g. "NVIDIA H200", "TPU v5 lite"
  jax_version: tuple[int, ...]  # (0, 10, 2)


@dataclasses.dataclass(frozen=True)
class AutoRule:
  """One row of AUTO_TABLE: on `platform`, one of `device_kinds` (exact device_kind strings) and
  JAX in [jax_versions[0], jax_versions[1]), auto runs `implementation` with `options`."""

  platform: str
  device_kinds: tuple[str, ...]
  jax_versions: tuple[tuple[int, ...], tuple[int, ...]]
  implementation: str
  options: Options
  evidence: str  # date, machine, command and result of the self-check that put the row here

  def matches(self, target: Target) -> bool:
    low, high = self.jax_versions
    return (
      target.platform == self.platform
      and target.device_kind in self.device_kinds
      and low <= target.jax_version < high
    )


# Rows are added only from a passing run of `python -m mamba_jax_kernels.selective_scan.check` on
# the hardware (correct against the reference on the test grid in float32 and bfloat16, values and
# gradients, bitwise-deterministic gradients, faster than the best xla at the benchmark shapes);
# its report prints the row to add. No kernel has run on a GPU or TPU yet (BUILD_NOTES.md), so
# there is none: everywhere auto runs xla, with xla.default_strategy's in-chunk strategy.
AUTO_TABLE: tuple[AutoRule, ...] = ()


def jax_version_tuple(version: str) -> tuple[int, ...]:
  """ "0.10.2" -> (0, 10, 2); "0.12.0.dev20260101" -> (0, 12, 0)."""
  match = re.match(r"\d+(\.\d+)*", version)
  if not match:
    raise ValueError(f"cannot read a JAX version from {version!r}")
  return tuple(int(part) for part in match.group(0).split("."))


def current_target() -> Target:
  return Target(
    jax.default_backend(), jax.devices()[0].device_kind, jax_version_tuple(jax.__version__)
  )


def auto_choice(target: Target | None = None) -> tuple[str, Options, AutoRule | None]:
  """(implementation, options, the AUTO_TABLE row that chose them or None) for the target."""
  target = target or current_target()
  for rule in AUTO_TABLE:
    if rule.matches(target):
      return rule.implementation, rule.options, rule
  return "xla", XlaOptions(strategy=xla.default_strategy(target.platform)), None


# ---------------------------------------------------------------------------------------------
# Resolution and the op.


def resolve_implementation(
  implementation: str = AUTO, options: object = None, target: Target | None = None
) -> tuple[str, Options]:
  """(name of a registered implementation, its options object) for a call.

  Maps "auto" through AUTO_TABLE, fills absent options with the implementation's defaults, and
  refuses what cannot run: unknown names, options of another implementation, and Pallas without
  interpret mode on a platform where it does not compile.
  """
  if implementation != AUTO and implementation not in REGISTRY:
    raise ValueError(
      f"selective_scan: implementation={implementation!r}; expected one of {list(IMPLEMENTATIONS)}"
    )
  if implementation == AUTO:
    if options is not None:
      raise ValueError(
        f"selective_scan: implementation='auto' takes no options (it picks its own "
        f"from AUTO_TABLE); got {options!r}. Name the implementation the options "
        f"are for: {_options_owners()}"
      )
    name, options, _ = auto_choice(target)
    return resolve_implementation(name, options, target)
  impl = REGISTRY[implementation]
  if impl.options_type is None:
    if options is not None:
      raise ValueError(
        f"selective_scan: implementation={implementation!r} takes no options; got {options!r}"
      )
    return implementation, None
  if options is None:
    options = impl.options_type()
  if not isinstance(options, (XlaOptions, PallasOptions)) or not isinstance(
    options, impl.options_type
  ):
    owners = [
      n
      for n, i in REGISTRY.items()
      if i.options_type is not None and isinstance(options, i.options_type)
    ]
    meant = f"; they are meant for implementation={owners[0]!r}" if owners else ""
    raise ValueError(
      f"selective_scan: implementation={implementation!r} takes "
      f"{impl.options_type.__name__} or None; got {type(options).__name__}{meant}"
    )
  if isinstance(options, PallasOptions):
    options = _resolve_pallas(options, (target or current_target()).platform)
  return implementation, options


def _options_owners():
  return ", ".join(
    f"{i.options_type.__name__} for {n!r}"
    for n, i in REGISTRY.items()
    if i.options_type is not None
  )


def _resolve_pallas(options, platform):
  if platform not in PALLAS_PLATFORMS and not options.interpret:
    raise ValueError(
      f"selective_scan: implementation='pallas' cannot compile on platform "
      f"{platform!r} (Pallas kernels need a TPU or GPU); pass "
      f"options=PallasOptions(interpret=True) to run the kernel in interpret mode, "
      f"or use implementation='xla'"
    )
  if options.backend is not None:
    return options
  backend = "gpu" if platform == "gpu" else "tpu"
  if backend == "tpu" and (options.num_warps is not None or options.num_stages is not None):
    raise ValueError(
      f"selective_scan: PallasOptions.num_warps/num_stages are launch settings of "
      f"the GPU (Triton) kernel; on platform {platform!r} this call runs the TPU "
      f"variant (pass backend='gpu' to run the GPU variant in interpret mode)"
    )
  return dataclasses.replace(options, backend=backend)


def make_options(implementation: str, **fields) -> Options:
  """The options object of `implementation` built from keyword fields; None when none are given.

  For callers that hold the options as separate settings (mamba_jax's MambaConfig): a field the
  implementation does not have raises, as does any field for "auto" or "reference".
  """
  if not fields:
    return None
  if implementation == AUTO or implementation not in REGISTRY:
    raise ValueError(
      f"selective_scan: options {sorted(fields)} need a named implementation "
      f"({_options_owners()}); got implementation={implementation!r}"
    )
  options_type = REGISTRY[implementation].options_type
  if options_type is None:
    raise ValueError(
      f"selective_scan: implementation={implementation!r} takes no options; got {sorted(fields)}"
    )
  known = [field.name for field in dataclasses.fields(options_type)]
  unknown = sorted(set(fields) - set(known))
  if unknown:
    raise ValueError(
      f"selective_scan: implementation={implementation!r} has no option "
      f"{', '.join(map(repr, unknown))}; its {options_type.__name__} has {known}"
    )
  return options_type(**fields)


def _gpu_kernel_fits(u, options):
  """False when auto's Pallas choice is the GPU kernel and this shape would leave most SMs idle
  (small batch x long sequence, pallas_gpu.gpu_kernel_suits) or JAX lacks the Triton backend."""
  backend = options.backend or pallas_op.default_backend()
  if backend != "gpu":
    return True
  batch, length, d_inner = u.shape
  return pallas_gpu.triton_status() is None and pallas_gpu.gpu_kernel_suits(batch, length, d_inner)


def selective_scan(
  u: jax.Array,
  delta: jax.Array,
  A: jax.Array,
  B: jax.Array,
  C: jax.Array,
  D: jax.Array | None = None,
  z: jax.Array | None = None,
  delta_bias: jax.Array | None = None,
  delta_softplus: bool = False,
  initial_state: jax.Array | None = None,
  lengths: jax.Array | None = None,
  return_final_state: bool = False,
  implementation: str = AUTO,
  options: Options = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Selective scan h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = <C_t, h_t> + D u_t.

  Args:
    u, delta: (batch, length, d_inner). z (optional, same shape) gates the output by silu(z).
    A: (d_inner, d_state), real. B, C: (batch, length, d_state) or (batch, length, groups, d_state).
    D, delta_bias: optional (d_inner,). delta_softplus: dt = softplus(delta + delta_bias).
    initial_state: optional (batch, d_inner, d_state). lengths: optional (batch,) int; steps at
      t >= lengths[b] leave the state unchanged and output 0.
    return_final_state: also return the float32 state after the last valid step.
    implementation: "auto" (AUTO_TABLE's choice for this platform, device and JAX version; xla
      where it has no row), "reference", "xla" or "pallas".
    options: how the named implementation runs: XlaOptions(chunk_size, strategy) for "xla",
      PallasOptions(chunk_size, block_d, interpret, backend, num_warps, num_stages) for
      "pallas"; None for the defaults. "reference" and "auto" take none. Options of another
      implementation raise a ValueError.

  Returns:
    out (batch, length, d_inner) in u.dtype, and the final state (batch, d_inner, d_state) float32
    when return_final_state.
  """
  B, C = arguments.check_scan(u, delta, A, B, C, D, z, delta_bias, initial_state, lengths)
  name, options = resolve_implementation(implementation, options)
  if implementation == AUTO and name == "pallas" and not _gpu_kernel_fits(u, options):
    name, options = resolve_implementation(
      "xla", XlaOptions(strategy=xla.default_strategy(jax.default_backend()))
    )
  out, state = REGISTRY[name].run(
    u,
    delta,
    A,
    B,
    C,
    D,
    z,
    delta_bias,
    options,
    delta_softplus=bool(delta_softplus),
    initial_state=initial_state,
    lengths=lengths,
  )
  return (out, state) if return_final_state else out
