r"""Study A at the paper's setting (Rathjens et al. 2026): Omniglot, 128 x 128, L in [1, 1024].

For a GPU or TPU host (data parallel over every device; multi-host with --distributed):

  python -m experiments.main \
      --config=experiments/studies/length_generalisation/configs/omniglot.py \
      --workdir=runs/omniglot --config.data.omniglot_dir=/path/to/omniglot

The Omniglot archives are read from data.omniglot_dir: the full set (images_background.zip,
images_evaluation.zip) when both are there, else the small subsets (logged as a warning).
The training-range experiment at this scale (3 ranges x 3 seeds, each run as above):

  python -m experiments.studies.length_generalisation.sweep \
      --config=experiments/studies/length_generalisation/configs/omniglot.py \
      --workdir=runs/omniglot_sweep --config.data.omniglot_dir=/path/to/omniglot
"""

from experiments.studies.length_generalisation.configs import digits


def get_config():
  c = digits.get_config()
  c.data.name = "omniglot"
  c.data.image_size = 128  # docs/design.md section 6A: resized to 128 x 128
  c.data.eval_split = "validation"  # the unseen evaluation alphabets
  c.data.random_affine = True  # the paper's RandomAffine on training and validation images
  c.sequence.train_length_min = 1  # L ~ uniform{1..1024}: the paper's range (the knob)
  c.sequence.train_length_max = 1024
  c.sequence.num_queries = 1024  # Q = 1024 query patches
  c.batch_size = 64  # the paper's
  c.sequence.length_buckets = 3
  # The paper's Mamba: hidden 16, 8 layers, d_state 8, expand 2, dt_rank 1, no conv, out_proj not
  # rescaled, 16-dim tokens (14 patch features + 2 position features) straight into it.
  c.model.d_token = 16
  c.model.mamba.d_model = 16
  c.model.mamba.n_layers = 8
  c.model.mamba.dt_rank = 1
  c.model.mamba.length_ref = 512.0  # middle of the training range
  c.model.length_token_scale = 100.0  # the paper's: the token embeds L / 100
  c.model.transformer.d_model = 16  # the Mamba's width and depth (not the paper's 4 + 4 layers)
  c.model.transformer.n_layers = 8
  c.model.transformer.n_heads = 8  # the paper's 8 heads (2 dims each at width 16)
  c.optimizer.learning_rate = 3e-4  # the paper's: Adam (its LAMB at decay 0), eps 1e-6, clip 1
  c.optimizer.schedule = "constant"
  c.num_train_steps = 200_000
  c.checkpoint_every_steps = 2000
  c.log_every_steps = 100
  c.eval.lengths = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096)
  c.eval.grid_lengths = (1, 16, 128, 1024, 4096)
  c.eval.num_examples = 1024
  c.eval.select = "best"  # the paper's selection: lowest validation MSE at L = 1024, per model
  c.eval.eval_every_steps = 2000
  c.eval.select_examples = 256
  c.sweep.train_ranges = ((1, 128), (1, 512), (1, 1024))  # the training-range experiment
  return c
