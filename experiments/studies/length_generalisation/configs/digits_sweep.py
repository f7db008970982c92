r"""Study A's training-range experiment on the embedded digits: the demo's fixed and
length-adaptive Mamba (configs/digits.py) trained on L in {4..8}, {4..16} and {4..32}, 3 seeds
each, evaluated for L up to 128 (4x the largest training maximum). About 30 minutes on a 2-core
CPU, no download:

  python -m experiments.studies.length_generalisation.sweep \
      --config=experiments/studies/length_generalisation/configs/digits_sweep.py \
      --workdir=runs/length_sweep

What is cut against the demo, to fit 9 runs in the budget: two models, the pair that differs
only in how the step is formed (the length token and the transformer are trained by the demo;
--config.models='("mamba","mamba_length_adaptive","mamba_length_token","transformer")' puts them
back, at about twice the time), 1000 steps instead of 1500, 128 evaluation images instead of 256.
"""

from experiments.studies.length_generalisation.configs import digits


def get_config():
  c = digits.get_config()
  c.models = ("mamba", "mamba_length_adaptive")
  c.num_train_steps = 1000
  c.checkpoint_every_steps = 1000  # one checkpoint at the end of each run
  c.eval.lengths = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
  c.eval.num_examples = 128
  c.eval.grid_lengths = (4, 16, 64)
  c.eval.grid_images = 3
  return c
