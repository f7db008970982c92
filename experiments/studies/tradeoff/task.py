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

from experiments import data, optimizers, parallel
from experiments.data import augment
from experiments.multi_optimizer import MultiOptimizer
from experiments.studies.tradeoff import report
from experiments.studies.tradeoff.networks import (
  PARTS,
  TradeoffNet,
  cross_entropy,
  decode,
  encode,
  reconstruction_error,
)

AUGMENT_STREAM = 0x524F54  # "ROT": fold_in(key(config.seed), AUGMENT_STREAM) keys the angles,
# far from the small counters nnx.Rngs folds into the same seed for the initialisation
MASK_STREAM = 0x4D41534B  # "MASK": fold_in(fold_in(key(config.seed), MASK_STREAM), step) keys the
# vit's training masks (config.model.vit.masking_ratio > 0)


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
    self._graphdefs, txs = {}, {}
    for part in PARTS:
      self._graphdefs[part], params = nnx.split(getattr(network, part), nnx.Param)
      txs[part] = optimizers.make_optimizer(config.optimizer, config.num_train_steps, params)
    self.optimizer = MultiOptimizer(txs)
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
    network = self.network(rng)
    return self.optimizer.init_state(
      {part: nnx.state(getattr(network, part), nnx.Param) for part in PARTS}
    )

  def part(self, name, part_params):
    """Part `name` ("encoder", "decoder" or "head") as a module with these parameters."""
    return nnx.merge(self._graphdefs[name], part_params)

  def apply(self, params, images):
    """(z, reconstructions, logits) of images (batch, S, S[, 3]); params: the state's "params"."""
    z = self.part("encoder", params["encoder"])(images)
    reconstructions = self.part("decoder", params["decoder"])(z).reshape(images.shape)
    return z, reconstructions, self.part("head", params["head"])(z)

  # -- training --------------------------------------------------------------------------------

  def gradients(self, params, batch, rng=None):
    """(per-part gradients, metrics): the encoder's of the lam-weighted sum, the decoder's of the
    MSE, the head's of the CE. One forward and one backward pass per part: the encoder's
    backward takes the weighted sum of the two losses' gradients with respect to z. The MSE's
    target is batch["target"] where the batch has one (the unrotated images, see `batch`), else
    the input images. rng (a key) masks the vit's patches when config.model.vit.masking_ratio >
    0 (networks.encode; the MSE is then over the dropped patches); None: no masking."""
    images, labels = batch["image"], batch["label"]
    targets = batch.get("target", images)
    z, encoder_vjp, mask = jax.vjp(
      lambda p: encode(self.part("encoder", p), images, rng), params["encoder"], has_aux=True
    )

    def mse_fn(decoder_params, z):
      reconstructions = decode(self.part("decoder", decoder_params), z, mask)
      return jnp.mean(reconstruction_error(reconstructions.reshape(targets.shape), targets, mask))

    def ce_fn(head_params, z):
      logits = self.part("head", head_params)(z)
      return jnp.mean(cross_entropy(logits, labels)), logits

    mse, (g_decoder, g_z_mse) = jax.value_and_grad(mse_fn, (0, 1))(params["decoder"], z)
    (ce, logits), (g_head, g_z_ce) = jax.value_and_grad(ce_fn, (0, 1), has_aux=True)(
      params["head"], z
    )
    (g_encoder,) = encoder_vjp(self.lam * g_z_mse + (1.0 - self.lam) * g_z_ce)
    metrics = {
      "loss": self.lam * mse + (1.0 - self.lam) * ce,
      "mse": mse,
      "cross_entropy": ce,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
    }
    return {"encoder": g_encoder, "decoder": g_decoder, "head": g_head}, metrics

  def train_step(self, state, batch):
    """Each part's optimiser applies its own gradient (see `gradients`); the vit's training mask,
    if any, is keyed by (config.seed, the step)."""
    mask_key = jax.random.fold_in(jax.random.key(self.config.seed), MASK_STREAM)
    grads, metrics = self.gradients(
      state["params"], batch, jax.random.fold_in(mask_key, state["step"])
    )
    return self.optimizer.apply(state, grads), metrics

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

  def evaluate(self, state, workdir):
    source = data.open_split(self.config, self.config.data.eval_split)
    report.write(self, state, source, os.path.join(workdir, "eval"))
