r"""Study B (in-context learning, docs/design.md section 6B): one config for every function
class.

Arguments after the path (big_vision style): function_class (linear_regression,
sparse_linear_regression, relu_2nn, decision_tree, skewed_linear_regression; default
linear_regression) and variant.
Variant "paper" is Grazzi et al.'s scale (d = 20, 256 wide, 24 Mamba layers, 12 transformer
layers, 24 S4 layers 435 wide, Adam 1e-4 cosine, batch 64, 500k steps, the curriculum every 2000
steps), for a GPU or TPU; variant "cpu" trains small models (d = 5, 64 wide, S4 100 wide, fixed
curriculum, 2000 steps; the transformer 12000, its own budget) in minutes on a laptop. S4 is
the paper's kind in both (S4D-Lin, N = 64, C per channel, post-LayerNorm, dropout 0.1), as wide
as matches Mamba's parameter count.

  python -m experiments.main --config=experiments/studies/icl/configs/icl.py:variant=cpu \
      --workdir=runs/icl_lr_cpu
  python -m experiments.main \
      --config=experiments/studies/icl/configs/icl.py:function_class=relu_2nn \
      --workdir=runs/icl_relu_2nn
  python -m experiments.studies.icl.sweep \
      --config=experiments/studies/icl/configs/icl.py:variant=cpu --workdir=runs/icl_cpu_seeds
"""

import math

import ml_collections
from ml_collections import config_dict

from experiments import config_values
from experiments.studies.icl import function_classes

VARIANTS = ("paper", "cpu")
_BASIC = ("least_squares", "averaging", "knn3")
# Baselines per function class, as Garg et al. (evaluation-only classes reuse linear regression's).
BASELINES = {
  "linear_regression": _BASIC,
  "noisy_linear_regression": _BASIC,
  "skewed_linear_regression": _BASIC,
  "sparse_linear_regression": _BASIC + ("lasso",),
  "relu_2nn": _BASIC + ("gd_2nn",),
  "decision_tree": _BASIC + ("tree", "tree_unbounded", "xgboost"),
}
# Evaluation-only variants of a trained class, evaluated beside it.
EVAL_CLASSES = {
  "linear_regression": ("linear_regression", "noisy_linear_regression", "skewed_linear_regression")
}
EXTRAPOLATION = 2.5  # evaluate up to this multiple of the training number of points


def _schedule(start, end, increment, interval):
  return ml_collections.ConfigDict(
    dict(start=start, end=end, increment=increment, interval=interval)
  )


def get_config(arg=None):
  args = config_values.config_arguments(arg, function_class="linear_regression", variant="paper")
  function_class, variant = args["function_class"], args["variant"]
  function_classes.get_function_class(function_class)  # an unknown name fails here
  if variant not in VARIANTS:
    raise ValueError(f"Unknown config variant {variant!r}; expected one of {VARIANTS}")
  paper = variant == "paper"
  c = ml_collections.ConfigDict()
  c.study = "icl"  # experiments/studies/: in-context regression of function classes
  c.seed = 0  # parameters and every prompt follow from it
  c.models = ("mamba", "mamba_length_adaptive", "transformer", "s4d")  # trained side by side
  c.batch_size = 64  # global batch of prompts (split over all devices of all hosts)
  c.num_train_steps = 500_000 if paper else 2000  # optimiser steps
  c.log_every_steps = 1000 if paper else 100  # metrics.jsonl / TensorBoard interval
  c.checkpoint_every_steps = 10_000 if paper else 1000  # orbax checkpoint interval (and at end)
  c.checkpoints_to_keep = 3  # older checkpoints are deleted

  c.icl = ml_collections.ConfigDict()
  c.icl.function_class = function_class  # trained on (function_classes.FUNCTION_CLASSES)
  c.icl.d = function_classes.DEFAULT_DIM if paper else 5  # input dimension d (tokens are d wide)
  start, end, increment = function_classes.get_function_class(function_class).points
  if not paper:  # no curriculum: d = 5 throughout, and the paper's points for d = 5 (its start)
    end = start
  c.icl.curriculum = ml_collections.ConfigDict()
  c.icl.curriculum.dims = _schedule(min(5, c.icl.d), c.icl.d, 1, 2000)  # active dims d_active
  c.icl.curriculum.points = _schedule(start, end, increment, 2000)  # largest points per prompt
  # Each step's number of points n is the stage's points N with horizon_probability, else uniform
  # in [ceil(min_points_fraction * N), N - 1]: position N keeps 3/4 of the loss weight it has in
  # Garg et al.'s training, and lengths vary within every stage (one length would leave the
  # length-adaptive alpha no gradient)
  c.icl.min_points_fraction = 0.5
  c.icl.horizon_probability = 0.75
  c.icl.length_buckets = 1  # prompt sizes built per stage (compiles): N, N/2, N/4, ...

  width = 256 if paper else 64
  c.model = ml_collections.ConfigDict()
  c.model.mamba = ml_collections.ConfigDict()  # both Mamba variants
  c.model.mamba.d_model = width  # residual stream width
  c.model.mamba.n_layers = 24 if paper else 4  # Mamba blocks (two per transformer block)
  c.model.mamba.d_state = 16  # SSM state size
  c.model.mamba.d_conv = 4  # causal conv width
  c.model.mamba.expand = 2  # d_inner = expand * d_model
  c.model.mamba.dt_rank = "auto"  # ceil(d_model / 16)
  # L_ref of the length-adaptive step: the middle of the last stage's range of token counts,
  # 2 ceil(min_points_fraction * end) to 2 end (n points are 2n tokens); set it again if you
  # change min_points_fraction
  c.model.mamba.length_ref = float(math.ceil(c.icl.min_points_fraction * end) + end)
  c.model.mamba.scan_implementation = "auto"  # selective-scan implementation
  c.model.mamba.remat = False  # recompute blocks in the backward pass (saves memory)
  # layer layout: None = stacked under nnx.scan from 8 layers on (one compile for any depth)
  c.model.mamba.scan_layers = config_dict.placeholder(bool)
  c.model.mamba.learning_rate = 0.0  # 0 = config.optimizer.learning_rate
  c.model.transformer = ml_collections.ConfigDict()
  c.model.transformer.d_model = width  # width
  c.model.transformer.n_layers = 12 if paper else 2  # blocks (attention + MLP)
  c.model.transformer.n_heads = 8 if paper else 4  # attention heads
  # Learned positional embeddings (Garg et al.'s GPT-2 has them; Grazzi et al. remove them, and
  # their 12 layers over 500k steps recover positions from the causal mask). Without them one
  # attention layer sees its earlier tokens as a set and cannot tell which y follows which x:
  # the CPU transformer's 2 layers then stall at about averaging's error (docs/design.md 6B).
  c.model.transformer.positional_embeddings = not paper
  c.model.transformer.max_length = 0  # set below: the longest evaluated prompt's tokens
  # 0 = config.optimizer.learning_rate; on CPU the best of {1e-3, 3e-4, 1e-4} at this budget
  c.model.transformer.learning_rate = 0.0 if paper else 3e-4
  # Its own step budget (0 = config.num_train_steps; its cosine schedule spans it). On CPU the
  # 2-layer transformer leaves the zero predictor only after thousands of steps, at a seed-
  # dependent time: at 2000 and 6000 steps it beat averaging in 1 of 3 seeds; 12000 was chosen on
  # validation seeds 10 to 12 (BUILD_NOTES, study B). Its step costs about a twelfth of a Mamba's.
  c.model.transformer.num_train_steps = 0 if paper else 12_000
  # The paper's S4 (its S4D code): S4D-Lin, complex diagonal, N = 64, its own C per channel,
  # post-LayerNorm, channel dropout 0.1; wider than Mamba to match its parameter count (~10.5M
  # at 435 wide; 100 wide matches the CPU Mamba's ~131k).
  c.model.s4d = ml_collections.ConfigDict()
  c.model.s4d.d_model = 435 if paper else 100  # width
  c.model.s4d.n_layers = 24 if paper else 4  # S4D layers (each with its GLU output)
  c.model.s4d.d_state = 64  # N, real state size per channel (32 complex conjugate pairs)
  c.model.s4d.n_groups = config_dict.placeholder(int)  # None: B and C per channel
  c.model.s4d.kernel = "fft"  # zero-order hold as an FFT convolution ("scan": real-only op)
  c.model.s4d.init = "lin"  # S4D-Lin, A = -1/2 + i pi n ("real": S4D-Real)
  c.model.s4d.norm = "post_layer"  # x <- LayerNorm(x + f(x)) ("pre_rms": x + f(RMSNorm(x)))
  c.model.s4d.dropout = 0.1  # channel dropout rate in training
  c.model.s4d.scan_implementation = "auto"  # selective-scan op (kernel "scan" only)
  c.model.s4d.learning_rate = 1e-3 if paper else 3e-3  # the paper trains S4 at 10x

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # adam | adamw | lamb
  c.optimizer.learning_rate = 1e-4 if paper else 1e-3  # peak learning rate
  c.optimizer.schedule = "cosine" if paper else "warmup_cosine"  # see experiments/optimizers.py
  c.optimizer.warmup_steps = 0 if paper else 200  # linear warm-up (warmup_* schedules)
  c.optimizer.end_learning_rate_factor = 0.0  # final lr = factor * peak
  c.optimizer.weight_decay = 0.0  # decoupled weight decay (adamw, lamb); must be 0 with adam
  c.optimizer.grad_clip_norm = 0.0 if paper else 1.0  # global-norm clipping; 0 disables
  c.optimizer.b1 = 0.9  # Adam beta1
  c.optimizer.b2 = 0.999  # Adam beta2
  c.optimizer.eps = 1e-8  # Adam epsilon

  # experiments/studies/icl/sweep.py: one run per seed, curves with bands over seeds and prompts
  c.sweep = ml_collections.ConfigDict()
  c.sweep.seeds = (0, 1, 2)  # the paper's 3 training seeds

  c.eval = ml_collections.ConfigDict()
  # function classes evaluated (each its own curve and plot)
  c.eval.function_classes = EVAL_CLASSES.get(function_class, (function_class,))
  c.eval.n_points = math.ceil(EXTRAPOLATION * end)  # points per prompt, past the training ones
  # positions the transformer's embeddings cover (those past the training horizon stay untrained)
  c.model.transformer.max_length = 2 * c.eval.n_points if not paper else 0
  c.eval.num_prompts = 1280  # evaluation prompts (the same for models and baselines)
  c.eval.batch_size = 128 if paper else 256  # prompts per evaluation batch
  c.eval.baselines = ml_collections.ConfigDict(BASELINES)  # class -> baselines on its prompts
  c.eval.slow_baseline_prompts = 1280 if paper else 256  # prompts for report.SLOW_BASELINES
  c.eval.band_level = 0.9  # bootstrap band
  c.eval.bootstrap_resamples = 1000  # bootstrap resamples
  c.eval.probe_prompts = 256  # prompts for the layer probes (0: no probing)
  c.eval.probe_queries = 2 * c.icl.d  # fresh queries per probe prompt (>= d fixes the probe)
  # in-context examples before the probe's queries: the paper's 40; 0 = the training horizon
  c.eval.probe_context = 40 if paper else 0
  # the paper's 1-D affine probe is fit on the last probe_fit_points context positions (10 of 40)
  c.eval.probe_fit_points = 10 if paper else 5
  return c
