"""One builder per model family: every field of a config section reaches the model."""

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

import mamba_jax
from experiments import model_builders


def test_mamba_config_takes_every_field_of_the_section():
  section = ml_collections.ConfigDict(
    dict(
      d_model=8,
      n_layers=2,
      d_state=4,
      d_conv=3,
      expand=2,
      dt_rank=1,
      remat=True,
      scan_implementation="xla",
      learning_rate=1e-3,
    )
  )
  config = model_builders.mamba_config(
    section, ignore=("learning_rate",), discretization="length_adaptive", length_ref=7.0
  )
  assert config == mamba_jax.MambaConfig(
    d_model=8,
    n_layers=2,
    d_state=4,
    d_conv=3,
    expand=2,
    dt_rank=1,
    remat=True,
    scan_implementation="xla",
    discretization="length_adaptive",
    length_ref=7.0,
  )
  every_field = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
  assert model_builders.mamba_config(ml_collections.ConfigDict(every_field)) == config


def test_unknown_fields_are_refused_by_name():
  section = ml_collections.ConfigDict(dict(d_model=8, n_layers=2, n_layer=3))
  with pytest.raises(ValueError, match=r"config.model.mamba: unknown field\(s\) \['n_layer'\]"):
    model_builders.mamba_config(section)
  with pytest.raises(ValueError, match=r"unknown field\(s\) \['learning_rate'\]"):
    model_builders.causal_transformer(
      ml_collections.ConfigDict(dict(d_model=8, n_layers=1, n_heads=2, learning_rate=0.1)),
      3,
      1,
      rngs=nnx.Rngs(0),
    )


def test_baselines_are_built_from_their_sections():
  transformer = model_builders.causal_transformer(
    ml_collections.ConfigDict(dict(d_model=8, n_layers=2, n_heads=2)), 3, 1, rngs=nnx.Rngs(0)
  )
  direct = mamba_jax.baselines.transformer.CausalTransformer(
    3, 1, d_model=8, n_layers=2, n_heads=2, rngs=nnx.Rngs(0)
  )
  s4d = model_builders.s4d_model(
    ml_collections.ConfigDict(dict(d_model=8, n_layers=1, d_state=4)), 3, 1, rngs=nnx.Rngs(0)
  )
  x = jax.random.normal(jax.random.key(0), (2, 5, 3))
  np.testing.assert_array_equal(transformer(x), direct(x))
  assert s4d(x).shape == (2, 5, 1)
