"""Study C as a task: classification and reconstruction through one shared latent
(docs/design.md section 6C; Rathjens & Wiskott 2024).

One run trains one network (config.model.architecture, config.model.latent_dim) at one weighting
config.lam; the study's sweep.py runs the grid. Three parts, three Adam optimisers:

  encoder: the gradient of  lam * MSE + (1 - lam) * CE  (the weighted sum);
  decoder: the gradient of MSE alone, unweighted, whatever lam is;
  head:    the gradient of CE alone, unweighted, whatever lam is.

lam therefore decides only what the latent is made to hold; the decoder and the head always
train at full strength to read out whatever reconstruction and class information it holds. So at
lam = 0 the decoder still learns (the MSE then measures what a purely classification-driven latent
keeps of the image) and at lam = 1 the head still learns (the accuracy of a purely reconstruction-
driven latent). Weighting the decoder by lam and the head by 1 - lam instead would leave one of
them untrained at the ends of the sweep and measure nothing there; this reading of "decoder on MSE
only, head on CE only" is the one under which three optimisers differ from one.

Training is step-based like every task: the configs derive config.num_train_steps from
config.num_epochs, the train split's size (config.data.train_examples, checked against the data)
and the batch size, so "10 epochs at batch 512" stays true when either is overridden.

BatchNorm (the paper's CNN encoders, the cnn_large head, the vit head) normalises with the
batch's statistics in training and with running averages in evaluation; those averages live in
the state beside the parameters, state["batch_stats"][part] for the parts that have any, so they
are checkpointed and a resumed run continues with them. Channel dropout (cnn_large: the paper's
0.2) draws from a key of (config.seed, the step) in training and is off in evaluation.

With config.eval.select = "best" (the default, the paper's choice) the state evaluated at the
end is the one whose combined test loss, lam * MSE + (1 - lam) * CE, was lowest over the
evaluations every config.eval.eval_every_steps (an epoch in the configs) and at the end, as the
paper's train_cre.py keeps; the report gives the last state's metrics beside it.

Images are (S, S) grayscale, or (S, S, 3) RGB with config.data.channels = 3 (colour data sets
only). config.data.random_rotation_degrees > 0 rotates the training batches' images as the
paper's CIFAR-10 runs do (torchvision's RandomRotation; experiments/data/augment.py), one angle per
example from (config.seed, its global stream position): the encoder sees the rotated image, and
the decoder's MSE target stays the unrotated one, as in the paper's code (the input is
transform_data_augmentation(samples), the target transform_normalization(samples)). Evaluation
images are never rotated.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import checkpointing, data, optimizers, parallel, selection
from experiments.data import augment
from experiments.multi_optimizer import MultiOptimizer
from experiments.studies.tradeoff import report
from experiments.studies.tradeoff.networks import (
  PARTS,
  TradeoffNet,
  call,
  cross_entropy,
  decode,
  encode,
  reconstruction_error,
)

AUGMENT_STREAM = 0x524F54  # "ROT": fold_in(key(config.seed), AUGMENT_STREAM) keys the angles,
# far from the small counters nnx.Rngs folds into the same seed for the initialisation
MASK_STREAM = 0x4D41534B  # "MASK": fold_in(fold_in(key(config.seed), MASK_STREAM), step) keys the
# vit's training masks (config.model.vit.masking_ratio > 0) and the encoder's dropout; the head's
# dropout draws from fold_in(that key, HEAD_DROPOUT)
HEAD_DROPOUT = 1


def check_lam(lam, field="config.lam"):
  """lam as a float in [0, 1]; ValueError naming `field` otherwise."""
  if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
    raise ValueError(f"{field} = {lam!r}; expected a number in [0, 1] (the weight of the MSE)")
  return float(lam)


class Task:
  def __init__(self, config, mesh):
    self.config, self.mesh = config, mesh
    self.lam = check_lam(config.lam)
    self.rotation_degrees = augment.check_rotation_degrees(
      config.data.get("random_rotation_degrees", 0)
    )
    parallel.host_batch_size(config.eval.batch_size, mesh)
    self.source = data.open_split(config, config.data.train_split)
    if len(self.source) != config.data.train_examples:
      raise ValueError(
        f"config.data.train_examples = {config.data.train_examples}, but the "
        f"{config.data.name!r} {config.data.train_split!r} split holds "
        f"{len(self.source)} images; set it to {len(self.source)} (it sets the "
        "number of steps per epoch)"
      )
    if config.data.in_memory:  # read and converted once, not once per epoch
      self.source = [self.source[i] for i in range(len(self.source))]
    self.image_size = self.source[0]["image"].shape[0]
    network = nnx.eval_shape(lambda: self.network(jax.random.key(0)))  # checks config.model
    self._train_graphdefs, txs, self.stat_parts = {}, {}, []
    for part in PARTS:
      self._train_graphdefs[part], params, stats = nnx.split(
        getattr(network, part), nnx.Param, nnx.BatchStat
      )
      txs[part] = optimizers.make_optimizer(config.optimizer, config.num_train_steps, params)
      if jax.tree.leaves(stats):
        self.stat_parts.append(part)  # the parts with BatchNorm
    network.eval()  # BatchNorm reads its running averages, dropout is off
    self._graphdefs = {
      part: nnx.split(getattr(network, part), nnx.Param, nnx.BatchStat)[0] for part in PARTS
    }
    self.optimizer = MultiOptimizer(txs)
    self.metric_sums = jax.jit(self._metric_sums)
    self.augment_key = jax.random.fold_in(jax.random.key(config.seed), AUGMENT_STREAM)
    self._batches = data.StepBatches(
      self.source, config.batch_size, config.seed, jax.process_index(), jax.process_count()
    )

  # -- model -----------------------------------------------------------------------------------

  def network(self, rng):
    return TradeoffNet(
      self.config.model,
      image_size=self.image_size,
      num_classes=self.config.data.num_classes,
      channels=self.config.data.get("channels", 1),
      rngs=nnx.Rngs(rng),
    )

  def init_state(self, rng):
    """{"params", "opt_state", "step"}, and "batch_stats" ({part: BatchNorm running averages},
    the parts in self.stat_parts) where the network has BatchNorm."""
    network = self.network(rng)
    state = self.optimizer.init_state(
      {part: nnx.state(getattr(network, part), nnx.Param) for part in PARTS}
    )
    if self.stat_parts:
      state["batch_stats"] = {
        part: nnx.state(getattr(network, part), nnx.BatchStat) for part in self.stat_parts
      }
    return state

  def part(self, name, part_params, part_stats=None, training=False):
    """Part `name` ("encoder", "decoder" or "head") as a module with these parameters and
    BatchNorm statistics (needed where the part has BatchNorm), in evaluation mode, or in
    training mode (batch statistics, dropout on)."""
    graphdef = (self._train_graphdefs if training else self._graphdefs)[name]
    stats = [] if part_stats is None else [part_stats]
    # copy: training updates the statistics, inside a trace other than the one they came from
    return nnx.merge(graphdef, part_params, *stats, copy=training)

  def apply(self, params, images, batch_stats=None):
    """(z, reconstructions, logits) of images (batch, S, S[, 3]) in evaluation mode; params,
    batch_stats: the state's "params" and "batch_stats" (where it has them)."""
    stats = batch_stats or {}
    z = self.part("encoder", params["encoder"], stats.get("encoder"))(images)
    decoder = self.part("decoder", params["decoder"], stats.get("decoder"))
    head = self.part("head", params["head"], stats.get("head"))
    return z, decoder(z).reshape(images.shape), head(z)

  def _metric_sums(self, params, batch_stats, batch):
    """Sums over a weighted evaluation batch: MSE, CE, correct, count, and per latent value the
    largest |z| (a value 0 on every image is a dead unit)."""
    z, reconstructions, logits = self.apply(params, batch["image"], batch_stats)
    weight = batch["weight"]
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
      "mse": jnp.sum(reconstruction_error(reconstructions, batch["image"]) * weight),
      "cross_entropy": jnp.sum(cross_entropy(logits, batch["label"]) * weight),
      "correct": jnp.sum(correct * weight),
      "count": jnp.sum(weight),
      "latent_max": jnp.max(jnp.abs(z.reshape(z.shape[0], -1)) * weight[:, None], axis=0),
    }

  # -- training --------------------------------------------------------------------------------

  def train_gradients(self, params, batch, rng=None, batch_stats=None):
    """(per-part gradients, metrics, BatchNorm statistics after the batch): the encoder's
    gradient of the lam-weighted sum, the decoder's of the MSE, the head's of the CE, all in
    training mode. One forward and one backward pass per part: the encoder's backward takes the
    weighted sum of the two losses' gradients with respect to z. The MSE's target is
    batch["target"] where the batch has one (the unrotated images, see `batch`), else the input
    images. rng (a key) masks the vit's patches when config.model.vit.masking_ratio > 0
    (networks.encode; the MSE is then over the dropped patches) and draws the dropout; None: no
    masking (and a part with dropout fails). batch_stats: the state's (parts with BatchNorm)."""
    images, labels = batch["image"], batch["label"]
    targets = batch.get("target", images)
    stats = batch_stats or {}
    head_rng = None if rng is None else jax.random.fold_in(rng, HEAD_DROPOUT)

    def training(name, part_params):
      return self.part(name, part_params, stats.get(name), training=True)

    def new_stats(module):
      return nnx.state(module, nnx.BatchStat)

    def encoder_fn(encoder_params):
      module = training("encoder", encoder_params)
      z, mask = encode(module, images, rng)
      return z, (mask, new_stats(module))

    z, encoder_vjp, (mask, encoder_stats) = jax.vjp(encoder_fn, params["encoder"], has_aux=True)

    def mse_fn(decoder_params, z):
      module = training("decoder", decoder_params)
      reconstructions = decode(module, z, mask)
      error = reconstruction_error(reconstructions.reshape(targets.shape), targets, mask)
      return jnp.mean(error), new_stats(module)

    def ce_fn(head_params, z):
      module = training("head", head_params)
      logits = call(module, z, head_rng)
      return jnp.mean(cross_entropy(logits, labels)), (logits, new_stats(module))

    (mse, decoder_stats), (g_decoder, g_z_mse) = jax.value_and_grad(mse_fn, (0, 1), has_aux=True)(
      params["decoder"], z
    )
    (ce, (logits, head_stats)), (g_head, g_z_ce) = jax.value_and_grad(ce_fn, (0, 1), has_aux=True)(
      params["head"], z
    )
    (g_encoder,) = encoder_vjp(self.lam * g_z_mse + (1.0 - self.lam) * g_z_ce)
    metrics = {
      "loss": self.lam * mse + (1.0 - self.lam) * ce,
      "mse": mse,
      "cross_entropy": ce,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
    }
    updated = {"encoder": encoder_stats, "decoder": decoder_stats, "head": head_stats}
    grads = {"encoder": g_encoder, "decoder": g_decoder, "head": g_head}
    return grads, metrics, {part: updated[part] for part in self.stat_parts}

  def train_step(self, state, batch):
    """Each part's optimiser applies its own gradient (see `train_gradients`); the vit's training
    mask and the dropout, if any, are keyed by (config.seed, the step); the BatchNorm statistics
    move to the batch's."""
    mask_key = jax.random.fold_in(jax.random.key(self.config.seed), MASK_STREAM)
    grads, metrics, stats = self.train_gradients(
      state["params"],
      batch,
      jax.random.fold_in(mask_key, state["step"]),
      state.get("batch_stats"),
    )
    new_state = self.optimizer.apply(state, grads)
    if self.stat_parts:
      new_state["batch_stats"] = stats
    return new_state, metrics

  def batch(self, step):
    """The global batch of `step`: images (batch, S, S[, 3]) and labels, this host's slice read.

    With config.data.random_rotation_degrees > 0, "image" holds the images rotated (one angle
    per example, a pure function of (config.seed, its global stream position)) and "target" the
    unrotated ones, the decoder's target."""
    images = self._batches(step)
    local = {"image": images["image"], "label": images["label"]}
    if self.rotation_degrees:
      local["target"] = images["image"]
      local["image"] = np.asarray(
        augment.random_rotation(
          images["image"], self.augment_key, images["index"], self.rotation_degrees
        )
      )
    return parallel.global_batch(local, self.mesh)

  # -- evaluation ------------------------------------------------------------------------------

  def eval_source(self):
    """The evaluation split (config.data.eval_split), opened once."""
    if not hasattr(self, "_eval_source"):
      self._eval_source = data.open_split(self.config, self.config.data.eval_split)
    return self._eval_source

  def validation_scores(self, state):
    """{"network": lam * MSE + (1 - lam) * CE on the evaluation split}: the paper's criterion
    for the epoch it keeps (train_cre.py evaluates on the test split; so does this)."""
    metrics = report.test_metrics(self, state, self.eval_source())
    return {"network": self.lam * metrics["mse"] + (1.0 - self.lam) * metrics["cross_entropy"]}

  def combine_best(self, best):
    """The state kept by best selection: the whole network's (one score, "network")."""
    return best["network"]

  def last_state(self, target, workdir):
    """The state at the end of training: the latest checkpoint in workdir/checkpoints (the loop
    always saves the last step), restored into target's structure."""
    checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 1)
    try:
      return checkpointer.restore(target)
    finally:
      checkpointer.close()

  def evaluate(self, state, workdir):
    """Writes workdir/eval (report.write): `state`'s metrics, and with config.eval.select =
    "best" the last state's beside them."""
    last = None
    if selection.select_mode(self.config) == "best":
      last = self.last_state(state, workdir)
    report.write(self, state, self.eval_source(), os.path.join(workdir, "eval"), last=last)
