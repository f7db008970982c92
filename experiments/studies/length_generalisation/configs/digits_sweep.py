r"""Study A's training-range experiment on the embedded digits: the demo's three Mamba variants
(configs/digits.py: the fixed step, the length-adaptive step and the paper's length token, paired
starts) trained on L in {4..8}, {4..16} and {4..32}, 3 seeds each, evaluated for L up to 128 (4x
the largest training maximum). No download:

  python -m experiments.studies.length_generalisation.sweep \
      --config=experiments/studies/length_generalisation/configs/digits_sweep.py \
      --workdir=runs/length_sweep

The length token reads L / 3.2 in every range (config.model.length_token_scale, the paper's ratio
100 / 1024 at the largest range's 32; one scale for all ranges, as the paper's 100 for its three).
What is cut against the demo, to fit 9 runs in the budget: the transformer (it has no paired start;
--config.models='("mamba","mamba_length_adaptive","mamba_length_token","transformer")' puts it
back), 1000 steps instead of 1500, 128 evaluation images instead of 256. The earlier 2-model
version (fixed and length-adaptive only) took 29 min 23 s on a quiet 2-core CPU.
"""

from experiments.studies.length_generalisation.configs import digits


def get_config():
  c = digits.get_config()
  c.models = ("mamba", "mamba_length_adaptive", "mamba_length_token")
  c.num_train_steps = 1000
  c.checkpoint_every_steps = 1000  # one checkpoint at the end of each run
  c.eval.lengths = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
  c.eval.num_examples = 128
  c.eval.grid_lengths = (4, 16, 64)
  c.eval.grid_images = 3
  return c
