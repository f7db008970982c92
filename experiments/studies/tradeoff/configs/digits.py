r"""Study C on the embedded digits: classification vs reconstruction through one latent.

The default sweep: 5 architectures x 2 latent sizes, and cnn_small at 4 channels (16 values:
config.sweep.extra_points), x 8 lambdas = 88 short runs for each of 3 seeds (config.sweep.seeds),
then tradeoff.csv (one row per run), tradeoff_summary.csv (means over seeds with 90% bootstrap
bands), tradeoff.png and reconstructions.png (see sweep.py). 48 minutes for one seed on the 2-core
CPU shared with other jobs (2026-12-06), no download (--config.sweep.seeds='(0,)' for one seed):

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/digits.py --workdir=runs/tradeoff_digits

One run of the grid (the fields the sweep sets: model.architecture, model.latent_dim, lam, seed):

  python -m experiments.main --config=experiments/studies/tradeoff/configs/digits.py \
      --workdir=runs/tradeoff_one --config.model.architecture=cnn_small --config.lam=0.5

Departures from the paper's training (Adam lr 1e-3, batch 512, 10 epochs; mnist.py
keeps it): the digits have 1437 training images, so 10 epochs at batch 512 would be 29 steps,
far from trained. Here batch 32 for 20 epochs (899 steps), what fits the CPU budget; the runs are
near, not at, convergence (at 40 epochs every accuracy rises and every MSE falls, most at
lambda = 1 and for mamba: README, study C). The 8 x 8 images are used at their native size, so
the sequence models see 16 patches of 2 x 2 pixels.
"""

import ml_collections
from ml_collections import config_dict


def steps_for_epochs(c):
  """num_train_steps = ceil(num_epochs * data.train_examples / batch_size), kept in step with
  overrides of any of the three (an explicit --config.num_train_steps still wins)."""
  batch = c.get_ref("batch_size")
  return (c.get_ref("num_epochs") * c.data.get_ref("train_examples") + batch - 1) // batch


def steps_per_epoch(c):
  """ceil(data.train_examples / batch_size), kept in step with overrides of either."""
  batch = c.get_ref("batch_size")
  return (c.data.get_ref("train_examples") + batch - 1) // batch


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "tradeoff"  # experiments/studies/: classification vs reconstruction
  c.seed = 0  # parameters and data order follow from it
  c.lam = 0.5  # loss = lam * MSE + (1 - lam) * CE for the encoder (the sweep sets it per run)
  c.batch_size = 32  # global batch (split over all devices of all hosts)
  c.num_epochs = 20  # passes over the training split

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"  # digits | mnist | fashion_mnist | cifar10 (the last three: prepared TFDS)
  c.data.channels = 1  # 1 = grayscale (RGB sets through luma) | 3 = RGB (colour data sets only)
  c.data.data_dir = ""  # TFDS data_dir; "" = ~/tensorflow_datasets
  c.data.omniglot_dir = ""  # folder with the Omniglot archives (data.name = omniglot only)
  c.data.image_size = 8  # images are resized to image_size x image_size, scaled to [-1, 1]
  c.data.train_split = "train"  # split to train on
  c.data.eval_split = "test"  # split of the reported metrics
  c.data.train_examples = 1437  # size of the train split (checked): steps per epoch
  c.data.num_classes = 10  # classes of the head
  c.data.in_memory = True  # hold the converted train split in memory (4 bytes per pixel)
  # training images rotated by an angle uniform in [-d, d] degrees, one per example (torchvision's
  # RandomRotation(d): nearest, fill black; the MSE target stays unrotated); 0 = off
  c.data.random_rotation_degrees = 0.0

  c.num_train_steps = steps_for_epochs(c)  # optimiser steps: num_epochs over the train split
  c.log_every_steps = 100  # metrics.jsonl / TensorBoard interval
  c.checkpoint_every_steps = 1000  # orbax checkpoint interval (and at the end, and on SIGTERM)
  c.checkpoints_to_keep = 1  # older checkpoints are deleted

  c.model = ml_collections.ConfigDict()
  # Families (experiments/studies/tradeoff/networks.py): the paper's fc_small | fc_medium |
  # fc_large | cnn_small | cnn_large | vit (Rathjens & Wiskott 2024's code), this project's mamba,
  # and its earlier project_fc_small | project_fc_medium | project_fc_large | project_cnn |
  # project_vit (kept so earlier results reproduce)
  c.model.architecture = "fc_small"
  # the sweep's latent axis: fc_*, mamba, project_*: the latent vector's size; cnn_*: the channels
  # of the latent feature map (here 2 x 2; the paper's 16 for cnn_small, 128 for cnn_large); vit:
  # the token dimension (the paper's 8; a multiple of 4 and of vit.n_heads), latent 17 tokens
  c.model.latent_dim = 8
  # decoder output: tanh | linear; None = the family's own (tanh: fc_*, cnn_*; linear: vit, as
  # the paper's code, and mamba, project_*)
  c.model.decoder_output = config_dict.placeholder(str)
  # fc_*, cnn_*: torch = PyTorch's default initialisation, as the paper's code runs (kernel and
  # bias uniform in +-1/sqrt(fan_in)) | flax = flax's (LeCun-normal kernels, zero biases; the
  # earlier runs). The vit keeps the paper's Xavier init, mamba and project_* flax's
  c.model.init = "torch"
  # BatchNorm where the paper's code has it (cnn_* encoders, the cnn_large head, the vit head;
  # none in the fc_* families); False = none (the earlier runs)
  c.model.batch_norm = True
  # The paper's sizes are for 28 x 28 (configs/mnist.py has them). Digits-sized rule, for 8 x 8:
  # FC hidden widths scaled by the input size, round(width * 64 / 784) (616 -> 50, 716 -> 58,
  # 684 -> 56), heads as the paper's (they read the latent, not the image); CNNs keep their
  # layers, kernels and channels and pool only as often as 8 x 8 allows while keeping a 2 x 2
  # latent map (the paper: 4 x 4); the vit keeps the paper's 4 x 4 grid of 16 patches (P = 2).
  c.model.fc_small = ml_collections.ConfigDict()
  c.model.fc_small.hidden = ()  # encoder hidden widths (the decoder mirrors them); paper: ()
  c.model.fc_small.head_hidden = 0  # head: 0 = linear, else one ReLU hidden layer; paper: 0
  c.model.fc_medium = ml_collections.ConfigDict()
  c.model.fc_medium.hidden = (50,)  # paper (784 inputs): (616,)
  c.model.fc_medium.head_hidden = 12  # paper: 12
  c.model.fc_large = ml_collections.ConfigDict()
  c.model.fc_large.hidden = (58, 56, 50)  # paper: (716, 684, 616)
  c.model.fc_large.head_hidden = 64  # paper: 64
  c.model.cnn_small = ml_collections.ConfigDict()
  c.model.cnn_small.channels = (16, 16)  # conv channels before the latent's (latent_dim); paper's
  c.model.cnn_small.kernel_sizes = (3, 3, 3)  # one per convolution; paper's
  c.model.cnn_small.pool = (True, False, True)  # 2x2 stride-2 max pool after it: 8 -> 4 -> 4 -> 2
  c.model.cnn_small.pool_padding = (0, 0, 0)  # that pool's padding (paper, 28: (0, 1, 0))
  c.model.cnn_small.dropout = 0.0  # channel dropout after each convolution; paper's MNIST: 0
  c.model.cnn_large = ml_collections.ConfigDict()
  c.model.cnn_large.channels = (64, 64, 128, 128)  # paper's (its latent_dim: 128)
  c.model.cnn_large.kernel_sizes = (7, 7, 5, 5, 3)  # paper's
  c.model.cnn_large.pool = (False, False, False, True, True)  # 8 -> 2 (paper: last three pool)
  c.model.cnn_large.pool_padding = (0, 0, 0, 0, 0)
  c.model.cnn_large.head_channels = 256  # the head's two convolutions; paper's
  c.model.cnn_large.dropout = 0.2  # channel dropout (encoder and head); the paper's CIFAR-10
  c.model.vit = ml_collections.ConfigDict()
  c.model.vit.patch_size = 2  # P x P patches: a 4 x 4 grid (paper, 28: P = 7)
  c.model.vit.n_heads = 4  # attention heads (encoder and decoder); paper's
  c.model.vit.encoder_layers = 1  # transformer blocks; paper's
  c.model.vit.decoder_layers = 1  # paper's
  c.model.vit.mlp_ratio = 4  # MLP width / token width; paper's
  c.model.vit.decoder_dim = config_dict.placeholder(int)  # None = latent_dim (paper: tied)
  c.model.vit.masking_ratio = 0.0  # MAE-style share of patches dropped in training; 0 = off
  # This project's own families.
  c.model.head_hidden = 0  # mamba, project_*: head 0 = linear, else one ReLU hidden layer
  c.model.patch_size = 2  # mamba, project_vit: non-overlapping P x P patches in raster order
  c.model.project_fc = ml_collections.ConfigDict()
  c.model.project_fc.small = (64,)  # encoder hidden widths of project_fc_small (decoder mirrors)
  c.model.project_fc.medium = (128, 64)  # ... of project_fc_medium
  c.model.project_fc.large = (256, 128, 64)  # ... of project_fc_large
  c.model.project_cnn = ml_collections.ConfigDict()
  c.model.project_cnn.channels = (16, 32)  # one stride-2 3x3 convolution each (side / 2 each)
  c.model.project_vit = ml_collections.ConfigDict()
  c.model.project_vit.d_model = 32  # transformer width
  c.model.project_vit.n_layers = 1  # blocks in the encoder and in the decoder
  c.model.project_vit.n_heads = 4  # attention heads
  c.model.project_vit.pool = "mean"  # latent from: mean over patches | last patch
  c.model.mamba = ml_collections.ConfigDict()
  c.model.mamba.d_model = 32  # Mamba hidden size
  c.model.mamba.n_layers = 1  # blocks in the encoder and in the decoder
  c.model.mamba.d_state = 8  # SSM state size
  c.model.mamba.d_conv = 4  # causal conv width
  c.model.mamba.expand = 2  # d_inner = expand * d_model
  c.model.mamba.dt_rank = "auto"  # step-projection rank ("auto" = ceil(d_model / 16))
  c.model.mamba.pool = "last"  # latent from: last patch (it has seen all) | mean over patches
  c.model.mamba.scan_implementation = "auto"  # selective-scan implementation
  # layer layout: None = stacked under nnx.scan from 8 layers on (one compile for any depth)
  c.model.mamba.scan_layers = config_dict.placeholder(bool)

  c.optimizer = ml_collections.ConfigDict()  # one optimiser each for encoder, decoder, head
  c.optimizer.name = "adam"  # adam | adamw | lamb
  c.optimizer.learning_rate = 1e-3  # the paper's
  c.optimizer.schedule = "constant"  # constant | cosine | warmup_constant | warmup_cosine
  c.optimizer.warmup_steps = 0  # linear warm-up (warmup_* schedules)
  c.optimizer.end_learning_rate_factor = 0.0  # final lr = factor * peak (cosine schedules)
  c.optimizer.weight_decay = 0.0  # must be 0 with adam
  c.optimizer.grad_clip_norm = 0.0  # global-norm clipping; 0 disables
  c.optimizer.b1 = 0.9  # Adam beta1
  c.optimizer.b2 = 0.999  # Adam beta2
  c.optimizer.eps = 1e-8  # Adam epsilon

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 128  # evaluation batch (the whole test split is evaluated)
  c.eval.num_images = 8  # test images shown reconstructed
  # best = the state with the lowest combined test loss lam * MSE + (1 - lam) * CE among the
  # evaluations every eval_every_steps (the paper keeps its best epoch), the last state's metrics
  # reported beside it | last = the state at the end of training
  c.eval.select = "best"
  c.eval.eval_every_steps = steps_per_epoch(c)  # one evaluation per epoch, as the paper's

  c.sweep = ml_collections.ConfigDict()  # read by the study's sweep.py only
  # the paper's three FC complexities, its MNIST CNN and this project's mamba; the vit's latent_dim
  # is a token dimension (2 is invalid): its own command in README, latents (8, 16)
  c.sweep.architectures = ("fc_small", "fc_medium", "fc_large", "cnn_small", "mamba")
  c.sweep.latent_dims = (2, 16)  # latent sizes of the grid
  # (architecture, latent_dim) points added at every lambda and seed: cnn_small at 4 channels
  # holds 2 x 2 x 4 = 16 values, as fc_* and mamba at latent_dim 16 (equal latent size)
  c.sweep.extra_points = (("cnn_small", 4),)
  c.sweep.lams = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0)  # lambdas of the grid
  c.sweep.seeds = (0, 1, 2)  # training seeds of the grid (its outer loop): bands over seeds
  c.sweep.figure_images = 3  # test images per architecture and latent in reconstructions.png
  return c
