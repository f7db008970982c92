"""Study B's S4 baseline is the paper's S4 (Grazzi et al.: S4D-Lin, N = 64, C per channel,
post-LayerNorm, dropout 0.1) and as large as its Mamba, at paper scale and on CPU."""

import jax
import pytest
from flax import nnx

from experiments.studies.icl.configs import icl as icl_config
from experiments.studies.icl.model import ICLRegressor


def _parameters(variant, config):
  model = nnx.eval_shape(
    lambda: ICLRegressor(variant, config.model, config.icl.d, rngs=nnx.Rngs(0))
  )
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("variant", ["paper", "cpu"])
def test_s4_is_the_papers_kind_and_matches_mambas_parameter_count(variant):
  config = icl_config.get_config(f"variant={variant}")
  s4 = config.model.s4d
  assert (s4.kernel, s4.init, s4.norm, s4.d_state, s4.dropout) == (
    "fft",
    "lin",
    "post_layer",
    64,
    0.1,
  )
  assert s4.n_groups is None  # C per channel
  mamba, s4d = _parameters("mamba", config), _parameters("s4d", config)
  assert abs(s4d / mamba - 1) <= 0.05, (mamba, s4d)
  if variant == "paper":
    assert (s4.d_model, s4.n_layers) == (435, 24)
    assert 10.3e6 < s4d < 10.7e6  # the paper's ~10.5M
