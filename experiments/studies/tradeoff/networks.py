"""Study C's networks (docs/design.md section 6C): encoder -> latent z -> decoder and
classification head. The default families are the paper's (Rathjens & Wiskott 2024,
"classification vs reconstruction"), with the layers of its public code
(wiskott-lab/classification-reconstruction-encoder: modules/encoders.py, decoders.py,
classifiers.py, train_cre.py, train_cre_vit.py).

`TradeoffNet` holds the three parts as separate submodules (`encoder`, `decoder`, `head`) so that
each can be split off with its own parameters and trained by its own optimiser. Images are
(batch, S, S) grayscale or (batch, S, S, C) with C channels in [-1, 1]; the network is built for
C = `channels` (the task passes config.data.channels, 1 where the config has none) and its
reconstructions come out in the input's shape. The first layer that reads z in the decoder and in
the head is called `from_latent` (tests zero it to cut a path). In = S * S * C input values;
z = config.model.latent_dim; sizes from config.model.<family> (configs/mnist.py: the paper's own,
for 28 x 28; configs/digits.py: scaled to 8 x 8 by the rule written there).

The paper's families (the defaults):
  fc_small   encoder In -> z, then ReLU: the latent is z = ReLU(linear), (batch, z). Decoder
             z -> In, tanh. Head: linear z -> classes.
  fc_medium  encoder In -> 616 -> z, ReLU after each (latent ReLU too); decoder z -> 616 -> In
             (ReLU, then tanh); head z -> 12 -> classes (ReLU between).
  fc_large   encoder In -> 716 -> 684 -> 616 -> z; decoder the mirror; head z -> 64 -> classes.
  cnn_small  encoder: three [3x3 convolution (size kept), BatchNorm, 2x2 stride-2 max pool, ReLU]
             with 16, 16 and z channels, 28 -> 14 -> 8 -> 4 (the second pool pads by 1). The
             latent is that feature map, (batch, 4, 4, z), nothing pooled to a vector (16 x 4 x 4
             = 256 values in the paper). Decoder: three stride-2 3x3 transposed convolutions
             z -> 16 -> 16 -> C, back through 8 and 14 to 28, ReLU between, tanh last. Head:
             flatten, linear 16 z -> classes.
  cnn_large  the paper's CIFAR-10 network: five convolutions (kernels 7, 7, 5, 5, 3; channels 64,
             64, 128, 128, z; size kept), each followed by channel dropout (0.2), BatchNorm, the
             layer's pool and ReLU, 2x2 max pools after the last three:
             32 -> 4, latent (batch, 4, 4, z) (28 x 28: 3 x 3). Decoder: 3x3 transposed
             convolutions z -> 128 -> 128 -> 64 (stride 2) -> 64 -> C (stride 1), tanh last.
             Head: 3x3 convolution z -> 256, dropout, BatchNorm, ReLU, 1x1 convolution
             256 -> 256, dropout, 2x2 max pool, BatchNorm, ReLU, flatten, linear -> classes.
  vit        the MAE-style ViT of train_cre_vit.py: P x P patches (P = 7: 16 patches of 28 x 28)
             linearly embedded to width z (the token dimension, 8 in the paper) plus fixed 2-D
             sine-cosine positions, a learned cls token in front, vit.encoder_layers (1)
             pre-LayerNorm transformer blocks (vit.n_heads = 4 heads, MLP of vit.mlp_ratio = 4
             times the width, exact GELU) and a LayerNorm. The latent is every token,
             (batch, 1 + 16, z). Decoder: linear z -> vit.decoder_dim (default z), fixed
             positions, vit.decoder_layers (1) blocks, LayerNorm, a linear map of each patch token
             to its pixels (the cls token's output dropped); linear output, as the paper's code.
             Head: the mean over the patch tokens (not the cls token), BatchNorm without scale
             or bias, linear -> classes.
             vit.masking_ratio r > 0 (default 0: off) masks as MAE does, in training only: each
             example keeps a random int(16 (1 - r)) of its patch tokens (a key per step, see the
             task), the decoder fills the dropped positions with a learned mask token (built only
             when r > 0), and the training MSE is over the dropped patches' pixels (the paper's
             'v1' loss); evaluation never masks and is deterministic.
This project's own:
  mamba      P x P patches (config.model.patch_size) in raster order, a linear embedding plus
             learned positions, a mamba_jax `MambaStack`. The latent is a plain linear vector,
             (batch, z): a linear map of the output at the last patch (which has seen every
             patch; mamba.pool = "last") or of the mean over patches ("mean"), no activation.
             Decoder: z linearly mapped to the width, broadcast to every patch position plus
             learned positions, a second MambaStack, a linear map of each position to its patch's
             pixels. Head: config.model.head_hidden (0: linear, else one ReLU hidden layer).
  project_fc_small / project_fc_medium / project_fc_large, project_cnn, project_vit: this
             project's earlier families, unchanged (earlier results reproduce; grayscale runs
             build the same layers in the same order). Latent a plain linear (batch, z) vector.
             project_fc_*: ReLU MLPs, hidden widths config.model.project_fc.<size>, the decoder
             mirrored. project_cnn: stride-2 3x3 convolutions (project_cnn.channels), a linear
             map to z; the decoder a linear map back to the smallest map, stride-2 transposed
             convolutions and a 3x3 convolution to pixels. project_vit: as mamba with a
             bidirectional pre-LayerNorm transformer (project_vit.*) in place of the MambaStack,
             latent from the mean (or last) patch. Head: config.model.head_hidden.

config.model.latent_dim (the sweep's latent axis) per family:
  fc_*, mamba, project_*: the number of latent values z.
  cnn_small, cnn_large: the channels of the latent feature map; its side is set by the image size
    and the pools (MNIST: 4 x 4 for cnn_small, so z values x 16; digits: 2 x 2). The paper's
    networks: z = 16 (cnn_small), 128 (cnn_large).
  vit: the token dimension (the paper's embed_dim, 8), also the decoder's width unless
    vit.decoder_dim is set; the latent holds (1 + patches) x z values. It must be a multiple of 4
    (the 2-D sine-cosine positions) and of vit.n_heads; other values raise a ValueError.
The decoder's output (config.model.decoder_output): "tanh" (images are in [-1, 1]) or "linear";
unset (None): each family's own, tanh for fc_* and cnn_* (the paper's), linear for vit (the
paper's ViT decoder has none), mamba and project_* (as before).

Parameters (10 classes, grayscale; encoder, decoder and head together; z = latent_dim; latent
per image as rows x columns x channels, 28 x 28 in mnist.py, 8 x 8 in digits.py):
  family             latent  params, mnist.py    latent  params, digits.py
  fc_small           z       1579 z + 794        z       139 z + 74
  fc_medium          z       1245 z + 968046     z       113 z + 6706
  fc_large           z       1297 z + 2950394    z       165 z + 20626
  cnn_small          4x4xz   451 z + 5035        2x2xz   331 z + 5035
  cnn_large          3x3xz   4611 z + 1148043    2x2xz   4611 z + 1148043
  vit                17xz    2787 at z = 8       17xz    2022 at z = 8
  mamba              z       139 z + 270234      z       75 z + 18254
  project_fc_small   z       523 z + 402714      z       139 z + 8394
  project_fc_medium  z       523 z + 1067290     z       139 z + 33226
  project_fc_large   z       523 z + 2920730     z       139 z + 115658
  project_cnn        z       6283 z + 49963      z       267 z + 12027
  project_vit        z       139 z + 408602      z       75 z + 26894
The paper's own points: fc_* at z = 16: 26058, 987966, 2971146; cnn_small at z = 16 (latent
16 x 4 x 4 = 256): 12251; vit at z = 8: 2787 (+ 8, the mask token, when masking; 8715 at z = 16);
cnn_large at z = 128: 1738251 at 28 x 28 and 8 x 8, 1753357 on RGB 32 x 32 (CIFAR-10, latent
4 x 4 x 128, the head's linear layer reading 256 x 2 x 2 = 1024 values, as in the paper's code).
The CNN counts include BatchNorm's scale and bias (2 per channel, as PyTorch counts them); with
config.model.batch_norm = False they are 2 (16 + 16 + z) and 2 (384 + z) + 1024 fewer.
The mamba and project_* rows are their earlier counts (head_hidden = 0).

As the paper's code (docs/design.md section 6C): BatchNorm (config.model.batch_norm, default
True) after each CNN encoder convolution and both cnn_large head convolutions (flax's BatchNorm,
PyTorch's momentum and epsilon), and on the ViT head's pooled tokens without scale or bias;
channel dropout (PyTorch's Dropout2d) after the same convolutions at config.model.<cnn>.dropout
(cnn_large: 0.2); config.model.init = "torch" (default) initialises the FC and CNN families as
PyTorch does (`layer_init`), "flax" as flax does (the earlier runs). The ViT's linear layers are
Xavier-uniform with zero biases and its cls and mask tokens N(0, 0.02^2), as in the paper's code.
Departures, all deliberate: (1) BatchNorm's running variance is the biased batch variance
(PyTorch keeps the unbiased one); (2) LayerNorm epsilon 1e-5 (PyTorch's) in the vit; (3) the
attention's query, key and value are three Xavier-initialised maps where timm has one fused map
(the same parameters and function).
"""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import mamba_jax
from experiments import config_values, model_builders

PAPER_ARCHITECTURES = ("fc_small", "fc_medium", "fc_large", "cnn_small", "cnn_large", "vit")
PROJECT_ARCHITECTURES = (
  "project_fc_small",
  "project_fc_medium",
  "project_fc_large",
  "project_cnn",
  "project_vit",
)
ARCHITECTURES = (*PAPER_ARCHITECTURES, "mamba", *PROJECT_ARCHITECTURES)
PARTS = ("encoder", "decoder", "head")
POOLING = ("last", "mean")
DECODER_OUTPUTS = ("tanh", "linear")
INITS = ("torch", "flax")  # config.model.init of the fc_* and cnn_* families (`layer_init`)
PAPER_LATENT_DIMS = {"cnn_small": 16, "cnn_large": 128, "vit": 8}  # the paper's only ones
TANH_FAMILIES = ("fc_small", "fc_medium", "fc_large", "cnn_small", "cnn_large")


def decoder_output(config):
  """config.model.decoder_output, or the family's own where it is unset (None)."""
  value = config.get("decoder_output")
  if value is None:
    return "tanh" if config.architecture in TANH_FAMILIES else "linear"
  if value not in DECODER_OUTPUTS:
    raise ValueError(
      f"config.model.decoder_output = {value!r}; expected one of {DECODER_OUTPUTS} "
      "(or None: the family's own)"
    )
  return value


def _output(name, x):
  return jnp.tanh(x) if name == "tanh" else x


def _nhwc(images):
  """(batch, S, S) -> (batch, S, S, 1); (batch, S, S, C) unchanged."""
  return images[..., None] if images.ndim == 3 else images


def _image(x):
  """(batch, S, S, C) -> (batch, S, S) for C = 1 (grayscale images are (S, S)), else unchanged."""
  return x[..., 0] if x.shape[-1] == 1 else x


def patchify(images, patch_size):
  """(batch, S, S[, C]) -> (batch, (S/P)^2, P*P*C): non-overlapping patches in raster order, each
  flattened row-major (pixel rows, then pixel columns, then channels)."""
  x = _nhwc(images)
  batch, size, _, channels = x.shape
  n = size // patch_size
  grid = x.reshape(batch, n, patch_size, n, patch_size, channels).transpose(0, 1, 3, 2, 4, 5)
  return grid.reshape(batch, n * n, patch_size * patch_size * channels)


def unpatchify(patches, patch_size):
  """The inverse of `patchify`: (batch, (S/P)^2, P*P*C) -> (batch, S, S) for C = 1, else
  (batch, S, S, C)."""
  batch, count, features = patches.shape
  n, channels = math.isqrt(count), features // patch_size**2
  grid = patches.reshape(batch, n, n, patch_size, patch_size, channels)
  grid = grid.transpose(0, 1, 3, 2, 4, 5)
  return _image(grid.reshape(batch, n * patch_size, n * patch_size, channels))


def layer_init(init, fan_in):
  """The kernel_init and bias_init of one Linear, Conv or ConvTranspose layer: "flax": {} (flax's
  defaults: LeCun-normal kernel, zero bias); "torch": PyTorch's default, kernel and bias both
  uniform in +-1/sqrt(fan_in) (kaiming_uniform with a = sqrt(5) gives that bound). fan_in as
  PyTorch computes it: Linear in_features; Conv in_channels * k * k; ConvTranspose its weight's
  dimension 1 (out_channels) * k * k."""
  if init == "flax":
    return {}
  bound = 1.0 / math.sqrt(fan_in)

  def uniform(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return {"kernel_init": uniform, "bias_init": uniform}


class MLP(nnx.Module):
  """Linear layers with `activation` between them (none after the last); init: see
  `layer_init`, or kernel_init for every kernel (with flax's zero biases)."""

  def __init__(self, widths, *, activation=jax.nn.relu, kernel_init=None, init="flax", rngs):
    self.activation = activation
    self.layers = nnx.List(
      [
        nnx.Linear(
          a,
          b,
          rngs=rngs,
          **({"kernel_init": kernel_init} if kernel_init is not None else layer_init(init, a)),
        )
        for a, b in zip(widths, widths[1:])
      ]
    )

  def __call__(self, x):
    x = self.layers[0](x)
    for layer in self.layers[1:]:
      x = layer(self.activation(x))
    return x


# -- fully connected ----------------------------------------------------------------------------


class FCEncoder(MLP):
  """project_fc_*: the flattened image -> ReLU hidden layers -> a linear z (no activation)."""

  def __init__(self, image_size, hidden, latent_dim, *, channels=1, init="flax", rngs):
    widths = [image_size * image_size * channels, *hidden, latent_dim]
    super().__init__(widths, init=init, rngs=rngs)

  def __call__(self, images):
    return super().__call__(images.reshape(images.shape[0], -1))


class PaperFCEncoder(FCEncoder):
  """fc_*: as FCEncoder, with a ReLU on the latent: z = ReLU(linear)."""

  def __call__(self, images):
    return jax.nn.relu(super().__call__(images))


class FCDecoder(MLP):
  """z -> the mirrored ReLU hidden layers -> pixels, then the output activation."""

  def __init__(
    self, image_size, hidden, latent_dim, *, channels=1, output="linear", init="flax", rngs
  ):
    self.image_size, self.channels, self.output = image_size, channels, output
    pixels = image_size * image_size * channels
    super().__init__([latent_dim, *reversed(hidden), pixels], init=init, rngs=rngs)

  @property
  def from_latent(self):
    return self.layers[0]

  def __call__(self, z):
    x = _output(self.output, super().__call__(z))
    return _image(x.reshape(z.shape[0], self.image_size, self.image_size, self.channels))


class Head(MLP):
  """z (flattened) -> class logits: linear (hidden = 0) or one ReLU hidden layer."""

  def __init__(self, latent_size, hidden, num_classes, *, init="flax", rngs):
    super().__init__(
      [latent_size, hidden, num_classes] if hidden else [latent_size, num_classes],
      init=init,
      rngs=rngs,
    )

  @property
  def from_latent(self):
    return self.layers[0]

  def __call__(self, z):
    return super().__call__(z.reshape(z.shape[0], -1))


# -- convolutional ------------------------------------------------------------------------------


class CNNEncoder(nnx.Module):
  """project_cnn: stride-2 3x3 convolutions with ReLU, then a linear map to a linear z."""

  def __init__(self, image_size, channels, latent_dim, *, in_channels=1, rngs):
    widths = [in_channels, *channels]
    self.convs = nnx.List(
      [
        nnx.Conv(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
        for a, b in zip(widths, widths[1:])
      ]
    )
    side = image_size // 2 ** len(channels)
    self.to_latent = nnx.Linear(side * side * channels[-1], latent_dim, rngs=rngs)

  def __call__(self, images):
    x = _nhwc(images)
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return self.to_latent(x.reshape(x.shape[0], -1))


class CNNDecoder(nnx.Module):
  """project_cnn: z -> linear -> the smallest map -> stride-2 transposed convolutions -> pixels."""

  def __init__(self, image_size, channels, latent_dim, *, out_channels=1, output="linear", rngs):
    self.side, self.top, self.output = image_size // 2 ** len(channels), channels[-1], output
    self.from_latent = nnx.Linear(latent_dim, self.side * self.side * self.top, rngs=rngs)
    widths = [*reversed(channels), channels[0]]
    self.deconvs = nnx.List(
      [
        nnx.ConvTranspose(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
        for a, b in zip(widths, widths[1:])
      ]
    )
    self.to_pixels = nnx.Conv(channels[0], out_channels, (3, 3), padding="SAME", rngs=rngs)

  def __call__(self, z):
    x = jax.nn.relu(self.from_latent(z)).reshape(z.shape[0], self.side, self.side, self.top)
    for deconv in self.deconvs:
      x = jax.nn.relu(deconv(x))
    return _image(_output(self.output, self.to_pixels(x)))


# channels: [C, hidden..., latent_dim]; kernels: one per convolution; pools: per convolution None
# (no pool) or the padding of its 2x2 stride-2 max pool; sides: [S, the side after each layer].
CNNPlan = collections.namedtuple("CNNPlan", "channels kernels pools sides")


def _pooled_side(side, padding):
  return (side + 2 * padding - 2) // 2 + 1


def _max_pool(x, padding):
  """2x2 stride-2 max pool; padding (both sides) counts as -inf, as in PyTorch."""
  pad = ((padding, padding), (padding, padding))
  return nnx.max_pool(x, (2, 2), strides=(2, 2), padding=pad)


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def cnn_plan(config, image_size, channels=1):
  """The CNNPlan of config.model (architecture cnn_small or cnn_large); ValueError naming the
  field that cannot build it for S x S images."""
  arch = config.architecture
  section, where = config[arch], f"config.model.{arch}"
  hidden = config_values.positive_ints(section.channels, f"{where}.channels", allow_empty=True)
  depth = len(hidden) + 1
  kernels = config_values.positive_ints(section.kernel_sizes, f"{where}.kernel_sizes")
  pool, padding = section.pool, section.pool_padding
  for field, value, ok in (
    ("kernel_sizes", kernels, True),
    ("pool", pool, all(isinstance(p, bool) for p in pool or ())),
    ("pool_padding", padding, all(_is_int(p) and p in (0, 1) for p in padding or ())),
  ):
    if not (isinstance(value, (tuple, list)) and len(value) == depth and ok):
      raise ValueError(
        f"{where}.{field} = {value!r}; expected {depth} entries, one per convolution (those of "
        f"{where}.channels and the latent's): kernel sizes, pool: booleans (a 2x2 stride-2 max "
        "pool after it or not), pool_padding: 0 or 1 (that pool's padding)"
      )
  sides = [image_size]
  for p, q in zip(pool, padding):
    side = _pooled_side(sides[-1], q) if p else sides[-1]
    if side < 1:
      raise ValueError(
        f"{where}.pool = {tuple(pool)!r}: {sum(pool)} 2x2 max pools do not fit an image side of "
        f"{image_size}"
      )
    sides.append(side)
  if arch == "cnn_large" and sides[-1] < 2:
    raise ValueError(
      f"{where}.pool = {tuple(pool)!r} leaves a {sides[-1]} x {sides[-1]} latent map; the "
      "cnn_large head max-pools it once more and needs a side of 2 or more"
    )
  pools = [q if p else None for p, q in zip(pool, padding)]
  return CNNPlan([channels, *hidden, config.latent_dim], kernels, pools, sides)


def batch_norm(features, rngs, epsilon=1e-5, affine=True):
  """flax's BatchNorm as PyTorch's BatchNorm*d: momentum 0.1 there is 0.9 here (the weight of
  the old running average), epsilon 1e-5 unless given; affine=False: no scale, no bias."""
  return nnx.BatchNorm(
    features, momentum=0.9, epsilon=epsilon, use_scale=affine, use_bias=affine, rngs=rngs
  )


def channel_dropout(rate):
  """PyTorch's Dropout2d on (batch, s, s, channels): whole channels of each example dropped, one
  draw per (example, channel). Active in training only, with a key (see `call`)."""
  return nnx.Dropout(rate, broadcast_dims=(1, 2))


def call(module, x, key=None):
  """module(x); with a key, its dropout (if any) draws from it: training. Without a key, a
  module in training mode with dropout fails (nnx asks for rngs) rather than skip it."""
  if key is None or not getattr(module, "dropout_rate", 0.0):
    return module(x)
  return module(x, rngs=nnx.Rngs(dropout=key))


class PaperCNNEncoder(nnx.Module):
  """cnn_small / cnn_large: per layer a k x k convolution (size kept), channel dropout (rate
  `dropout`; the paper's cnn_large: 0.2), BatchNorm (batch_norm), the layer's optional 2x2
  stride-2 max pool, ReLU: the paper's order. The last feature map, (batch, s, s, latent_dim),
  is the latent."""

  def __init__(self, plan, *, batch_norm_on=True, dropout=0.0, init="flax", rngs):
    self.pools, self.dropout_rate = tuple(plan.pools), float(dropout)
    layers = list(zip(plan.channels, plan.channels[1:], plan.kernels))
    self.convs = nnx.List(
      [
        nnx.Conv(a, b, (k, k), padding="SAME", rngs=rngs, **layer_init(init, a * k * k))
        for a, b, k in layers
      ]
    )
    self.norms = nnx.List([batch_norm(b, rngs) for _, b, _ in layers] if batch_norm_on else [])
    self.dropout = channel_dropout(self.dropout_rate)

  def __call__(self, images, rngs=None):
    x = _nhwc(images)
    for i, (conv, pool) in enumerate(zip(self.convs, self.pools)):
      x = conv(x)
      if self.dropout_rate:
        x = self.dropout(x, rngs=rngs)
      if self.norms:
        x = self.norms[i](x)
      if pool is not None:
        x = _max_pool(x, pool)
      x = jax.nn.relu(x)
    return x


class PaperCNNDecoder(nnx.Module):
  """The latent map back to pixels: per encoder layer, last first, a 3x3 transposed convolution to
  that layer's input channels and side (stride 2 where the layer pooled, else 1; the padding
  chosen so the side comes out exactly, as the paper's output_padding does), ReLU between, the
  output activation last."""

  def __init__(self, plan, output, *, init="flax", rngs):
    self.output = output
    layers = []
    for i in reversed(range(len(plan.kernels))):
      if plan.pools[i] is None:
        stride, pad = 1, (1, 1)
      else:  # (in - 1) * 2 + 1 dilated, + pad - 2 = the target side
        total = plan.sides[i] - 2 * plan.sides[i + 1] + 3
        stride, pad = 2, (total // 2, total - total // 2)
      layers.append(
        nnx.ConvTranspose(
          plan.channels[i + 1],
          plan.channels[i],
          (3, 3),
          strides=stride,
          padding=(pad, pad),
          rngs=rngs,
          **layer_init(init, plan.channels[i] * 9),  # PyTorch: out_channels * k * k
        )
      )
    self.deconvs = nnx.List(layers)

  @property
  def from_latent(self):
    return self.deconvs[0]

  def __call__(self, z):
    x = z
    for i, deconv in enumerate(self.deconvs):
      x = deconv(x)
      if i + 1 < len(self.deconvs):
        x = jax.nn.relu(x)
    return _image(_output(self.output, x))


class CNNLargeHead(nnx.Module):
  """cnn_large's head, the paper's order: 3x3 convolution, channel dropout, BatchNorm, ReLU; 1x1
  convolution, channel dropout, 2x2 max pool, BatchNorm, ReLU; flatten, linear."""

  def __init__(
    self,
    latent_channels,
    side,
    hidden,
    num_classes,
    *,
    batch_norm_on=True,
    dropout=0.0,
    init="flax",
    rngs,
  ):
    self.dropout_rate = float(dropout)
    self.from_latent = nnx.Conv(
      latent_channels,
      hidden,
      (3, 3),
      padding="SAME",
      rngs=rngs,
      **layer_init(init, latent_channels * 9),
    )
    self.mix = nnx.Conv(hidden, hidden, (1, 1), rngs=rngs, **layer_init(init, hidden))
    self.norms = nnx.List([batch_norm(hidden, rngs) for _ in range(2)] if batch_norm_on else [])
    self.dropout = channel_dropout(self.dropout_rate)
    pooled = side // 2
    flat = hidden * pooled * pooled
    self.to_logits = nnx.Linear(flat, num_classes, rngs=rngs, **layer_init(init, flat))

  def _drop(self, x, rngs):
    return self.dropout(x, rngs=rngs) if self.dropout_rate else x

  def _norm(self, i, x):
    return self.norms[i](x) if self.norms else x

  def __call__(self, z, rngs=None):
    x = jax.nn.relu(self._norm(0, self._drop(self.from_latent(z), rngs)))
    x = jax.nn.relu(self._norm(1, _max_pool(self._drop(self.mix(x), rngs), 0)))
    return self.to_logits(x.reshape(x.shape[0], -1))


# -- transformer and Mamba ----------------------------------------------------------------------


def _exact_gelu(x):
  return jax.nn.gelu(x, approximate=False)


class ViTBlock(nnx.Module):
  """Pre-LayerNorm block with bidirectional (unmasked) self-attention and a GELU MLP (mlp_ratio x).
  The defaults are project_vit's; the paper's vit passes Xavier kernels, epsilon 1e-5 and the
  exact GELU (timm's Block)."""

  def __init__(
    self,
    d_model,
    n_heads,
    *,
    mlp_ratio=4,
    kernel_init=None,
    epsilon=1e-6,
    exact_gelu=False,
    rngs,
  ):
    init = {} if kernel_init is None else {"kernel_init": kernel_init}
    self.ln_1 = nnx.LayerNorm(d_model, epsilon=epsilon, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(n_heads, d_model, decode=False, rngs=rngs, **init)
    self.ln_2 = nnx.LayerNorm(d_model, epsilon=epsilon, rngs=rngs)
    self.mlp = MLP(
      [d_model, int(mlp_ratio * d_model), d_model],
      activation=_exact_gelu if exact_gelu else jax.nn.gelu,
      kernel_init=kernel_init,
      rngs=rngs,
    )

  def __call__(self, x):
    h = self.ln_1(x)
    x = x + self.attn(h, h, h)
    return x + self.mlp(self.ln_2(x))


class ViTBody(nnx.Module):
  """hidden (batch, length, d_model) -> hidden: transformer blocks and a final LayerNorm."""

  def __init__(self, d_model, n_layers, n_heads, *, rngs):
    if d_model % n_heads:
      raise ValueError(
        f"config.model.project_vit.d_model = {d_model} is not divisible by "
        f"config.model.project_vit.n_heads = {n_heads}"
      )
    self.blocks = nnx.List([ViTBlock(d_model, n_heads, rngs=rngs) for _ in range(n_layers)])
    self.ln_f = nnx.LayerNorm(d_model, rngs=rngs)

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return self.ln_f(x)


def _sequence_body(architecture, config, *, rngs):
  """(the backbone: hidden -> hidden, its width) for architecture "project_vit" or "mamba"."""
  c = config[architecture]
  if architecture == "project_vit":
    return ViTBody(c.d_model, c.n_layers, c.n_heads, rngs=rngs), c.d_model
  mamba_config = model_builders.mamba_config(c, ignore=("pool",))
  return mamba_jax.MambaStack(mamba_config, rngs=rngs), c.d_model


def _positions(count, d_model, rngs):
  return nnx.Param(0.02 * jax.random.normal(rngs.params(), (count, d_model)))


class PatchEncoder(nnx.Module):
  """mamba / project_vit: patches -> linear embedding + learned positions -> body -> pooled ->
  linear map to z."""

  def __init__(self, architecture, config, image_size, *, channels=1, rngs):
    self.patch_size, self.pool = config.patch_size, config[architecture].pool
    count = (image_size // self.patch_size) ** 2
    self.body, d_model = _sequence_body(architecture, config, rngs=rngs)
    self.embed = nnx.Linear(self.patch_size**2 * channels, d_model, rngs=rngs)
    self.positions = _positions(count, d_model, rngs)
    self.to_latent = nnx.Linear(d_model, config.latent_dim, rngs=rngs)

  def __call__(self, images):
    hidden = self.body(self.embed(patchify(images, self.patch_size)) + self.positions[...])
    pooled = hidden[:, -1] if self.pool == "last" else jnp.mean(hidden, axis=1)
    return self.to_latent(pooled)


class PatchDecoder(nnx.Module):
  """mamba / project_vit: z -> linear map, broadcast to every patch position + learned positions
  -> body -> each position's pixels."""

  def __init__(self, architecture, config, image_size, *, channels=1, output="linear", rngs):
    self.patch_size, self.output = config.patch_size, output
    self.count = (image_size // self.patch_size) ** 2
    self.body, d_model = _sequence_body(architecture, config, rngs=rngs)
    self.from_latent = nnx.Linear(config.latent_dim, d_model, rngs=rngs)
    self.positions = _positions(self.count, d_model, rngs)
    self.to_pixels = nnx.Linear(d_model, self.patch_size**2 * channels, rngs=rngs)

  def __call__(self, z):
    hidden = self.from_latent(z)[:, None, :] + self.positions[...]
    pixels = unpatchify(self.to_pixels(self.body(hidden)), self.patch_size)
    return _output(self.output, pixels)


def sincos_positions(dim, grid):
  """Fixed 2-D sine-cosine positions (MAE's), (1 + grid^2, dim) numpy: a zero row for the cls
  token, then the patches in raster order; the first dim/2 features encode the patch's column,
  the rest its row, each as the sines then the cosines of position * 10000^(-k / (dim/4)),
  k < dim/4."""
  quarter = dim // 4
  omega = 1.0 / 10000.0 ** (np.arange(quarter) / quarter)
  rows, cols = np.divmod(np.arange(grid * grid), grid)

  def axis(position):
    angles = np.outer(position, omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

  table = np.concatenate([axis(cols), axis(rows)], axis=1)
  return np.concatenate([np.zeros((1, dim)), table]).astype(np.float32)


def _xavier():
  return nnx.initializers.xavier_uniform()


def _paper_blocks(width, n_layers, n_heads, mlp_ratio, rngs):
  return nnx.List(
    [
      ViTBlock(
        width,
        n_heads,
        mlp_ratio=mlp_ratio,
        kernel_init=_xavier(),
        epsilon=1e-5,
        exact_gelu=True,
        rngs=rngs,
      )
      for _ in range(n_layers)
    ]
  )


def _token(dim, rngs):
  return nnx.Param(0.02 * jax.random.normal(rngs.params(), (dim,)))


class PaperViTEncoder(nnx.Module):
  """vit: patches -> linear embedding + fixed positions, cls token in front -> blocks ->
  LayerNorm. The latent is every token, (batch, 1 + patches, dim); `masked` drops patches."""

  def __init__(self, c, image_size, dim, *, channels=1, rngs):
    self.patch_size, self.dim, self.masking_ratio = c.patch_size, dim, float(c.masking_ratio)
    self.count = (image_size // self.patch_size) ** 2
    self.keep = int(self.count * (1.0 - self.masking_ratio))
    self.embed = nnx.Linear(self.patch_size**2 * channels, dim, kernel_init=_xavier(), rngs=rngs)
    self.cls_token = _token(dim, rngs)
    self.blocks = _paper_blocks(dim, c.encoder_layers, c.n_heads, c.mlp_ratio, rngs)
    self.norm = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)

  def _patch_tokens(self, images):
    positions = sincos_positions(self.dim, math.isqrt(self.count))[1:]
    return self.embed(patchify(images, self.patch_size)) + positions

  def _body(self, patch_tokens):
    batch = patch_tokens.shape[0]
    cls = jnp.broadcast_to(self.cls_token[...], (batch, 1, self.dim))  # its position is 0
    x = jnp.concatenate([cls, patch_tokens.astype(cls.dtype)], axis=1)
    for block in self.blocks:
      x = block(x)
    return self.norm(x)

  def __call__(self, images):
    """Every patch (evaluation, and training without masking): (batch, 1 + patches, dim)."""
    return self._body(self._patch_tokens(images))

  def masked(self, images, rng):
    """(latent (batch, 1 + keep, dim), mask): each example keeps `keep` patches chosen at random
    (MAE's per-example shuffle); mask = {"restore": the order that puts the kept tokens followed
    by the dropped ones back in raster order (batch, patches), "pixel_mask": 1 on the dropped
    patches' pixels, (batch, S, S)}."""
    tokens = self._patch_tokens(images)
    shuffle = jnp.argsort(jax.random.uniform(rng, tokens.shape[:2]), axis=1)
    restore = jnp.argsort(shuffle, axis=1)
    kept = jnp.take_along_axis(tokens, shuffle[:, : self.keep, None], axis=1)
    dropped = (restore >= self.keep).astype(jnp.float32)
    pixel_mask = unpatchify(
      jnp.repeat(dropped[..., None], self.patch_size**2, axis=-1), self.patch_size
    )
    return self._body(kept), {"restore": restore, "pixel_mask": pixel_mask}


class PaperViTDecoder(nnx.Module):
  """vit: tokens -> linear to the decoder width, mask tokens where patches were dropped, fixed
  positions -> blocks -> LayerNorm -> each patch token's pixels (the cls token's dropped)."""

  def __init__(self, c, image_size, dim, *, channels=1, output="linear", rngs):
    self.patch_size, self.output = c.patch_size, output
    self.count = (image_size // self.patch_size) ** 2
    self.width = c.decoder_dim or dim
    self.from_latent = nnx.Linear(dim, self.width, kernel_init=_xavier(), rngs=rngs)
    if c.masking_ratio > 0:
      self.mask_token = _token(self.width, rngs)
    self.blocks = _paper_blocks(self.width, c.decoder_layers, c.n_heads, c.mlp_ratio, rngs)
    self.norm = nnx.LayerNorm(self.width, epsilon=1e-5, rngs=rngs)
    self.to_pixels = nnx.Linear(
      self.width, self.patch_size**2 * channels, kernel_init=_xavier(), rngs=rngs
    )

  def __call__(self, z, restore=None):
    """z: (batch, 1 + patches, dim), or (batch, 1 + kept, dim) with `restore` from `masked`."""
    x = self.from_latent(z)
    if restore is not None:
      batch, length, _ = x.shape
      fill = jnp.broadcast_to(self.mask_token[...], (batch, self.count + 1 - length, self.width))
      patches = jnp.concatenate([x[:, 1:], fill.astype(x.dtype)], axis=1)
      patches = jnp.take_along_axis(patches, restore[..., None], axis=1)
      x = jnp.concatenate([x[:, :1], patches], axis=1)
    x = x + sincos_positions(self.width, math.isqrt(self.count))
    for block in self.blocks:
      x = block(x)
    pixels = self.to_pixels(self.norm(x)[:, 1:])
    return _output(self.output, unpatchify(pixels, self.patch_size))


class ViTHead(nnx.Module):
  """vit: the mean over the patch tokens (the cls token left out) -> BatchNorm without scale or
  bias, epsilon 1e-6 (the paper's BatchNorm1d(affine=False); batch_norm) -> linear -> logits."""

  def __init__(self, dim, num_classes, *, batch_norm_on=True, rngs):
    self.norm = batch_norm(dim, rngs, epsilon=1e-6, affine=False) if batch_norm_on else None
    self.from_latent = nnx.Linear(dim, num_classes, kernel_init=_xavier(), rngs=rngs)

  def __call__(self, z):
    pooled = jnp.mean(z[:, 1:], axis=1)
    return self.from_latent(pooled if self.norm is None else self.norm(pooled))


# -- checks and the network ---------------------------------------------------------------------


def _check_head_hidden(value, field):
  if not (_is_int(value) and value >= 0):
    raise ValueError(f"{field} = {value!r}; expected an integer >= 0 (0: linear head)")


def _check_patch_size(patch_size, image_size, field):
  if not (_is_int(patch_size) and patch_size >= 1 and image_size % patch_size == 0):
    raise ValueError(f"{field} = {patch_size!r} does not divide the image side {image_size}")


def _check_vit(config, image_size):
  c = config.vit
  _check_patch_size(c.patch_size, image_size, "config.model.vit.patch_size")
  for field in ("n_heads", "encoder_layers", "decoder_layers"):
    if not (_is_int(c[field]) and c[field] >= 1):
      raise ValueError(f"config.model.vit.{field} = {c[field]!r}; expected a positive integer")
  widths = [("config.model.latent_dim", config.latent_dim, "the vit's token dimension")]
  if c.decoder_dim is not None:
    widths.append(("config.model.vit.decoder_dim", c.decoder_dim, "the vit decoder's width"))
  for field, width, what in widths:
    if not _is_int(width) or width % 4 or width % c.n_heads:
      raise ValueError(
        f"{field} = {width!r} cannot be {what}: it must be a multiple of 4 (the 2-D sine-cosine "
        f"positions) and of config.model.vit.n_heads = {c.n_heads}"
      )
  ratio = c.mlp_ratio
  if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
    raise ValueError(f"config.model.vit.mlp_ratio = {ratio!r}; expected a positive number")
  r = c.masking_ratio
  count = (image_size // c.patch_size) ** 2
  if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r < 1.0:
    raise ValueError(f"config.model.vit.masking_ratio = {r!r}; expected a number in [0, 1)")
  keep = int(count * (1.0 - r))
  if r > 0 and not 1 <= keep < count:
    raise ValueError(
      f"config.model.vit.masking_ratio = {r!r} keeps {keep} of {count} patches "
      f"(int({count} * (1 - {r}))); expected 1 to {count - 1} (0: no masking)"
    )


def check_config(config, image_size, channels=1):
  """ValueError naming the config.model field that cannot build a network for (S, S[, C])
  images, or config.model.latent_dim where the family cannot honour it."""
  arch = config.architecture
  if arch not in ARCHITECTURES:
    raise ValueError(f"config.model.architecture = {arch!r}; expected one of {ARCHITECTURES}")
  if not (_is_int(config.latent_dim) and config.latent_dim >= 1):
    raise ValueError(
      f"config.model.latent_dim = {config.latent_dim!r}; expected a positive integer"
    )
  if not (_is_int(channels) and channels >= 1):
    raise ValueError(f"config.data.channels = {channels!r}; expected a positive integer")
  decoder_output(config)
  if config.get("init", "flax") not in INITS:
    raise ValueError(f"config.model.init = {config.init!r}; expected one of {INITS}")
  if arch in ("fc_small", "fc_medium", "fc_large"):
    config_values.positive_ints(
      config[arch].hidden, f"config.model.{arch}.hidden", allow_empty=True
    )
    _check_head_hidden(config[arch].head_hidden, f"config.model.{arch}.head_hidden")
  elif arch in ("cnn_small", "cnn_large"):
    cnn_plan(config, image_size, channels)
    rate = config[arch].get("dropout", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
      raise ValueError(f"config.model.{arch}.dropout = {rate!r}; expected a number in [0, 1)")
    if arch == "cnn_large" and not (
      _is_int(config.cnn_large.head_channels) and config.cnn_large.head_channels >= 1
    ):
      raise ValueError(
        f"config.model.cnn_large.head_channels = {config.cnn_large.head_channels!r}; "
        "expected a positive integer"
      )
  elif arch == "vit":
    _check_vit(config, image_size)
  else:
    _check_head_hidden(config.head_hidden, "config.model.head_hidden")
  if arch == "project_cnn":
    field = "config.model.project_cnn.channels"
    depth = len(config_values.positive_ints(config.project_cnn.channels, field))
    if image_size % 2**depth:
      raise ValueError(
        f"{field} = {config.project_cnn.channels!r}: {depth} stride-2 layers need an image "
        f"side divisible by {2**depth}, got {image_size}"
      )
  if arch in ("project_vit", "mamba"):
    _check_patch_size(config.patch_size, image_size, "config.model.patch_size")
    if config[arch].pool not in POOLING:
      raise ValueError(
        f"config.model.{arch}.pool = {config[arch].pool!r}; expected one of {POOLING}"
      )


class TradeoffNet(nnx.Module):
  """images (batch, S, S) or (batch, S, S, channels) -> (z, reconstructions in the input's shape,
  logits (batch, classes))."""

  def __init__(self, config, *, image_size, num_classes, channels=1, rngs):
    """config: the config.model ConfigDict (architecture, latent_dim, decoder_output, sizes);
    channels: the images' (config.data.channels; 1: (S, S) grayscale)."""
    check_config(config, image_size, channels)
    arch, latent, output = config.architecture, config.latent_dim, decoder_output(config)
    init, norm = config.get("init", "flax"), config.get("batch_norm", True)
    if arch in ("fc_small", "fc_medium", "fc_large"):
      c = config[arch]
      hidden = list(c.hidden)
      self.encoder = PaperFCEncoder(
        image_size, hidden, latent, channels=channels, init=init, rngs=rngs
      )
      self.decoder = FCDecoder(
        image_size, hidden, latent, channels=channels, output=output, init=init, rngs=rngs
      )
      self.head = Head(latent, c.head_hidden, num_classes, init=init, rngs=rngs)
    elif arch in ("cnn_small", "cnn_large"):
      plan = cnn_plan(config, image_size, channels)
      dropout = config[arch].get("dropout", 0.0)
      self.encoder = PaperCNNEncoder(
        plan, batch_norm_on=norm, dropout=dropout, init=init, rngs=rngs
      )
      self.decoder = PaperCNNDecoder(plan, output, init=init, rngs=rngs)
      side = plan.sides[-1]
      if arch == "cnn_small":
        self.head = Head(latent * side * side, 0, num_classes, init=init, rngs=rngs)
      else:
        hidden = config.cnn_large.head_channels
        self.head = CNNLargeHead(
          latent,
          side,
          hidden,
          num_classes,
          batch_norm_on=norm,
          dropout=dropout,
          init=init,
          rngs=rngs,
        )
    elif arch == "vit":
      c = config.vit
      self.encoder = PaperViTEncoder(c, image_size, latent, channels=channels, rngs=rngs)
      self.decoder = PaperViTDecoder(
        c, image_size, latent, channels=channels, output=output, rngs=rngs
      )
      self.head = ViTHead(latent, num_classes, batch_norm_on=norm, rngs=rngs)
    else:
      if arch.startswith("project_fc_"):
        size = arch[len("project_fc_") :]
        hidden = config_values.positive_ints(
          config.project_fc[size], f"config.model.project_fc.{size}"
        )
        self.encoder = FCEncoder(image_size, hidden, latent, channels=channels, rngs=rngs)
        self.decoder = FCDecoder(
          image_size, hidden, latent, channels=channels, output=output, rngs=rngs
        )
      elif arch == "project_cnn":
        widths = list(config.project_cnn.channels)
        self.encoder = CNNEncoder(image_size, widths, latent, in_channels=channels, rngs=rngs)
        self.decoder = CNNDecoder(
          image_size, widths, latent, out_channels=channels, output=output, rngs=rngs
        )
      else:
        self.encoder = PatchEncoder(arch, config, image_size, channels=channels, rngs=rngs)
        self.decoder = PatchDecoder(
          arch, config, image_size, channels=channels, output=output, rngs=rngs
        )
      self.head = Head(latent, config.head_hidden, num_classes, rngs=rngs)

  def __call__(self, images):
    z = self.encoder(images)
    return z, self.decoder(z).reshape(images.shape), self.head(z)


def encode(encoder, images, rng=None):
  """(z, mask) of a training batch: with an `rng` and an encoder that masks (vit with
  masking_ratio > 0), the latent of a random subset of patches and the mask that `decode` and
  `reconstruction_error` take; with an `rng` and an encoder with dropout, z with its dropout
  drawn from it (`call`); else (encoder(images), None), the evaluation's latent."""
  if rng is not None and getattr(encoder, "masking_ratio", 0.0) > 0:
    return encoder.masked(images, rng)
  return call(encoder, images, rng), None


def decode(decoder, z, mask=None):
  """The decoder's reconstructions of z, with the mask `encode` returned (None: no masking)."""
  return decoder(z) if mask is None else decoder(z, mask["restore"])


def reconstruction_error(reconstructions, images, mask=None):
  """Per-example mean squared pixel error, (batch,): over every pixel (and channel), or, with a
  mask from `encode`, over the dropped patches' pixels only (the paper's masked 'v1' loss)."""
  error = jnp.square(reconstructions - images)
  axes = tuple(range(1, error.ndim))
  if mask is None:
    return jnp.mean(error, axis=axes)
  weight = mask["pixel_mask"]
  weight = jnp.broadcast_to(weight.reshape(weight.shape + (1,) * (error.ndim - 3)), error.shape)
  return jnp.sum(error * weight, axis=axes) / jnp.sum(weight, axis=axes)


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy, (batch,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
