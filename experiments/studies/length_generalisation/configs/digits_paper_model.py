r"""Study A's demo (configs/digits.py) with the paper's Mamba (docs/design.md section 6A).

The image-reconstruction paper's Mamba has no causal conv (d_conv = 0), does not rescale
out_proj's init by 1/sqrt(n_layers), and reads its 16-dim tokens (a 4 x 4 conv to 16 channels, a
linear map to 14, the 2 position features) with no input Linear before the backbone:

  python -m experiments.main \
      --config=experiments/studies/length_generalisation/configs/digits_paper_model.py \
      --workdir=runs/demo_paper_model
"""

from experiments.studies.length_generalisation.configs import digits


def use_paper_model(c):
  """Sets the paper's Mamba on a study A config (in place) and returns it."""
  c.model.mamba.d_conv = 0  # no causal conv
  c.model.mamba.rescale_prenorm_residual = False  # out_proj keeps PyTorch's default init
  c.model.mamba_input_proj = False  # tokens enter the backbone directly
  c.model.d_token = c.model.mamba.d_model  # 16: 14 patch features + 2 position features
  return c


def get_config():
  return use_paper_model(digits.get_config())
