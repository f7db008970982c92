"""Study C's networks (docs/design.md section 6C; Rathjens & Wiskott 2024): encoder -> latent z ->
decoder and classification head.

`TradeoffNet` holds the three parts as separate submodules (`encoder`, `decoder`, `head`) so that
each can be split off with its own parameters and trained by its own optimiser. The latent is a
plain linear vector (no activation, no normalisation): what it holds is decided by the training
signal alone. Images are (batch, S, S) in [-1, 1]; reconstructions come out linear (not squashed),
so the MSE is on the images' own scale.

Architectures (config.model.architecture); the decoder mirrors the encoder:
  fc_small / fc_medium / fc_large: fully connected, hidden widths from config.model.fc.<size>;
  cnn: stride-2 3x3 convolutions (config.model.cnn_channels), then a linear map to z; the decoder
    is a linear map back to the smallest feature map and stride-2 transposed convolutions;
  vit: non-overlapping P x P patches in raster order, a linear patch embedding plus learned
    positions, a bidirectional pre-LayerNorm transformer, mean- (or last-) pooled to z;
  mamba: the same patch sequence through a mamba_jax `MambaStack`; z is a linear map of the output
    at the last patch (which has seen every patch) or of the mean over patches (config pool).
  Both sequence decoders feed z, broadcast to every patch position plus a learned position
  vector, through a backbone of the same family, and map each position to its patch's pixels.
The head is linear (config.model.head_hidden = 0) or one ReLU hidden layer. The first layer that
reads z in the decoder and in the head is called `from_latent` (tests zero it to cut a path).
Every width and depth comes from the config; the shipped values are this project's choice, sized
to the data, not layer sizes taken from the paper.
"""

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import mamba_jax
from experiments import config_values, model_builders

ARCHITECTURES = ("fc_small", "fc_medium", "fc_large", "cnn", "vit", "mamba")
PARTS = ("encoder", "decoder", "head")
POOLING = ("last", "mean")


def patchify(images, patch_size):
  """(batch, S, S) -> (batch, (S/P)^2, P*P): non-overlapping patches in raster order, each
  flattened row-major."""
  batch, size, _ = images.shape
  n = size // patch_size
  grid = images.reshape(batch, n, patch_size, n, patch_size).transpose(0, 1, 3, 2, 4)
  return grid.reshape(batch, n * n, patch_size * patch_size)


def unpatchify(patches, patch_size):
  """The inverse of `patchify`: (batch, (S/P)^2, P*P) -> (batch, S, S)."""
  batch, count, _ = patches.shape
  n = round(count**0.5)
  grid = patches.reshape(batch, n, n, patch_size, patch_size).transpose(0, 1, 3, 2, 4)
  return grid.reshape(batch, n * patch_size, n * patch_size)


class MLP(nnx.Module):
  """Linear layers with `activation` between them (none after the last)."""

  def __init__(self, widths, *, activation=jax.nn.relu, rngs):
    self.activation = activation
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, widths[1:])])

  def __call__(self, x):
    x = self.layers[0](x)
    for layer in self.layers[1:]:
      x = layer(self.activation(x))
    return x


class FCEncoder(MLP):
  def __init__(self, image_size, hidden, latent_dim, *, rngs):
    super().__init__([image_size * image_size, *hidden, latent_dim], rngs=rngs)

  def __call__(self, images):
    return super().__call__(images.reshape(images.shape[0], -1))


class FCDecoder(MLP):
  def __init__(self, image_size, hidden, latent_dim, *, rngs):
    self.image_size = image_size
    super().__init__([latent_dim, *reversed(hidden), image_size * image_size], rngs=rngs)

  @property
  def from_latent(self):
    return self.layers[0]

  def __call__(self, z):
    return super().__call__(z).reshape(z.shape[0], self.image_size, self.image_size)


class CNNEncoder(nnx.Module):
  def __init__(self, image_size, channels, latent_dim, *, rngs):
    widths = [1, *channels]
    self.convs = nnx.List(
      [
        nnx.Conv(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
        for a, b in zip(widths, widths[1:])
      ]
    )
    side = image_size // 2 ** len(channels)
    self.to_latent = nnx.Linear(side * side * channels[-1], latent_dim, rngs=rngs)

  def __call__(self, images):
    x = images[..., None]
    for conv in self.convs:
      x = jax.nn.relu(conv(x))
    return self.to_latent(x.reshape(x.shape[0], -1))


class CNNDecoder(nnx.Module):
  def __init__(self, image_size, channels, latent_dim, *, rngs):
    self.side, self.top = image_size // 2 ** len(channels), channels[-1]
    self.from_latent = nnx.Linear(latent_dim, self.side * self.side * self.top, rngs=rngs)
    widths = [*reversed(channels), channels[0]]
    self.deconvs = nnx.List(
      [
        nnx.ConvTranspose(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
        for a, b in zip(widths, widths[1:])
      ]
    )
    self.to_pixels = nnx.Conv(channels[0], 1, (3, 3), padding="SAME", rngs=rngs)

  def __call__(self, z):
    x = jax.nn.relu(self.from_latent(z)).reshape(z.shape[0], self.side, self.side, self.top)
    for deconv in self.deconvs:
      x = jax.nn.relu(deconv(x))
    return self.to_pixels(x)[..., 0]


class ViTBlock(nnx.Module):
  """Pre-LayerNorm block with bidirectional (unmasked) self-attention and a GELU MLP (4x)."""

  def __init__(self, d_model, n_heads, *, rngs):
    self.ln_1 = nnx.LayerNorm(d_model, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(n_heads, d_model, decode=False, rngs=rngs)
    self.ln_2 = nnx.LayerNorm(d_model, rngs=rngs)
    self.mlp = MLP([d_model, 4 * d_model, d_model], activation=jax.nn.gelu, rngs=rngs)

  def __call__(self, x):
    h = self.ln_1(x)
    x = x + self.attn(h, h, h)
    return x + self.mlp(self.ln_2(x))


class ViTBody(nnx.Module):
  """hidden (batch, length, d_model) -> hidden: transformer blocks and a final LayerNorm."""

  def __init__(self, d_model, n_layers, n_heads, *, rngs):
    if d_model % n_heads:
      raise ValueError(
        f"config.model.vit.d_model = {d_model} is not divisible by "
        f"config.model.vit.n_heads = {n_heads}"
      )
    self.blocks = nnx.List([ViTBlock(d_model, n_heads, rngs=rngs) for _ in range(n_layers)])
    self.ln_f = nnx.LayerNorm(d_model, rngs=rngs)

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return self.ln_f(x)


def _sequence_body(architecture, config, *, rngs):
  """(the backbone: hidden -> hidden, its width) for architecture "vit" or "mamba"."""
  c = config[architecture]
  if architecture == "vit":
    return ViTBody(c.d_model, c.n_layers, c.n_heads, rngs=rngs), c.d_model
  mamba_config = model_builders.mamba_config(c, ignore=("pool",))
  return mamba_jax.MambaStack(mamba_config, rngs=rngs), c.d_model


def _positions(count, d_model, rngs):
  return nnx.Param(0.02 * jax.random.normal(rngs.params(), (count, d_model)))


class PatchEncoder(nnx.Module):
  """Patches -> linear embedding + learned positions -> body -> pooled -> linear map to z."""

  def __init__(self, architecture, config, image_size, *, rngs):
    self.patch_size, self.pool = config.patch_size, config[architecture].pool
    count = (image_size // self.patch_size) ** 2
    self.body, d_model = _sequence_body(architecture, config, rngs=rngs)
    self.embed = nnx.Linear(self.patch_size**2, d_model, rngs=rngs)
    self.positions = _positions(count, d_model, rngs)
    self.to_latent = nnx.Linear(d_model, config.latent_dim, rngs=rngs)

  def __call__(self, images):
    hidden = self.body(self.embed(patchify(images, self.patch_size)) + self.positions[...])
    pooled = hidden[:, -1] if self.pool == "last" else jnp.mean(hidden, axis=1)
    return self.to_latent(pooled)


class PatchDecoder(nnx.Module):
  """z -> linear map, broadcast to every patch position + learned positions -> body -> pixels."""

  def __init__(self, architecture, config, image_size, *, rngs):
    self.patch_size = config.patch_size
    self.count = (image_size // self.patch_size) ** 2
    self.body, d_model = _sequence_body(architecture, config, rngs=rngs)
    self.from_latent = nnx.Linear(config.latent_dim, d_model, rngs=rngs)
    self.positions = _positions(self.count, d_model, rngs)
    self.to_pixels = nnx.Linear(d_model, self.patch_size**2, rngs=rngs)

  def __call__(self, z):
    hidden = self.from_latent(z)[:, None, :] + self.positions[...]
    return unpatchify(self.to_pixels(self.body(hidden)), self.patch_size)


class Head(MLP):
  """z -> class logits: linear (hidden = 0) or one ReLU hidden layer."""

  def __init__(self, latent_dim, hidden, num_classes, *, rngs):
    super().__init__(
      [latent_dim, hidden, num_classes] if hidden else [latent_dim, num_classes], rngs=rngs
    )

  @property
  def from_latent(self):
    return self.layers[0]


def check_config(config, image_size):
  """ValueError naming the config.model field that cannot build a network for these images."""
  arch = config.architecture
  if arch not in ARCHITECTURES:
    raise ValueError(f"config.model.architecture = {arch!r}; expected one of {ARCHITECTURES}")
  if not (isinstance(config.latent_dim, int) and config.latent_dim >= 1):
    raise ValueError(
      f"config.model.latent_dim = {config.latent_dim!r}; expected a positive integer"
    )
  if not (isinstance(config.head_hidden, int) and config.head_hidden >= 0):
    raise ValueError(
      f"config.model.head_hidden = {config.head_hidden!r}; expected an integer "
      ">= 0 (0: linear head)"
    )
  if arch == "cnn":
    depth = len(config_values.positive_ints(config.cnn_channels, "config.model.cnn_channels"))
    if image_size % 2**depth:
      raise ValueError(
        f"config.model.cnn_channels = {config.cnn_channels!r}: {depth} stride-2 "
        f"layers need an image side divisible by {2**depth}, got {image_size}"
      )
  if arch in ("vit", "mamba"):
    if not (
      isinstance(config.patch_size, int)
      and config.patch_size >= 1
      and image_size % config.patch_size == 0
    ):
      raise ValueError(
        f"config.model.patch_size = {config.patch_size!r} does not divide the "
        f"image side {image_size}"
      )
    if config[arch].pool not in POOLING:
      raise ValueError(
        f"config.model.{arch}.pool = {config[arch].pool!r}; expected one of {POOLING}"
      )


class TradeoffNet(nnx.Module):
  """images (batch, S, S) -> (z, reconstructions (batch, S, S), logits (batch, classes))."""

  def __init__(self, config, *, image_size, num_classes, rngs):
    """config: the config.model ConfigDict (architecture, latent_dim, head_hidden, sizes)."""
    check_config(config, image_size)
    arch, latent = config.architecture, config.latent_dim
    if arch.startswith("fc_"):
      hidden = config_values.positive_ints(config.fc[arch[3:]], f"config.model.fc.{arch[3:]}")
      self.encoder = FCEncoder(image_size, hidden, latent, rngs=rngs)
      self.decoder = FCDecoder(image_size, hidden, latent, rngs=rngs)
    elif arch == "cnn":
      channels = config_values.positive_ints(config.cnn_channels, "config.model.cnn_channels")
      self.encoder = CNNEncoder(image_size, channels, latent, rngs=rngs)
      self.decoder = CNNDecoder(image_size, channels, latent, rngs=rngs)
    else:
      self.encoder = PatchEncoder(arch, config, image_size, rngs=rngs)
      self.decoder = PatchDecoder(arch, config, image_size, rngs=rngs)
    self.head = Head(latent, config.head_hidden, num_classes, rngs=rngs)

  def __call__(self, images):
    z = self.encoder(images)
    return z, self.decoder(z), self.head(z)


def reconstruction_error(reconstructions, images):
  """Per-example mean squared pixel error, (batch,)."""
  return jnp.mean(jnp.square(reconstructions - images), axis=(1, 2))


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy, (batch,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
