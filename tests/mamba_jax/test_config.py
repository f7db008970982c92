"""MambaConfig: mamba_ssm defaults, derived sizes, and validation errors that name the field."""

import dataclasses

import jax.numpy as jnp
import pytest

from mamba_jax.config import MambaConfig


def test_defaults_are_mamba_ssm_defaults():
  config = MambaConfig(d_model=768, n_layers=24, vocab_size=50280)
  assert (config.d_state, config.d_conv, config.expand) == (16, 4, 2)
  assert (config.dt_min, config.dt_max, config.dt_init_floor, config.dt_scale) == (
    1e-3,
    0.1,
    1e-4,
    1.0,
  )
  assert config.conv_bias and not config.bias and config.residual_in_fp32
  assert config.tie_embeddings and config.rms_norm_eps == 1e-5
  assert config.discretization == "fixed"
  assert config.dtype == jnp.float32 and config.param_dtype == jnp.float32


def test_derived_sizes():
  config = MambaConfig(d_model=768, n_layers=24, vocab_size=50277)
  assert config.d_inner == 1536
  assert config.resolved_dt_rank == 48
  assert config.padded_vocab_size == 50280
  assert MambaConfig(d_model=17, n_layers=1).resolved_dt_rank == 2
  assert MambaConfig(d_model=16, n_layers=1, dt_rank=1).resolved_dt_rank == 1
  assert MambaConfig(d_model=16, n_layers=1, vocab_size=50280).padded_vocab_size == 50280
  assert MambaConfig(d_model=16, n_layers=1).padded_vocab_size is None


def test_dtype_names_are_normalised():
  config = MambaConfig(d_model=8, n_layers=1, dtype="bfloat16", param_dtype="float32")
  assert config.dtype == jnp.bfloat16 and config.param_dtype == jnp.float32


def test_config_is_frozen_and_hashable():
  config = MambaConfig(d_model=8, n_layers=1)
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.d_model = 16
  assert hash(config) == hash(MambaConfig(d_model=8, n_layers=1))


@pytest.mark.parametrize(
  "field,value",
  [
    ("d_model", 0),
    ("n_layers", -1),
    ("d_state", 2.5),
    ("d_conv", True),
    ("expand", "2"),
    ("dt_rank", "big"),
    ("dt_rank", 0),
    ("dt_min", -1e-3),
    ("dt_max", 1e-4),
    ("dt_init_floor", 0.0),
    ("dt_scale", float("nan")),
    ("rms_norm_eps", 0),
    ("vocab_size", 0),
    ("pad_vocab_size_multiple", 0),
    ("discretization", "adaptive"),
    ("length_ref", -5.0),
    ("scan_implementation", "cuda"),
    ("scan_chunk_size", 0),
    ("conv_bias", "yes"),
    ("residual_in_fp32", 1),
    ("dtype", "int32"),
    ("param_dtype", "nope"),
    ("scan_layers", "auto"),
    ("scan_layers", 1),
  ],
)
def test_bad_value_raises_value_error_naming_the_field(field, value):
  with pytest.raises(ValueError, match=rf"MambaConfig\.{field} "):
    MambaConfig(**{"d_model": 8, "n_layers": 1, field: value})


def test_scan_layers_defaults_by_depth_and_can_be_forced():
  assert MambaConfig(d_model=8, n_layers=8).scan_layers is None
  assert [MambaConfig(d_model=8, n_layers=n).resolved_scan_layers for n in (1, 7, 8, 24)] == [
    False,
    False,
    True,
    True,
  ]
  assert MambaConfig(d_model=8, n_layers=2, scan_layers=True).resolved_scan_layers
  assert not MambaConfig(d_model=8, n_layers=24, scan_layers=False).resolved_scan_layers


def test_length_adaptive_needs_length_ref():
  with pytest.raises(ValueError, match=r"MambaConfig\.length_ref "):
    MambaConfig(d_model=8, n_layers=1, discretization="length_adaptive")
  config = MambaConfig(d_model=8, n_layers=1, discretization="length_adaptive", length_ref=64)
  assert config.length_ref == 64
