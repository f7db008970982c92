r"""Study A's demo (configs/digits.py) with the project's earlier Mamba instead of the paper's.

The default follows the image-reconstruction paper (no causal conv, out_proj not rescaled, tokens
straight into the backbone; docs/design.md section 6A). This config restores what the project
ran before: mamba_ssm's defaults (a width-4 causal conv, out_proj's init divided by
sqrt(n_layers)) and a Linear(d_token -> d_model) before the backbone:

  python -m experiments.main \
      --config=experiments/studies/length_generalisation/configs/digits_project_model.py \
      --workdir=runs/demo_project_model
"""

from experiments.studies.length_generalisation.configs import digits


def use_project_model(c):
  """Sets the project's earlier Mamba on a study A config (in place) and returns it."""
  c.model.mamba.d_conv = 4  # mamba_ssm's causal conv
  c.model.mamba.rescale_prenorm_residual = True  # out_proj init / sqrt(n_layers)
  c.model.mamba_input_proj = True  # Linear(d_token -> d_model) before the backbone
  return c


def get_config():
  return use_project_model(digits.get_config())
