r"""Study A on the embedded digits: length generalisation via image reconstruction (the demo).

Trains the four models of the study side by side on the same batches, with context lengths L
from a narrow range, then measures reconstruction MSE for L up to 4x the longest training length.
The models are the paper's (no causal conv, out_proj not rescaled, tokens straight into the
backbone), sized so that they learn on a CPU: 16 x 16 digits, 16 queries, width 32, 4 layers
(README lists every deviation from the paper). Runs on a 2-core CPU within 15 minutes, no
download:

  python -m experiments.main \
      --config=experiments/studies/length_generalisation/configs/digits.py --workdir=runs/demo

Any field can be overridden, e.g. --config.num_train_steps=100 --config.models='("mamba",)'.
"""

import ml_collections
from ml_collections import config_dict


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "length_generalisation"  # experiments/studies/: image reconstruction from patches
  c.seed = 0  # parameters, data order and sequences all follow from it
  # trained side by side
  c.models = ("mamba", "mamba_length_adaptive", "mamba_length_token", "transformer")
  c.batch_size = 32  # global batch (split over all devices of all hosts)
  c.num_train_steps = 1500  # optimiser steps
  c.log_every_steps = 50  # metrics.jsonl / TensorBoard interval
  c.checkpoint_every_steps = 500  # orbax checkpoint interval (and at the end)
  c.checkpoints_to_keep = 3  # older checkpoints are deleted

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"  # digits | omniglot | any prepared TFDS image data set
  c.data.data_dir = ""  # TFDS data_dir; "" = ~/tensorflow_datasets
  c.data.omniglot_dir = "../shared/datasets/omniglot"  # folder with the Omniglot archives
  c.data.image_size = 16  # images are resized to image_size x image_size, scaled to [-1, 1]
  c.data.train_split = "train"  # split to train on
  c.data.eval_split = "test"  # split of the length sweep
  # the paper's RandomAffine (rotation to 180 degrees, scale 0.5-1.5, shift 0.4, white fill) on
  # training and evaluation images (experiments/data/augment.py); off on the digits: its white
  # fill is Omniglot's background, not the digits' black one, and the demo's and the sweep's
  # measured tables are without it (configs/omniglot.py turns it on)
  c.data.random_affine = False

  c.sequence = ml_collections.ConfigDict()
  c.sequence.patch_size = 4  # P: patches of P x P pixels
  c.sequence.train_length_min = 4  # L ~ uniform{min..max}, drawn once per batch
  c.sequence.train_length_max = 16
  c.sequence.num_queries = 16  # Q query patches after the delimiter
  # context built at a few bucket lengths, one compile each (left padding makes any L exact)
  c.sequence.length_buckets = 2

  c.model = ml_collections.ConfigDict()
  c.model.d_token = 32  # token width: patch features + 2 position features (paper: 16)
  c.model.patch_channels = 16  # output channels of the P x P patch convolution (the paper's)
  # Linear(d_token -> d_model) before the Mamba backbone: not in the paper, whose tokens enter
  # the backbone directly (d_token == d_model); True with digits_project_model.py
  c.model.mamba_input_proj = False
  # the length token's input is L / length_token_scale; the paper's ratio of scale to its
  # largest training maximum (100 / 1024) at this config's largest (the sweep's 32): 32 / 10,
  # so the token's input spans about 1 to 10 over the training ranges, as the paper's does
  c.model.length_token_scale = 3.2
  c.model.mamba = ml_collections.ConfigDict()  # the three Mamba variants (a MambaConfig each)
  c.model.mamba.d_model = 32  # Mamba hidden size (paper: 16)
  c.model.mamba.n_layers = 4  # Mamba blocks (paper: 8)
  c.model.mamba.d_state = 8  # SSM state size
  c.model.mamba.d_conv = 0  # causal conv width: 0 = no conv, as the paper (mamba_ssm: 4)
  c.model.mamba.rescale_prenorm_residual = False  # out_proj init / sqrt(n_layers)? (paper: no)
  c.model.mamba.expand = 2  # d_inner = expand * d_model
  c.model.mamba.dt_rank = 2  # step-projection rank (ceil(d_model / 16))
  c.model.mamba.length_ref = 10.0  # L_ref of the length-adaptive step: mid training range
  c.model.mamba.scan_implementation = "auto"  # selective-scan implementation
  # layer layout: None = stacked under nnx.scan from 8 layers on (one compile for any depth)
  c.model.mamba.scan_layers = config_dict.placeholder(bool)
  c.model.transformer = ml_collections.ConfigDict()  # the causal transformer baseline
  c.model.transformer.d_model = 32  # width
  c.model.transformer.n_layers = 4  # blocks (attention + MLP)
  c.model.transformer.n_heads = 2  # attention heads

  c.optimizer = ml_collections.ConfigDict()
  # The paper's "LAMB" with weight decay 0 is Adam, eps 1e-6, clip 1.0 (docs/design.md 6.0);
  # the demo keeps its own lr and schedule.
  c.optimizer.name = "adam"  # adam | adamw | lamb (trust ratio on weight matrices only)
  c.optimizer.learning_rate = 3e-3  # peak learning rate
  c.optimizer.schedule = "warmup_cosine"  # constant | cosine | warmup_constant | warmup_cosine
  c.optimizer.warmup_steps = 100  # linear warm-up
  c.optimizer.end_learning_rate_factor = 0.1  # final lr = factor * peak (cosine schedules)
  c.optimizer.weight_decay = 0.0  # decoupled weight decay (spares A_log, D, biases, norms)
  c.optimizer.grad_clip_norm = 1.0  # global-norm clipping; 0 disables
  c.optimizer.b1 = 0.9  # Adam beta1
  c.optimizer.b2 = 0.999  # Adam beta2
  c.optimizer.eps = 1e-6  # Adam epsilon (the paper's)

  c.eval = ml_collections.ConfigDict()
  c.eval.lengths = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)  # L of the sweep (to 4x train max)
  c.eval.num_examples = 256  # evaluation images per length
  c.eval.batch_size = 64  # evaluation batch
  c.eval.grid_lengths = (1, 4, 16, 64)  # reconstructions shown after these many patches
  c.eval.grid_images = 6  # images per reconstruction grid
  # which state is evaluated: "last" (the final one) or "best" (per model, the lowest
  # validation MSE at L = train_length_max, as the paper selects; experiments/selection.py)
  c.eval.select = "last"
  c.eval.eval_every_steps = 100  # validation interval when select = "best"
  c.eval.select_examples = 64  # validation images: the last ones of the eval split
  c.eval.stage_multiples = (1, 4)  # stage analysis at L = these x train_length_max

  c.sweep = ml_collections.ConfigDict()  # read by the study's sweep.py only (digits_sweep.py)
  c.sweep.train_ranges = ((4, 8), (4, 16), (4, 32))  # (train_length_min, train_length_max) each
  c.sweep.seeds = (0, 1, 2)  # every range is trained at every seed
  c.sweep.length_ref_mid = True  # L_ref of the length-adaptive step: the middle of each range
  return c
