"""mamba_jax.checkpoints: save/load round trips, the error messages, and agreement with
transformers' MambaForCausalLM (the interop extra: torch, transformers, safetensors).

Tests that need transformers skip cleanly without it; everything else needs only safetensors.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import mamba_jax
from mamba_jax import checkpoints, decode
from mamba_jax.checkpoints import load_pretrained, save_pretrained
from mamba_jax.config import MambaConfig
from mamba_jax.models import MambaLM

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

MAX_RELATIVE_ERROR = 1e-4  # issue 15: float32 logits against transformers'
VOCAB, D_MODEL, N_LAYERS = 100, 64, 2


def max_relative_error(actual, expected):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


def params_of(model):
  return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def random_model(config, seed=0):
  """A MambaLM with random parameters (norms, D, biases included, all away from their init),
  so that a tensor mapped to the wrong place or layout changes the outputs.

  Drawn with numpy into an abstract model: eager JAX initialisation compiles op by op.
  """
  model = nnx.eval_shape(lambda: MambaLM(config, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(seed)
  state = nnx.state(model, nnx.Param)
  pure = nnx.to_pure_dict(state)

  def draw(path, x):
    name = str(path[-1].key)
    value = rng.normal(0.0, 0.3, x.shape)
    if name in ("weight", "D") and len(x.shape) == 1:  # norms and the skip: around 1
      value = 1.0 + value
    if name == "A_log":
      value = np.log(np.arange(1, x.shape[-1] + 1)) + value
    if name == "dt_bias":  # inverse softplus of steps in [1e-3, 0.1]
      value = np.log(np.expm1(np.exp(rng.uniform(np.log(1e-3), np.log(0.1), x.shape))))
    return jnp.asarray(value, x.dtype)

  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(draw, pure))
  nnx.update(model, state)
  return model


def tiny(**overrides):
  fields = dict(d_model=16, n_layers=2, d_state=4, d_conv=3, vocab_size=50)
  fields.update(overrides)
  return MambaConfig(**fields)


# ---------------------------------------------------------------------------------------------
# Round trips (safetensors only)


@pytest.mark.parametrize("format", ["hf", "mamba_ssm"])
@pytest.mark.parametrize(
  "overrides",
  [
    dict(),
    dict(tie_embeddings=False, bias=True, conv_bias=False, dt_rank=3, expand=3),
    dict(param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, residual_in_fp32=False),
    dict(scan_layers=True, vocab_size=64),
  ],
)
def test_load_of_save_is_the_identity(tmp_path, format, overrides):
  config = tiny(**overrides)
  model = random_model(config)
  save_pretrained(model, tmp_path, format=format, safe_serialization=True)
  runtime = {name: getattr(config, name) for name in checkpoints.RUNTIME_FIELDS}
  loaded_config, loaded = load_pretrained(tmp_path, **runtime)
  assert loaded_config == config
  expected, actual = params_of(model), params_of(loaded)
  assert expected.keys() == actual.keys()
  for path, value in expected.items():
    assert actual[path].dtype == value.dtype, path
    np.testing.assert_array_equal(actual[path], value, err_msg=str(path))


def test_files_and_names_of_each_format(tmp_path):
  model = random_model(tiny())
  save_pretrained(model, tmp_path / "hf")
  save_pretrained(model, tmp_path / "ssm", format="mamba_ssm", safe_serialization=True)
  hf = json.loads((tmp_path / "hf" / "config.json").read_text())
  ssm = json.loads((tmp_path / "ssm" / "config.json").read_text())
  assert hf["model_type"] == "mamba" and hf["hidden_size"] == 16 and hf["vocab_size"] == 56
  assert hf["unpadded_vocab_size"] == 50 and hf["pad_vocab_size_multiple"] == 8
  assert ssm["d_model"] == 16 and ssm["n_layer"] == 2 and ssm["vocab_size"] == 50
  hf_tensors = safetensors_numpy.load_file(str(tmp_path / "hf" / "model.safetensors"))
  ssm_tensors = safetensors_numpy.load_file(str(tmp_path / "ssm" / "model.safetensors"))
  assert hf_tensors["backbone.embeddings.weight"].shape == (56, 16)
  assert "backbone.embedding.weight" in ssm_tensors and "lm_head.weight" not in ssm_tensors
  mixer = model.backbone.layers[0].mixer
  conv = hf_tensors["backbone.layers.0.mixer.conv1d.weight"]
  assert conv.shape == (32, 1, 3)
  np.testing.assert_array_equal(conv[:, 0], mixer.conv1d.weight[...])
  np.testing.assert_array_equal(
    hf_tensors["backbone.layers.0.mixer.in_proj.weight"], np.asarray(mixer.in_proj.kernel[...]).T
  )
  np.testing.assert_array_equal(
    hf_tensors["backbone.layers.0.mixer.dt_proj.bias"], mixer.dt_bias[...]
  )


def test_sharded_safetensors_and_a_weights_file_path(tmp_path):
  model = random_model(tiny())
  save_pretrained(model, tmp_path / "sharded", max_shard_size=8_000)
  index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
  assert len(set(index["weight_map"].values())) > 2
  assert not (tmp_path / "sharded" / "model.safetensors").exists()
  _, loaded = load_pretrained(tmp_path / "sharded")
  save_pretrained(model, tmp_path / "single")
  _, from_file = load_pretrained(tmp_path / "single" / "model.safetensors")
  for path, value in params_of(model).items():
    np.testing.assert_array_equal(params_of(loaded)[path], value)
    np.testing.assert_array_equal(params_of(from_file)[path], value)
  save_pretrained(model, tmp_path / "sharded")  # a later save replaces the shards
  assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == [
    "config.json",
    "model.safetensors",
  ]


@pytest.mark.parametrize("stored", [jnp.bfloat16, jnp.float16])
def test_half_precision_weights_load_into_param_dtype(tmp_path, stored):
  model = random_model(tiny(param_dtype=stored))
  save_pretrained(model, tmp_path)
  for param_dtype in (jnp.float32, jnp.bfloat16):
    config, loaded = load_pretrained(tmp_path, param_dtype=param_dtype)
    assert config.param_dtype == param_dtype
    mixer = loaded.backbone.layers[0].mixer
    assert mixer.in_proj.kernel[...].dtype == param_dtype
    assert mixer.A_log[...].dtype == mixer.D[...].dtype == mixer.dt_bias[...].dtype == jnp.float32
    np.testing.assert_array_equal(
      np.asarray(loaded.embedding.embedding[...], np.float32),
      np.asarray(model.embedding.embedding[...].astype(param_dtype), np.float32),
    )


def test_published_130m_configs_give_the_published_model():
  """The config.json files of state-spaces/mamba-130m and mamba-130m-hf, as published."""
  ssm = {
    "d_model": 768,
    "n_layer": 24,
    "vocab_size": 50277,
    "ssm_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,
    "pad_vocab_size_multiple": 8,
  }
  hf = {
    "architectures": ["MambaForCausalLM"],
    "model_type": "mamba",
    "hidden_size": 768,
    "num_hidden_layers": 24,
    "n_layer": 24,
    "state_size": 16,
    "expand": 2,
    "conv_kernel": 4,
    "time_step_rank": 48,
    "vocab_size": 50280,
    "use_bias": False,
    "use_conv_bias": True,
    "layer_norm_epsilon": 1e-5,
    "residual_in_fp32": True,
    "pad_vocab_size_multiple": 8,
    "fused_add_norm": True,
    "rms_norm": True,
  }
  for raw in (ssm, hf):
    config = checkpoints.config_from_dict(raw)
    model = nnx.eval_shape(lambda c=config: MambaLM(c, rngs=nnx.Rngs(0)))
    assert mamba_jax.count_parameters(model) == 129_135_360
    assert config.padded_vocab_size == 50280 and config.resolved_dt_rank == 48


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.fixture
def saved(tmp_path):
  save_pretrained(random_model(tiny()), tmp_path)
  return tmp_path


def rewrite_tensors(directory, change):
  path = str(directory / "model.safetensors")
  tensors = safetensors_numpy.load_file(path)
  change(tensors)
  safetensors_numpy.save_file(tensors, path)


def test_missing_paths_name_the_file(tmp_path, saved):
  with pytest.raises(ValueError, match="no such checkpoint"):
    load_pretrained(tmp_path / "nowhere")
  (saved / "model.safetensors").rename(saved / "elsewhere.safetensors")
  with pytest.raises(ValueError, match=r"missing weights .*model\.safetensors"):
    load_pretrained(saved)
  (saved / "config.json").unlink()
  with pytest.raises(ValueError, match=r"missing file .*config\.json"):
    load_pretrained(saved / "elsewhere.safetensors")


def test_missing_shard_names_the_file(tmp_path):
  save_pretrained(random_model(tiny()), tmp_path, max_shard_size=8_000)
  index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
  shard = sorted(set(index["weight_map"].values()))[1]
  (tmp_path / shard).unlink()
  with pytest.raises(ValueError, match=f"missing file .*{shard}"):
    load_pretrained(tmp_path)


def test_every_bad_tensor_is_named_with_its_expected_shape(saved):
  def damage(tensors):
    del tensors["backbone.layers.1.mixer.D"]
    tensors["backbone.layers.0.mixer.x_proj.weight"] = np.zeros((7, 32), np.float32)
    tensors["backbone.layers.0.mixer.extra.weight"] = np.zeros((2,), np.float32)

  rewrite_tensors(saved, damage)
  with pytest.raises(ValueError) as error:
    load_pretrained(saved)
  message = str(error.value)
  assert "nothing was loaded" in message
  assert "missing tensor 'backbone.layers.1.mixer.D': expected shape (32,)" in message
  assert (
    "tensor 'backbone.layers.0.mixer.x_proj.weight' has shape (7, 32); expected (9, 32)" in message
  )
  assert "unknown tensor 'backbone.layers.0.mixer.extra.weight' (shape (2,))" in message


def test_an_untied_head_under_a_tied_config_is_refused(saved):
  def add_head(tensors):
    tensors["lm_head.weight"] = tensors["backbone.embeddings.weight"] + 1

  rewrite_tensors(saved, add_head)
  with pytest.raises(ValueError, match="'lm_head.weight' differs from the embedding"):
    load_pretrained(saved)


@pytest.mark.parametrize(
  "raw_update",
  [
    {"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"]},
    {"model_type": None, "d_model": 16, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2"}},
  ],
)
def test_a_mamba2_config_is_refused(saved, raw_update):
  raw = json.loads((saved / "config.json").read_text())
  raw.update(raw_update)
  if raw["model_type"] is None:
    raw = {key: raw[key] for key in ("d_model", "n_layer", "ssm_cfg", "vocab_size")}
  (saved / "config.json").write_text(json.dumps(raw))
  with pytest.raises(ValueError, match="is a Mamba-2 checkpoint .*implements the Mamba-1 mixer"):
    load_pretrained(saved)


def test_mamba2_tensors_are_refused_whatever_the_config_says(saved):
  def mamba2(tensors):
    tensors["backbone.layers.0.mixer.dt_bias"] = np.zeros((4,), np.float32)

  rewrite_tensors(saved, mamba2)
  with pytest.raises(ValueError, match=r"Mamba-2 checkpoint \(tensor .*dt_bias"):
    load_pretrained(saved)


@pytest.mark.parametrize(
  "raw_update, match",
  [
    ({"model_type": "falcon_mamba"}, "not a Mamba-1 language model"),
    ({"hidden_act": "gelu"}, "hidden_act"),
  ],
)
def test_other_architectures_are_refused(saved, raw_update, match):
  raw = json.loads((saved / "config.json").read_text())
  raw.update(raw_update)
  (saved / "config.json").write_text(json.dumps(raw))
  with pytest.raises(ValueError, match=match):
    load_pretrained(saved)


@pytest.mark.parametrize(
  "raw_update, match",
  [
    ({"rms_norm": False}, "LayerNorm"),
    ({"d_intermediate": 128}, "MLP"),
    ({"attn_layer_idx": [1]}, "attention"),
    ({"ssm_cfg": {"headdim": 64}}, "headdim"),
  ],
)
def test_mamba_ssm_variants_mamba_jax_lacks_are_refused(raw_update, match):
  raw = {"d_model": 16, "n_layer": 2, "vocab_size": 50, **raw_update}
  with pytest.raises(ValueError, match=match):
    checkpoints.config_from_dict(raw)


def test_architecture_overrides_and_unsavable_models_are_refused(tmp_path, saved):
  with pytest.raises(ValueError, match=r"\['d_state'\] cannot be overridden"):
    load_pretrained(saved, d_state=8)
  adaptive = random_model(tiny(discretization="length_adaptive", length_ref=16.0))
  with pytest.raises(ValueError, match="alpha"):
    save_pretrained(adaptive, tmp_path / "adaptive")
  with pytest.raises(ValueError, match="format"):
    save_pretrained(random_model(tiny()), tmp_path / "x", format="gguf")
  with pytest.raises(ValueError, match="rms_norm_eps"):
    save_pretrained(
      random_model(tiny(rms_norm_eps=1e-6)),
      tmp_path / "y",
      format="mamba_ssm",
      safe_serialization=True,
    )


def test_init_only_fields_a_format_cannot_keep_are_warned_about(tmp_path):
  model = random_model(tiny(rescale_prenorm_residual=False, initializer_range=0.1))
  with pytest.warns(UserWarning, match=r"\['rescale_prenorm_residual'\]"):
    save_pretrained(model, tmp_path / "hf")
  assert load_pretrained(tmp_path / "hf")[0].initializer_range == 0.1
  with pytest.warns(UserWarning, match=r"\['initializer_range', 'rescale_prenorm_residual'\]"):
    save_pretrained(model, tmp_path / "ssm", format="mamba_ssm", safe_serialization=True)


def test_torch_files_without_torch_name_the_extra(tmp_path, saved, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "config.json").write_text((saved / "config.json").read_text())
  (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"not read")
  with pytest.raises(ImportError, match=r"mamba-jax\[interop\]"):
    load_pretrained(tmp_path / "bin")
  with pytest.raises(ImportError, match=r"mamba-jax\[interop\]"):
    save_pretrained(random_model(tiny()), tmp_path / "ssm", format="mamba_ssm")


def edit_config(directory, change):
  raw = json.loads((directory / "config.json").read_text())
  (directory / "config.json").write_text(json.dumps(change(raw)))


@pytest.mark.parametrize(
  "damage, problem",
  [
    (lambda data: data[: len(data) // 2], r"model\.safetensors' is not a readable safetensors.*"),
    (lambda data: data[:5], r"model\.safetensors' is not a readable safetensors.*truncated"),
    (lambda data: b"garbage!" * 20, r"model\.safetensors' is not a readable safetensors file"),
  ],
  ids=["truncated", "header_only", "garbage"],
)
def test_a_damaged_safetensors_file_is_named(saved, damage, problem):
  path = saved / "model.safetensors"
  path.write_bytes(damage(path.read_bytes()))
  with pytest.raises(ValueError, match=problem):
    load_pretrained(saved)


def test_a_truncated_torch_file_is_named(tmp_path):
  pytest.importorskip("torch")
  save_pretrained(random_model(tiny()), tmp_path, format="mamba_ssm")
  path = tmp_path / "pytorch_model.bin"
  path.write_bytes(path.read_bytes()[:-100])
  with pytest.raises(ValueError, match=r"pytorch_model\.bin' is not a readable torch file"):
    load_pretrained(tmp_path)


class NotATensor:
  pass


def test_a_pickle_weights_only_refuses_is_not_loaded_nor_advised(tmp_path, saved):
  torch = pytest.importorskip("torch")
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "config.json").write_text((saved / "config.json").read_text())
  torch.save({"backbone.norm_f.weight": NotATensor()}, tmp_path / "bin" / "pytorch_model.bin")
  with pytest.raises(ValueError, match=r"pytorch_model\.bin' is damaged or holds more") as error:
    load_pretrained(tmp_path / "bin")
  assert "NotATensor" in str(error.value) and "weights_only=False" not in str(error.value)


@pytest.mark.parametrize(
  "change, problem",
  [
    (lambda raw: [raw], r"config\.json' holds a JSON list; expected a JSON object"),
    (
      lambda raw: {"d_model": 16, "n_layer": 2, "vocab_size": 50, "ssm_cfg": [4]},
      r"config\.json': ssm_cfg is a list; expected a JSON object",
    ),
    (
      lambda raw: {**raw, "vocab_size": "56"},
      r"config\.json': vocab_size = '56'; expected a positive integer",
    ),
    (
      lambda raw: {**raw, "unpadded_vocab_size": 60},
      r"config\.json': unpadded_vocab_size 60 exceeds vocab_size 56",
    ),
    (lambda raw: {**raw, "state_size": 2.5}, r"config\.json': MambaConfig\.d_state = 2\.5"),
  ],
  ids=["not_an_object", "ssm_cfg", "vocab_size_type", "unpadded_vocab_size", "other_field"],
)
def test_a_bad_config_json_is_named_with_its_problem(saved, change, problem):
  edit_config(saved, change)
  with pytest.raises(ValueError, match=str(saved) + ".*" + problem):
    load_pretrained(saved)


def test_a_shard_index_that_is_not_an_object_is_named(tmp_path):
  save_pretrained(random_model(tiny()), tmp_path, max_shard_size=8_000)
  (tmp_path / "model.safetensors.index.json").write_text('["model-00001-of-00004.safetensors"]')
  with pytest.raises(ValueError, match=r"index\.json' holds a JSON list; expected a shard index"):
    load_pretrained(tmp_path)


def test_the_list_of_bad_tensors_is_capped_with_a_count(saved):
  edit_config(saved, lambda raw: {**raw, "num_hidden_layers": 1000})
  with pytest.raises(ValueError) as error:
    load_pretrained(saved)
  lines = str(error.value).splitlines()
  assert "9980 tensor(s) do not match" in lines[0]  # 998 layers of 10 tensors missing
  assert len(lines) == 1 + checkpoints.MAX_LISTED_PROBLEMS + 1
  assert lines[-1] == f"  ... and {9980 - checkpoints.MAX_LISTED_PROBLEMS} more"


def test_max_shard_size_takes_transformers_strings_and_refuses_zero(tmp_path):
  model = random_model(tiny())
  save_pretrained(model, tmp_path / "kb", max_shard_size="8KB")
  save_pretrained(model, tmp_path / "int", max_shard_size=8_000)
  assert sorted(p.name for p in (tmp_path / "kb").iterdir()) == sorted(
    p.name for p in (tmp_path / "int").iterdir()
  )
  save_pretrained(model, tmp_path / "gb", max_shard_size="5GB")
  assert (tmp_path / "gb" / "model.safetensors").is_file()
  for bad in (0, "0GB", "5 parsecs", -1, True):
    with pytest.raises(ValueError, match="max_shard_size"):
      save_pretrained(model, tmp_path / "bad", max_shard_size=bad)


def test_the_save_warning_points_at_the_caller(tmp_path):
  model = random_model(tiny(rescale_prenorm_residual=False))
  with pytest.warns(UserWarning) as record:
    save_pretrained(model, tmp_path)
  assert record[0].filename == __file__


def test_bfloat16_torch_files_round_trip(tmp_path):
  pytest.importorskip("torch")
  model = random_model(tiny(param_dtype=jnp.bfloat16))
  save_pretrained(model, tmp_path, format="mamba_ssm")
  _, loaded = load_pretrained(tmp_path, param_dtype=jnp.bfloat16)
  for path, value in params_of(model).items():
    np.testing.assert_array_equal(params_of(loaded)[path], value, err_msg=str(path))


def test_torch_files_of_the_legacy_format_load_too(tmp_path):
  """torch.save's pre-1.6 (non-zip) format cannot be memory-mapped: read whole instead."""
  torch = pytest.importorskip("torch")
  model = random_model(tiny())
  save_pretrained(model, tmp_path, format="mamba_ssm")
  path = tmp_path / "pytorch_model.bin"
  state = torch.load(path, weights_only=True)
  torch.save(state, path, _use_new_zipfile_serialization=False)
  _, loaded = load_pretrained(tmp_path)
  for key, value in params_of(model).items():
    np.testing.assert_array_equal(params_of(loaded)[key], value, err_msg=str(key))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="host buffers are adopted on CPU")
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_cpu_jax_adopts_the_load_buffers_without_a_copy(dtype):
  """What keeps a load at one copy of the parameters (benchmarks/checkpoint_memory_bench.py)."""
  buffer = checkpoints._host_buffer((3, 5, 7), dtype)
  buffer[...] = np.arange(105).reshape(3, 5, 7)
  array = jax.device_put(buffer, may_alias=True)
  assert array.unsafe_buffer_pointer() == buffer.ctypes.data
  np.testing.assert_array_equal(np.asarray(array, np.float32), np.arange(105).reshape(3, 5, 7))


HUB_ID = "state-spaces/mamba-130m-hf"


def test_a_hub_id_offline_fails_fast_saying_how_to_download(tmp_path, monkeypatch):
  hf_constants = pytest.importorskip("huggingface_hub.constants")
  monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
  monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
  monkeypatch.chdir(tmp_path)  # no local folder of that name
  start = time.perf_counter()
  with pytest.raises(ValueError) as error:
    load_pretrained(HUB_ID)
  assert time.perf_counter() - start < 5
  message = str(error.value)
  assert "\n" not in message and f"could not download '{HUB_ID}'" in message
  assert f"hf download {HUB_ID} --local-dir DIR" in message


def test_a_hub_id_without_huggingface_hub_says_how_to_download(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "huggingface_hub", None)
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match=f"needs the huggingface_hub package.*hf download {HUB_ID}"):
    load_pretrained(HUB_ID)


def test_a_hub_id_loads_its_snapshot_safetensors_first(saved, tmp_path, monkeypatch):
  huggingface_hub = pytest.importorskip("huggingface_hub")
  asked = []

  def snapshot_download(repo_id, allow_patterns):
    asked.append((repo_id, allow_patterns))
    return str(saved)

  monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
  monkeypatch.chdir(tmp_path)
  config, _ = load_pretrained(HUB_ID)
  assert config == load_pretrained(saved)[0] and len(asked) == 1
  assert "model.safetensors" in asked[0][1] and "pytorch_model.bin" not in asked[0][1]
  (saved / "model.safetensors").unlink()  # a repository of .bin files: asked for those next
  with pytest.raises(ValueError, match="missing weights"):
    load_pretrained(HUB_ID)
  assert "pytorch_model.bin" in asked[2][1]


# ---------------------------------------------------------------------------------------------
# Against transformers (the interop extra)


@pytest.fixture(scope="module")
def hf_model():
  """A tiny random transformers MambaForCausalLM (2 layers, d_model 64, vocab 100), every
  parameter perturbed away from its init."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config = transformers.MambaConfig(
    vocab_size=VOCAB,
    hidden_size=D_MODEL,
    num_hidden_layers=N_LAYERS,
    state_size=16,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
    use_cache=True,
  )
  torch.manual_seed(0)
  model = transformers.MambaForCausalLM(config).eval()
  with torch.no_grad():
    for _name, param in model.named_parameters():
      param.add_(0.1 * torch.randn_like(param))
  return model


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
  directory = tmp_path_factory.mktemp("hf")
  hf_model.save_pretrained(directory)
  return directory


@pytest.fixture(scope="module")
def tokens():
  return np.random.default_rng(0).integers(0, VOCAB, (3, 12))


def hf_logits(hf_model, tokens):
  import torch

  with torch.no_grad():
    return hf_model(torch.as_tensor(tokens), use_cache=False).logits.numpy()


def hf_greedy(hf_model, prompt, max_new_tokens=20):
  """(new tokens (batch, n), the logits of each step (n, batch, vocab)) from transformers'
  cached, step-by-step decoding."""
  import torch

  with torch.no_grad():
    out = hf_model.generate(
      torch.as_tensor(prompt),
      attention_mask=torch.ones(prompt.shape),
      max_new_tokens=max_new_tokens,
      min_new_tokens=max_new_tokens,
      do_sample=False,
      output_logits=True,
      return_dict_in_generate=True,
    )
  new = out.sequences[:, prompt.shape[1] :].numpy()
  return new, np.stack([logits.numpy() for logits in out.logits])


def assert_matches_transformers(model, hf_model, tokens):
  """Parallel forward, step-by-step decoding and greedy generation against transformers'."""
  vocab = hf_model.config.vocab_size
  logits = np.asarray(model(jnp.asarray(tokens)))
  assert max_relative_error(logits[..., :vocab], hf_logits(hf_model, tokens)) <= MAX_RELATIVE_ERROR
  prompt = tokens[:, :6]
  expected_tokens, expected_logits = hf_greedy(hf_model, prompt)
  np.testing.assert_array_equal(
    mamba_jax.generate(model, jnp.asarray(prompt), 20, temperature=0.0), expected_tokens
  )
  step_logits, cache = decode.prefill(model, jnp.asarray(prompt))
  step_logits, one_step = [step_logits[:, -1]], nnx.jit(decode.step)
  for token in expected_tokens.T[:-1]:
    next_logits, cache = one_step(model, jnp.asarray(token), cache)
    step_logits.append(next_logits)
  step_logits = np.stack([np.asarray(x)[..., :vocab] for x in step_logits])
  assert max_relative_error(step_logits, expected_logits) <= MAX_RELATIVE_ERROR


def test_transformers_checkpoint_matches_transformers(hf_model, hf_dir, tokens):
  config, model = load_pretrained(hf_dir)
  assert (config.d_model, config.n_layers, config.vocab_size) == (D_MODEL, N_LAYERS, VOCAB)
  assert config.padded_vocab_size == 104  # padded as mamba_ssm pads; ids 100..103 never sampled
  assert_matches_transformers(model, hf_model, tokens)
  _, scanned = load_pretrained(hf_dir, scan_layers=True)  # the stacked layout of the same tensors
  logits = np.asarray(scanned(jnp.asarray(tokens)))[..., :VOCAB]
  assert max_relative_error(logits, hf_logits(hf_model, tokens)) <= MAX_RELATIVE_ERROR


def test_sharded_and_torch_files_written_by_transformers(hf_model, hf_dir, tmp_path, tokens):
  import torch

  hf_model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
  assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "config.json").write_text((hf_dir / "config.json").read_text())
  torch.save(hf_model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
  expected = params_of(load_pretrained(hf_dir)[1])
  for directory in (tmp_path / "sharded", tmp_path / "bin"):
    actual = params_of(load_pretrained(directory)[1])
    for path, value in expected.items():
      np.testing.assert_array_equal(actual[path], value, err_msg=f"{directory}: {path}")


def test_half_precision_transformers_checkpoint(hf_model, tmp_path):
  import copy

  import torch

  half = copy.deepcopy(hf_model).to(torch.bfloat16)
  half.save_pretrained(tmp_path)
  _, model = load_pretrained(tmp_path)
  embedding = half.backbone.embeddings.weight.float().detach().numpy()
  np.testing.assert_array_equal(np.asarray(model.embedding.embedding[...])[:VOCAB], embedding)
  assert model.embedding.embedding[...].dtype == jnp.float32


def mamba_ssm_checkpoint(hf_model, directory):
  """transformers' state dict in mamba_ssm's files: the published key mapping
  (backbone.embeddings <-> backbone.embedding, the tied lm_head stored too), the vocabulary
  padded to a multiple of 8 and config.json in mamba_ssm's schema."""
  import torch

  state = dict(hf_model.state_dict())
  embedding = state.pop("backbone.embeddings.weight")
  padded = torch.cat([embedding, torch.zeros(104 - VOCAB, D_MODEL)])
  state["backbone.embedding.weight"] = padded
  state["lm_head.weight"] = padded
  directory.mkdir()
  torch.save(state, directory / "pytorch_model.bin")
  config = {
    "d_model": D_MODEL,
    "n_layer": N_LAYERS,
    "vocab_size": VOCAB,
    "ssm_cfg": {"d_state": 16},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,
    "pad_vocab_size_multiple": 8,
    "tie_embeddings": True,
  }
  (directory / "config.json").write_text(json.dumps(config))


def test_mamba_ssm_checkpoint_matches_transformers(hf_model, tmp_path, tokens):
  mamba_ssm_checkpoint(hf_model, tmp_path / "ssm")
  config, model = load_pretrained(tmp_path / "ssm")
  assert config.vocab_size == VOCAB and config.padded_vocab_size == 104
  assert_matches_transformers(model, hf_model, tokens)


@pytest.mark.parametrize("format", ["hf", "mamba_ssm"])
def test_transformers_loads_what_mamba_jax_saves(tmp_path, format, tokens):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  model = random_model(MambaConfig(d_model=D_MODEL, n_layers=N_LAYERS, vocab_size=VOCAB))
  save_pretrained(model, tmp_path, format=format)
  if format == "hf":
    hf = transformers.MambaForCausalLM.from_pretrained(tmp_path).eval()
  else:  # mamba_ssm's files: the published mapping back to transformers' names
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    state["backbone.embeddings.weight"] = state.pop("backbone.embedding.weight")
    config = transformers.MambaConfig(
      vocab_size=104, hidden_size=D_MODEL, num_hidden_layers=N_LAYERS
    )
    hf = transformers.MambaForCausalLM(config).eval()
    hf.load_state_dict(state)
  assert hf.config.vocab_size == 104
  expected = hf_logits(hf, tokens)
  assert max_relative_error(np.asarray(model(jnp.asarray(tokens))), expected) <= MAX_RELATIVE_ERROR
