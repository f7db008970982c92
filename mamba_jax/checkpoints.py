"""Load and save Mamba-1 language models in the published checkpoint formats.

Two formats hold the same tensors. mamba_ssm's (`MambaLMHeadModel`, the `state-spaces/mamba-*`
checkpoints): config.json with d_model, n_layer, vocab_size, ssm_cfg, ... and the weights in
pytorch_model.bin. transformers' (`MambaForCausalLM`, the `state-spaces/mamba-*-hf` ones):
config.json with hidden_size, num_hidden_layers, state_size, ... and the weights in safetensors.
Their tensor names differ only in the embedding (`backbone.embedding` vs `backbone.embeddings`);
both use torch layouts: Linear weights are (out, in) where Flax kernels are (in, out), the
depthwise conv weight is (d_inner, 1, d_conv) where mamba_jax's is (d_inner, d_conv), and
dt_proj's bias is mamba_jax's float32 mixer parameter `dt_bias`.

Vocabulary: mamba_ssm's config.json keeps the tokenizer's vocab_size and its embedding holds
vocab_size rounded up to pad_vocab_size_multiple rows, as MambaLM's; transformers' vocab_size is
the number of embedding rows. Saving in transformers' format writes the padded rows and, when
they differ, the unpadded size as the extra field `unpadded_vocab_size`, so a round trip keeps
MambaConfig.vocab_size (ids past it are padding that `mamba_jax.decode` never samples).

Precision is a runtime choice: tensors of any floating dtype (bf16 and fp16 checkpoints too) load
into `param_dtype` (float32 unless given; A_log, D and dt_bias stay float32), one tensor at a
time (mamba_jax.weight_files reads the files). Writing safetensors and reading or writing .bin
files import safetensors and torch when used (the `interop` extra).
"""

import dataclasses
import json
import math
import pathlib
import re
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax import hub
from mamba_jax.config import MambaConfig
from mamba_jax.models import MambaLM, unstack_layers
from mamba_jax.weight_files import INTEROP_EXTRA, import_torch, open_weights, read_json_object

FORMATS = ("hf", "mamba_ssm")
CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TORCH_NAME = "pytorch_model.bin"
TORCH_INDEX_NAME = "pytorch_model.bin.index.json"
WEIGHT_NAMES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, TORCH_NAME, TORCH_INDEX_NAME)
_SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
MAX_LISTED_PROBLEMS = 20  # a bad checkpoint's ValueError lists this many, then a count

# MambaConfig fields a checkpoint does not fix: how to run it, not what it is.
RUNTIME_FIELDS = (
  "dtype",
  "param_dtype",
  "scan_implementation",
  "scan_interpret",
  "scan_chunk_size",
  "remat",
  "scan_layers",
)

_EMBEDDING_KEYS = {"hf": "backbone.embeddings.weight", "mamba_ssm": "backbone.embedding.weight"}
# Arguments of mamba_ssm's `Mamba` module that its config's ssm_cfg may carry; MambaConfig's
# fields of the same names mean the same.
_SSM_CFG_FIELDS = (
  "d_state",
  "d_conv",
  "expand",
  "dt_rank",
  "dt_min",
  "dt_max",
  "dt_scale",
  "dt_init_floor",
  "conv_bias",
  "bias",
)
_SSM_CFG_IGNORED = ("dt_init", "use_fast_path", "layer")  # init scheme, kernel choice, layer type
_MAMBA2 = (
  "is a Mamba-2 checkpoint ({}); mamba_jax implements the Mamba-1 mixer only "
  "(mamba_ssm's `Mamba`, transformers' MambaForCausalLM). Mamba-2's mixer (a scalar A "
  "per head, grouped B and C, a gated norm) has other tensors: it cannot be loaded"
)


# ---------------------------------------------------------------------------------------------
# Public API


def load_pretrained(path, **runtime):
  """(MambaConfig, MambaLM) from a checkpoint directory (or one of its weight files), or a Hugging
  Face Hub model id such as "state-spaces/mamba-130m-hf" (mamba_jax.hub: needs huggingface_hub).

  The directory holds config.json in mamba_ssm's or transformers' schema and the weights as
  model.safetensors, sharded safetensors with model.safetensors.index.json, or
  pytorch_model.bin (needs torch). runtime: MambaConfig fields that the checkpoint does not fix
  (RUNTIME_FIELDS: dtype, param_dtype, scan_implementation, scan_layers, ...). Every tensor is
  checked before anything is built: a missing file, a missing or unknown tensor, or a wrong shape
  raises one ValueError that names every such tensor with the shape expected; a Mamba-2
  checkpoint is refused. Nothing is ever loaded partially.
  """
  _check_runtime(runtime)
  directory, weights_file = _locate(path)
  config, schema, raw = _read_config(directory, runtime)
  weights = _open_weights(directory, weights_file)
  try:
    _refuse_mamba2_tensors(weights.specs, weights.source)
    return config, _build_model(config, _expected_tensors(config, schema, raw), weights)
  finally:
    weights.close()


def load_config(path, **runtime):
  """The MambaConfig of a checkpoint (as `load_pretrained` gives it), without its weights."""
  _check_runtime(runtime)
  return _read_config(_locate(path)[0], runtime)[0]


def checkpoint_directory(path):
  """The local directory of a checkpoint: `path`'s, or a Hub model id's after downloading."""
  return _locate(path)[0]


def checkpoint_eos_token_id(path):
  """config.json's eos_token_id (transformers' schema has one), or None."""
  eos = _read_raw_config(_locate(path)[0]).get("eos_token_id")
  return eos if isinstance(eos, int) and not isinstance(eos, bool) and eos >= 0 else None


def save_pretrained(model, path, format="hf", *, safe_serialization=None, max_shard_size=None):
  """Writes config.json and the weights of a MambaLM to the directory `path`.

  format: "hf" (transformers' MambaForCausalLM: its config schema and tensor names) or
  "mamba_ssm" (MambaLMHeadModel's). safe_serialization: safetensors (default for "hf") or
  pytorch_model.bin (default for "mamba_ssm", which reads only that; needs torch).
  max_shard_size: bytes per safetensors shard (default one file), an int or a string as
  transformers takes it ("5GB", "500MiB"), with an index as transformers writes it. Weight
  files of an earlier save in `path` are replaced. Tensors keep their parameter dtype.
  `load_pretrained(path)` gives back the same parameters and, given the same runtime fields, the
  same MambaConfig.
  """
  if format not in FORMATS:
    raise ValueError(f"save_pretrained: format = {format!r}; expected one of {FORMATS}")
  if not isinstance(model, MambaLM):
    raise ValueError(f"save_pretrained: expected a MambaLM, got {type(model).__name__}")
  config = model.config
  raw = config_to_dict(config, format)
  safe = format == "hf" if safe_serialization is None else safe_serialization
  if max_shard_size is not None and not safe:
    raise ValueError(
      "save_pretrained: max_shard_size shards safetensors files only; pass safe_serialization=True"
    )
  max_shard_size = None if max_shard_size is None else _shard_bytes(max_shard_size)
  tensors = _torch_tensors(model, format)
  torch = None if safe else import_torch("write pytorch_model.bin")
  directory = pathlib.Path(path)
  directory.mkdir(parents=True, exist_ok=True)
  _remove_old_weights(directory)
  if safe:
    _write_safetensors(directory, tensors, max_shard_size)
  else:
    _write_torch(torch, directory, tensors, tied=config.tie_embeddings)
  (directory / CONFIG_NAME).write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")


def _shard_bytes(size):
  """Bytes of max_shard_size: a positive int or a string such as "5GB" (10**9) or "5GiB"."""
  units = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
  units.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
  match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?I?B)\s*", str(size).upper())
  if isinstance(size, int) and not isinstance(size, bool):
    count = size
  elif isinstance(size, str) and match and match.group(2) in units:
    count = int(float(match.group(1)) * units[match.group(2)])
  else:
    count = 0
  if count < 1:
    raise ValueError(
      f"save_pretrained: max_shard_size = {size!r}; expected a positive number of bytes, "
      'as an int or a string such as "5GB" or "500MiB"'
    )
  return count


def config_schema(raw):
  """ "hf" or "mamba_ssm": which program's config.json `raw` is (Mamba-2 and others refused)."""
  if not isinstance(raw, dict):
    raise ValueError(f"config.json holds a {type(raw).__name__}; expected a JSON object")
  if not isinstance(raw.get("ssm_cfg") or {}, dict):
    raise ValueError(
      f"config.json: ssm_cfg is a {type(raw['ssm_cfg']).__name__}; expected a JSON object of "
      "mamba_ssm's Mamba arguments"
    )
  if raw.get("model_type") is not None or "hidden_size" in raw:
    model_type = raw.get("model_type", "mamba")
    if model_type == "mamba2" or any("Mamba2" in str(a) for a in raw.get("architectures") or ()):
      raise ValueError("config.json " + _MAMBA2.format(f"model_type {model_type!r}"))
    if model_type != "mamba":
      raise ValueError(
        f"config.json: model_type {model_type!r} is not a Mamba-1 language model; "
        "load_pretrained reads transformers' model_type 'mamba' and mamba_ssm's "
        "MambaLMHeadModel"
      )
    return "hf"
  if "d_model" in raw and "n_layer" in raw:
    layer = (raw.get("ssm_cfg") or {}).get("layer", "Mamba1")
    if layer == "Mamba2":
      raise ValueError("config.json " + _MAMBA2.format("ssm_cfg.layer 'Mamba2'"))
    if layer != "Mamba1":
      raise ValueError(f"config.json: ssm_cfg.layer {layer!r} is not mamba_ssm's Mamba-1 mixer")
    return "mamba_ssm"
  raise ValueError(
    "config.json is neither transformers' Mamba schema (model_type, hidden_size, "
    "num_hidden_layers, ...) nor mamba_ssm's (d_model, n_layer, vocab_size, ...)"
  )


def config_from_dict(raw, **runtime):
  """MambaConfig from a parsed config.json of either schema, plus runtime fields."""
  schema = config_schema(raw)
  fields = _fields_from_hf(raw) if schema == "hf" else _fields_from_mamba_ssm(raw)
  return MambaConfig(**fields, **runtime)


def config_to_dict(config, format):
  """config.json of `format` for a MambaConfig (ValueError for what it cannot express)."""
  if config.discretization != "fixed":
    raise ValueError(
      f"save_pretrained: discretization {config.discretization!r} has parameters "
      "(alpha) that neither checkpoint format can hold; only 'fixed' is saved"
    )
  if config.vocab_size is None:
    raise ValueError("save_pretrained: MambaConfig.vocab_size = None; only a MambaLM is saved")
  if config.d_conv == 0:
    raise ValueError("save_pretrained: MambaConfig.d_conv = 0 (no conv); both formats need one")
  if format == "hf":
    return _hf_dict(config)
  if format == "mamba_ssm":
    return _mamba_ssm_dict(config)
  raise ValueError(f"save_pretrained: format = {format!r}; expected one of {FORMATS}")


# ---------------------------------------------------------------------------------------------
# config.json <-> MambaConfig


def _fields_from_hf(raw):
  if raw.get("hidden_act", "silu") != "silu":
    raise ValueError(f"config.json: hidden_act {raw['hidden_act']!r}; Mamba uses 'silu'")
  rows = _integer(raw, "vocab_size")
  unpadded = _integer(raw, "unpadded_vocab_size", rows)
  if unpadded > rows:
    raise ValueError(
      f"config.json: unpadded_vocab_size {unpadded} exceeds vocab_size {rows}, the number of "
      "embedding rows stored"
    )
  return dict(
    d_model=_integer(raw, "hidden_size"),
    n_layers=_integer(raw, "num_hidden_layers"),
    d_state=raw.get("state_size", 16),
    d_conv=raw.get("conv_kernel", 4),
    expand=raw.get("expand", 2),
    dt_rank=raw.get("time_step_rank", "auto"),
    dt_min=raw.get("time_step_min", 1e-3),
    dt_max=raw.get("time_step_max", 0.1),
    dt_init_floor=raw.get("time_step_floor", 1e-4),
    dt_scale=raw.get("time_step_scale", 1.0),
    conv_bias=raw.get("use_conv_bias", True),
    bias=raw.get("use_bias", False),
    rms_norm_eps=raw.get("layer_norm_epsilon", 1e-5),
    residual_in_fp32=raw.get("residual_in_fp32", True),
    tie_embeddings=raw.get("tie_word_embeddings", True),
    vocab_size=unpadded,
    pad_vocab_size_multiple=raw.get("pad_vocab_size_multiple", 8),
    initializer_range=raw.get("initializer_range", 0.1),
  )


def _fields_from_mamba_ssm(raw):
  if raw.get("d_intermediate", 0):
    raise ValueError(
      f"config.json: d_intermediate = {raw['d_intermediate']} adds MLP layers, "
      "which mamba_jax's MambaLM does not have"
    )
  if raw.get("attn_layer_idx"):
    raise ValueError(
      f"config.json: attn_layer_idx = {raw['attn_layer_idx']} adds attention "
      "layers, which mamba_jax's MambaLM does not have"
    )
  if not raw.get("rms_norm", True):
    raise ValueError("config.json: rms_norm = false (LayerNorm); mamba_jax uses RMSNorm only")
  ssm_cfg = dict(raw.get("ssm_cfg") or {})
  unknown = sorted(set(ssm_cfg) - set(_SSM_CFG_FIELDS) - set(_SSM_CFG_IGNORED))
  if unknown:
    raise ValueError(
      f"config.json: ssm_cfg keys {unknown} are not arguments of mamba_ssm's "
      f"Mamba-1 mixer; known: {sorted(_SSM_CFG_FIELDS)}"
    )
  fields = {name: ssm_cfg[name] for name in _SSM_CFG_FIELDS if name in ssm_cfg}
  return dict(
    d_model=_integer(raw, "d_model"),
    n_layers=_integer(raw, "n_layer"),
    vocab_size=_integer(raw, "vocab_size"),
    pad_vocab_size_multiple=raw.get("pad_vocab_size_multiple", 8),
    residual_in_fp32=raw.get("residual_in_fp32", True),
    tie_embeddings=raw.get("tie_embeddings", True),
    **fields,
  )


def _hf_dict(config):
  _warn_dropped(config, "hf", ("rescale_prenorm_residual",))
  raw = {
    "architectures": ["MambaForCausalLM"],
    "model_type": "mamba",
    "hidden_size": config.d_model,
    "num_hidden_layers": config.n_layers,
    "state_size": config.d_state,
    "conv_kernel": config.d_conv,
    "expand": config.expand,
    "intermediate_size": config.d_inner,
    "time_step_rank": config.dt_rank,
    "time_step_min": config.dt_min,
    "time_step_max": config.dt_max,
    "time_step_floor": config.dt_init_floor,
    "time_step_scale": config.dt_scale,
    "time_step_init_scheme": "random",
    "use_conv_bias": config.conv_bias,
    "use_bias": config.bias,
    "hidden_act": "silu",
    "layer_norm_epsilon": config.rms_norm_eps,
    "residual_in_fp32": config.residual_in_fp32,
    "tie_word_embeddings": config.tie_embeddings,
    "vocab_size": config.padded_vocab_size,
    "pad_vocab_size_multiple": config.pad_vocab_size_multiple,
    "initializer_range": config.initializer_range,
    # Init-only, but transformers (5.24) divides the *loaded* out_proj weights by
    # sqrt(n_layers) when it is true: always false here, as in the published -hf files.
    "rescale_prenorm_residual": False,
    "dtype": jnp.dtype(config.param_dtype).name,
  }
  if config.vocab_size != config.padded_vocab_size:
    raw["unpadded_vocab_size"] = config.vocab_size
  return raw


def _mamba_ssm_dict(config):
  """mamba_ssm's MambaConfig fields only: its from_pretrained rejects any other key."""
  if config.rms_norm_eps != 1e-5:
    raise ValueError(
      f"save_pretrained: rms_norm_eps = {config.rms_norm_eps}; mamba_ssm's "
      "config.json cannot express it (its models use 1e-5): save format='hf'"
    )
  _warn_dropped(config, "mamba_ssm", ("initializer_range", "rescale_prenorm_residual"))
  ssm_cfg = {name: getattr(config, name) for name in _SSM_CFG_FIELDS}
  return {
    "d_model": config.d_model,
    "n_layer": config.n_layers,
    "vocab_size": config.vocab_size,
    "ssm_cfg": ssm_cfg,
    "rms_norm": True,
    "residual_in_fp32": config.residual_in_fp32,
    "fused_add_norm": True,
    "pad_vocab_size_multiple": config.pad_vocab_size_multiple,
    "tie_embeddings": config.tie_embeddings,
  }


def _warn_dropped(config, format, names):
  """Initialisation-only fields the format's config.json does not keep come back as defaults."""
  defaults = {field.name: field.default for field in dataclasses.fields(MambaConfig)}
  dropped = [name for name in names if getattr(config, name) != defaults[name]]
  if dropped:
    warnings.warn(
      f"save_pretrained(format={format!r}): {dropped} (initialisation only) are not "
      "kept in its config.json and load back as MambaConfig's defaults",
      stacklevel=_caller_stacklevel(),
    )


def _caller_stacklevel():
  """warnings.warn's stacklevel of the first frame outside this module (the user's call)."""
  frame, level = sys._getframe(1), 1
  while frame is not None and frame.f_code.co_filename == __file__:
    frame, level = frame.f_back, level + 1
  return level


def _integer(raw, key, default=None):
  """raw[key], an int (a missing field without a default, or another type, is refused)."""
  if key not in raw and default is None:
    raise ValueError(f"config.json: missing field {key!r}")
  value = raw.get(key, default)
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"config.json: {key} = {value!r}; expected a positive integer")
  return value


# ---------------------------------------------------------------------------------------------
# The tensor map: torch name and layout <-> mamba_jax parameter path and layout


class _Tensor:
  """One checkpoint tensor: its torch name and shape, its parameter path in the per-layer
  layout, and how its torch layout becomes the parameter's (`to_ours`) and back."""

  def __init__(self, key, shape, path, layout="same", rows=None):
    self.key, self.shape, self.path, self.layout, self.rows = key, tuple(shape), path, layout, rows

  def fill(self, target, array):
    """Writes `array` (torch layout) into `target` (the parameter's layout and dtype), casting
    as it copies; the padding rows of the vocabulary become zeros."""
    ours = array.T if self.layout in ("linear", "head") else array
    ours = ours[:, 0, :] if self.layout == "conv" else ours
    if self.layout in ("embedding", "head"):
      n = array.shape[0]
      rows = (slice(None, n), slice(n, None))
      target, padding = (
        (target[rows[0]], target[rows[1]])
        if self.layout == "embedding"
        else (target[:, rows[0]], target[:, rows[1]])
      )
      padding[...] = 0
    if ours.shape != target.shape:  # the map and MambaLM disagree: a bug here, not the file
      raise RuntimeError(f"checkpoint map gives {self.path} shape {ours.shape}, not {target.shape}")
    target[...] = ours

  def to_torch(self, array):
    if self.layout in ("linear", "head"):
      return array.T
    if self.layout == "conv":
      return array[:, None, :]
    return array


def _expected_tensors(config, schema, raw=None):
  """Every tensor a checkpoint of `schema` holds for `config`, in the checkpoint's order.

  raw: the config.json read (transformers' vocab_size is the stored number of rows, which may
  be below MambaLM's padded vocabulary; the padding rows then load as zeros).
  """
  c = config
  rows = c.padded_vocab_size
  if schema == "hf" and raw is not None:
    rows = raw["vocab_size"]
    if rows > c.padded_vocab_size:
      raise ValueError(
        f"config.json: vocab_size {rows} (embedding rows) exceeds "
        f"unpadded_vocab_size {c.vocab_size} padded to a multiple of "
        f"{c.pad_vocab_size_multiple} ({c.padded_vocab_size})"
      )
  d_inner, dt_rank = c.d_inner, c.resolved_dt_rank
  tensors = [
    _Tensor(
      _EMBEDDING_KEYS[schema],
      (rows, c.d_model),
      ("embedding", "embedding"),
      "embedding",
      c.padded_vocab_size,
    )
  ]
  for i in range(c.n_layers):
    key, path = f"backbone.layers.{i}.", ("backbone", "layers", i)
    mixer = (key + "mixer.", path + ("mixer",))

    def add(name, shape, ours, layout="same", prefix=mixer):
      tensors.append(_Tensor(prefix[0] + name, shape, prefix[1] + ours, layout))

    add("A_log", (d_inner, c.d_state), ("A_log",))
    add("D", (d_inner,), ("D",))
    add("conv1d.weight", (d_inner, 1, c.d_conv), ("conv1d", "weight"), "conv")
    if c.conv_bias:
      add("conv1d.bias", (d_inner,), ("conv1d", "bias"))
    add("dt_proj.weight", (d_inner, dt_rank), ("dt_proj", "kernel"), "linear")
    add("dt_proj.bias", (d_inner,), ("dt_bias",))
    add("in_proj.weight", (2 * d_inner, c.d_model), ("in_proj", "kernel"), "linear")
    if c.bias:
      add("in_proj.bias", (2 * d_inner,), ("in_proj", "bias"))
    add("out_proj.weight", (c.d_model, d_inner), ("out_proj", "kernel"), "linear")
    if c.bias:
      add("out_proj.bias", (c.d_model,), ("out_proj", "bias"))
    add("x_proj.weight", (dt_rank + 2 * c.d_state, d_inner), ("x_proj", "kernel"), "linear")
    add("norm.weight", (c.d_model,), ("norm", "weight"), prefix=(key, path))
  tensors.append(_Tensor("backbone.norm_f.weight", (c.d_model,), ("backbone", "norm_f", "weight")))
  if not c.tie_embeddings:
    tensors.append(
      _Tensor(
        "lm_head.weight", (rows, c.d_model), ("lm_head", "kernel"), "head", c.padded_vocab_size
      )
    )
  return tensors


def _check_tensors(expected, weights, tied):
  """Every problem of the whole checkpoint at once (nothing is built while there is one)."""
  by_key, specs, source = {t.key: t for t in expected}, weights.specs, weights.source
  if tied and "lm_head.weight" in specs:  # mamba_ssm's .bin stores the tied head as well
    embedding = expected[0].key
    if specs["lm_head.weight"][0] != specs.get(embedding, (None,))[0] or not np.array_equal(
      weights.read("lm_head.weight"), weights.read(embedding)
    ):
      raise ValueError(
        f"{source}: tensor 'lm_head.weight' differs from the embedding "
        f"'{embedding}' but config.json ties them (tie_word_embeddings / "
        "tie_embeddings); nothing was loaded"
      )
  problems = []
  for tensor in expected:
    shape, dtype = specs.get(tensor.key, (None, None))
    if shape is None:
      problems.append(f"missing tensor '{tensor.key}': expected shape {tensor.shape}")
    elif shape != tensor.shape:
      problems.append(f"tensor '{tensor.key}' has shape {shape}; expected {tensor.shape}")
    elif not jnp.issubdtype(dtype, jnp.floating):
      problems.append(
        f"tensor '{tensor.key}' has dtype {dtype}; expected a floating dtype, shape {tensor.shape}"
      )
  for key in sorted(set(specs) - set(by_key) - ({"lm_head.weight"} if tied else set())):
    problems.append(
      f"unknown tensor '{key}' (shape {specs[key][0]}): no "
      "parameter of a Mamba-1 MambaLM with this config.json takes it"
    )
  if problems:
    listed = problems[:MAX_LISTED_PROBLEMS]
    if len(problems) > len(listed):
      listed.append(f"... and {len(problems) - len(listed)} more")
    raise ValueError(
      f"{source}: {len(problems)} tensor(s) do not match config.json; nothing "
      "was loaded:\n  " + "\n  ".join(listed)
    )


def _build_model(config, expected, weights):
  """The MambaLM of `config` with the checkpoint's tensors, read and placed one parameter at a
  time: each parameter (with stacked layers, each stack) is a numpy buffer in its final dtype,
  filled tensor by tensor (each read, cast and dropped in turn), then handed to JAX before the
  next is read. On CPU JAX adopts the buffer without a copy (`_host_buffer`); elsewhere it is
  copied to the device and freed. A load's peak is then about the parameters plus one tensor
  as the file stores it, whatever the file's dtype."""
  _embedding_alias(weights, expected[0].key)
  _check_tensors(expected, weights, config.tie_embeddings)
  if config.tie_embeddings and "lm_head.weight" in weights.specs:
    weights.drop("lm_head.weight")  # the embedding's copy (in a .bin, its storage too)
  model = nnx.eval_shape(lambda: MambaLM(config, rngs=nnx.Rngs(0)))
  abstract = nnx.state(model, nnx.Param)
  wanted = dict(nnx.to_flat_state(abstract))
  groups = {}  # parameter path -> [(tensor, layer index in the stack or None)]
  for tensor in expected:
    path, layer = _destination(tensor.path, config.resolved_scan_layers)
    groups.setdefault(path, []).append((tensor, layer))
  if set(wanted) != set(groups):  # the tensor map and MambaLM disagree: a bug here, not the file
    raise RuntimeError(
      f"checkpoint map out of date with MambaLM: {sorted(set(wanted) ^ set(groups), key=str)}"
    )
  pure = {}
  for path, members in groups.items():
    buffer = _host_buffer(wanted[path].shape, wanted[path].dtype)
    for tensor, layer in members:
      tensor.fill(buffer if layer is None else buffer[layer], weights.take(tensor.key))
    _set(pure, path, jax.device_put(buffer, may_alias=True))
    del buffer
  nnx.replace_by_pure_dict(abstract, pure)
  nnx.update(model, abstract)
  return model


def _host_buffer(shape, dtype, alignment=64):
  """An uninitialised numpy array aligned as XLA's CPU client needs to adopt it without a copy
  (numpy aligns to 16 bytes; jax.device_put(may_alias=True) then copies)."""
  dtype = np.dtype(dtype)
  raw = np.empty(math.prod(shape) * dtype.itemsize + alignment, np.uint8)
  start = -raw.ctypes.data % alignment
  return raw[start : start + math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


def _destination(path, stacked):
  """(parameter path, layer index or None) of a tensor's per-layer path in the model built."""
  if stacked and path[:2] == ("backbone", "layers"):
    return ("backbone", "stacked_layers") + path[3:], path[2]
  return path, None


def _embedding_alias(weights, key):
  """transformers also reads `backbone.embedding.weight` (and mamba_ssm's name in its
  load hook); accept either name for the embedding, in either schema."""
  alias = _EMBEDDING_KEYS["mamba_ssm" if key == _EMBEDDING_KEYS["hf"] else "hf"]
  if key not in weights.specs and alias in weights.specs:
    weights.rename(alias, key)


def _torch_tensors(model, format):
  """{torch name: numpy array in torch layout} of a MambaLM, as `format` names them."""
  config = model.config
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  if config.resolved_scan_layers:
    params = unstack_layers(params)
  flat = dict(_flatten(params))
  tensors = {}
  for tensor in _expected_tensors(config, format):
    tensors[tensor.key] = np.ascontiguousarray(tensor.to_torch(np.asarray(flat[tensor.path])))
  return tensors


def _refuse_mamba2_tensors(specs, source):
  for key, (shape, _) in specs.items():
    if (
      key.endswith("mixer.dt_bias")
      or key.endswith("mixer.norm.weight")
      or (key.endswith("mixer.A_log") and len(shape) == 1)
    ):
      raise ValueError(f"{source} " + _MAMBA2.format(f"tensor '{key}' of shape {shape}"))


def _set(tree, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _flatten(tree, prefix=()):
  for key, value in tree.items():
    key = int(key) if isinstance(key, str) and key.isdigit() else key
    if isinstance(value, dict) or hasattr(value, "items"):
      yield from _flatten(value, prefix + (key,))
    else:
      yield prefix + (key,), value


# ---------------------------------------------------------------------------------------------
# Files


def _locate(path):
  """(directory, weights file or None) for a checkpoint directory, one of its files or a Hub
  model id (downloaded)."""
  if hub.is_hub_id(path):
    return hub.download(str(path)), None
  path = pathlib.Path(path)
  if path.is_dir():
    return path, None
  if path.is_file():
    if path.name == CONFIG_NAME:
      return path.parent, None
    return path.parent, path
  raise ValueError(f"load_pretrained: no such checkpoint directory or file: '{path}'")


def _check_runtime(runtime):
  unknown = sorted(set(runtime) - set(RUNTIME_FIELDS))
  if unknown:
    raise ValueError(
      f"load_pretrained: {unknown} cannot be overridden: the checkpoint's "
      f"config.json fixes the architecture; only {RUNTIME_FIELDS} can be given"
    )


def _read_raw_config(directory):
  path = directory / CONFIG_NAME
  if not path.is_file():
    raise ValueError(
      f"load_pretrained: missing file '{path}': a checkpoint directory holds "
      f"{CONFIG_NAME} (mamba_ssm's or transformers' schema) beside the weights"
    )
  return read_json_object(path, "a JSON object of the model's fields")


def _read_config(directory, runtime):
  """(MambaConfig, schema, raw config.json) of a checkpoint directory plus runtime fields."""
  raw = _read_raw_config(directory)
  try:
    return config_from_dict(raw, **runtime), config_schema(raw), raw
  except ValueError as error:  # name the file, unless a runtime field given here is at fault
    message = str(error)
    if any(message.startswith(f"MambaConfig.{name} ") for name in runtime):
      raise
    message = message[len("config.json") :] if message.startswith("config.json") else ": " + message
    raise ValueError(f"load_pretrained: '{directory / CONFIG_NAME}'{message}") from None


def _open_weights(directory, weights_file):
  """WeightFiles of the given weights file, or of the first of WEIGHT_NAMES present."""
  if weights_file is None:
    for name in WEIGHT_NAMES:
      if (directory / name).is_file():
        weights_file = directory / name
        break
    else:
      raise ValueError(
        f"load_pretrained: missing weights in '{directory}': expected one of {list(WEIGHT_NAMES)}"
      )
  name = weights_file.name
  if name.endswith(".index.json"):
    return open_weights(weights_file, read_json_object(weights_file, "a shard index object"))
  if name.endswith((".safetensors", ".bin", ".pt", ".pth")):
    return open_weights(weights_file)
  raise ValueError(
    f"load_pretrained: '{weights_file}' is not a weights file; expected "
    ".safetensors, .bin or an .index.json of shards"
  )


def _remove_old_weights(directory):
  for path in directory.iterdir():
    if path.is_file() and (path.name in WEIGHT_NAMES or _SHARD_PATTERN.fullmatch(path.name)):
      path.unlink()


def _write_safetensors(directory, tensors, max_shard_size):
  try:
    from safetensors.numpy import save_file
  except ImportError as error:
    raise ImportError(
      f"writing safetensors needs the safetensors package: {INTEROP_EXTRA}"
    ) from error
  metadata = {"format": "pt"}  # transformers refuses safetensors files without it
  if max_shard_size is None or sum(a.nbytes for a in tensors.values()) <= max_shard_size:
    save_file(tensors, str(directory / SAFETENSORS_NAME), metadata=metadata)
    return
  shards, current, size = [], {}, 0
  for key, array in tensors.items():
    if current and size + array.nbytes > max_shard_size:
      shards.append(current)
      current, size = {}, 0
    current[key] = array
    size += array.nbytes
  shards.append(current)
  weight_map = {}
  for index, shard in enumerate(shards):
    name = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, str(directory / name), metadata=metadata)
    weight_map.update({key: name for key in shard})
  index = {
    "metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
    "weight_map": weight_map,
  }
  (directory / SAFETENSORS_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def _write_torch(torch, directory, tensors, tied):
  state = {}
  for key, array in tensors.items():
    if array.dtype == jnp.bfloat16:
      state[key] = torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    else:
      state[key] = torch.from_numpy(np.array(array))
  if tied:  # mamba_ssm's state dict holds the tied head too, sharing the embedding's storage
    state["lm_head.weight"] = (
      state[_EMBEDDING_KEYS["mamba_ssm"]]
      if (_EMBEDDING_KEYS["mamba_ssm"] in state)
      else state[_EMBEDDING_KEYS["hf"]]
    )
  torch.save(state, str(directory / TORCH_NAME))


__all__ = [
  "FORMATS",
  "RUNTIME_FIELDS",
  "config_from_dict",
  "config_schema",
  "config_to_dict",
  "checkpoint_directory",
  "checkpoint_eos_token_id",
  "load_config",
  "load_pretrained",
  "save_pretrained",
]
