r"""Study B (in-context learning, DESIGN.md 6B): the settings every icl_<task>.py config shares.

get_config(task, variant): variant "paper" is Grazzi et al.'s scale (d = 20, 256 wide, 24 Mamba
layers, 12 transformer layers, Adam 1e-4 cosine, batch 64, 500k steps, the curriculum every 2000
steps), for a GPU or TPU; variant "cpu" trains small models (d = 5, 64 wide, fixed curriculum)
in minutes on a laptop. Pick the variant after the config path:

  python -m experiments.main --config=experiments/configs/icl_linear_regression.py:cpu \
      --workdir=runs/icl_lr_cpu
"""

import math

import ml_collections

from experiments.data import icl_tasks

VARIANTS = ("paper", "cpu")
# Baselines per trained task, as Garg et al. (evaluation-only tasks reuse linear regression's).
BASELINES = {
    "linear_regression": "least_squares,averaging,knn3",
    "noisy_linear_regression": "least_squares,averaging,knn3",
    "skewed_linear_regression": "least_squares,averaging,knn3",
    "sparse_linear_regression": "least_squares,averaging,knn3,lasso",
    "relu_2nn": "least_squares,averaging,knn3",
    "decision_tree": "least_squares,averaging,knn3,tree,xgboost",
}
# Evaluation-only variants of a trained task, evaluated beside it.
EVAL_TASKS = {"linear_regression": "linear_regression,noisy_linear_regression,"
                                   "skewed_linear_regression"}
EXTRAPOLATION = 2.5  # evaluate up to this multiple of the training number of points


def _schedule(start, end, increment, interval):
  return ml_collections.ConfigDict(dict(start=start, end=end, increment=increment,
                                        interval=interval))


def get_config(task, variant="paper"):
  if variant not in VARIANTS:
    raise ValueError(f"Unknown config variant {variant!r}; expected one of {VARIANTS}")
  paper = variant == "paper"
  c = ml_collections.ConfigDict()
  c.task = "icl"  # study (experiments/tasks): in-context regression of function classes
  c.seed = 0  # parameters and every prompt follow from it
  c.models = "mamba,mamba_length_adaptive,transformer,s4d"  # trained side by side
  c.batch_size = 64  # global batch of prompts (split over all devices of all hosts)
  c.num_train_steps = 500_000 if paper else 2000  # optimiser steps
  c.log_every_steps = 1000 if paper else 100  # metrics.jsonl / TensorBoard interval
  c.checkpoint_every_steps = 10_000 if paper else 1000  # orbax checkpoint interval (and at end)
  c.checkpoints_to_keep = 3  # older checkpoints are deleted

  c.icl = ml_collections.ConfigDict()
  c.icl.task = task  # function class trained on (experiments/data/icl_tasks.py TASKS)
  c.icl.d = icl_tasks.DEFAULT_DIM if paper else 5  # input dimension d (tokens are d wide)
  start, end, increment = icl_tasks.get_task(task).points
  if not paper:  # no curriculum: d = 5 throughout, and the paper's points for d = 5 (its start)
    end = start
  c.icl.curriculum = ml_collections.ConfigDict()
  c.icl.curriculum.dims = _schedule(min(5, c.icl.d), c.icl.d, 1, 2000)  # active dims d_active
  c.icl.curriculum.points = _schedule(start, end, increment, 2000)  # points per prompt

  width = 256 if paper else 64
  c.model = ml_collections.ConfigDict()
  c.model.mamba = ml_collections.ConfigDict()  # both Mamba variants
  c.model.mamba.d_model = width  # residual stream width
  c.model.mamba.n_layers = 24 if paper else 4  # Mamba blocks (two per transformer block)
  c.model.mamba.d_state = 16  # SSM state size
  c.model.mamba.d_conv = 4  # causal conv width
  c.model.mamba.expand = 2  # d_inner = expand * d_model
  c.model.mamba.dt_rank = "auto"  # ceil(d_model / 16)
  c.model.mamba.length_ref = float(2 * end)  # L_ref of the length-adaptive step: tokens at the end
  c.model.mamba.scan_implementation = "auto"  # selective-scan implementation (pallas on GPU/TPU)
  c.model.mamba.remat = False  # recompute blocks in the backward pass (saves memory)
  c.model.mamba.learning_rate = 0.0  # 0 = config.optimizer.learning_rate
  c.model.transformer = ml_collections.ConfigDict()
  c.model.transformer.d_model = width  # width
  c.model.transformer.n_layers = 12 if paper else 2  # blocks (attention + MLP)
  c.model.transformer.n_heads = 8 if paper else 4  # attention heads
  # 0 = config.optimizer.learning_rate; on CPU the best of {1e-3, 3e-4, 1e-4} at this budget
  c.model.transformer.learning_rate = 0.0 if paper else 3e-4
  c.model.s4d = ml_collections.ConfigDict()
  c.model.s4d.d_model = width  # width
  c.model.s4d.n_layers = 24 if paper else 4  # S4D layers (each with its GLU output)
  c.model.s4d.d_state = 64 if paper else 16  # diagonal state size per channel
  c.model.s4d.scan_implementation = "auto"  # the selective-scan op runs it too
  c.model.s4d.learning_rate = 1e-3 if paper else 3e-3  # the paper trains S4 at 10x

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # adam | adamw | lamb
  c.optimizer.learning_rate = 1e-4 if paper else 1e-3  # peak learning rate
  c.optimizer.schedule = "cosine" if paper else "warmup_cosine"  # see experiments/optimizers.py
  c.optimizer.warmup_steps = 0 if paper else 200  # linear warm-up (warmup_* schedules)
  c.optimizer.end_learning_rate_factor = 0.0  # final lr = factor * peak
  c.optimizer.grad_clip_norm = 0.0 if paper else 1.0  # global-norm clipping; 0 disables

  c.eval = ml_collections.ConfigDict()
  c.eval.tasks = EVAL_TASKS.get(task, task)  # tasks evaluated (each its own curve and plot)
  c.eval.n_points = math.ceil(EXTRAPOLATION * end)  # points per prompt, past the training ones
  c.eval.num_prompts = 1280  # evaluation prompts (the same for models and baselines)
  c.eval.batch_size = 128 if paper else 256  # prompts per evaluation batch
  c.eval.baselines = ml_collections.ConfigDict(BASELINES)  # task -> baselines on its prompts
  c.eval.slow_baseline_prompts = 1280 if paper else 256  # prompts for lasso / tree / xgboost
  c.eval.band_level = 0.9  # bootstrap band
  c.eval.bootstrap_resamples = 1000  # bootstrap resamples
  c.eval.probe_prompts = 256  # prompts for the layer probes (0: no probing)
  c.eval.probe_queries = 2 * c.icl.d  # fresh queries per probe prompt (>= d fixes the probe)
  return c
