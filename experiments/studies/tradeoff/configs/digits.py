r"""Study C on the embedded digits: classification vs reconstruction through one latent.

The default sweep: 4 architectures x 2 latent sizes x 8 lambdas = 64 short runs, then
tradeoff.csv, tradeoff.png and reconstructions.png. About ten minutes on a 2-core CPU, no
download:

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/digits.py --workdir=runs/tradeoff_digits

One run of the grid (the fields the sweep sets: model.architecture, model.latent_dim, lam):

  python -m experiments.main --config=experiments/studies/tradeoff/configs/digits.py \
      --workdir=runs/tradeoff_one --config.model.architecture=cnn --config.lam=0.5

Departures from the paper's training (Adam lr 1e-3, batch 512, 10 epochs; mnist.py
keeps it): the digits have 1437 training images, so 10 epochs at batch 512 would be 29 steps,
far from trained. Here batch 32 for 20 epochs (899 steps), what fits the CPU budget; the runs are
near, not at, convergence (longer training lowers every MSE and raises every accuracy, most at
lambda = 1 and for mamba). The 8 x 8 images are used at their native size, so the sequence models
see 16 patches of 2 x 2 pixels.
"""

import ml_collections
from ml_collections import config_dict


def steps_for_epochs(c):
  """num_train_steps = ceil(num_epochs * data.train_examples / batch_size), kept in step with
  overrides of any of the three (an explicit --config.num_train_steps still wins)."""
  batch = c.get_ref("batch_size")
  return (c.get_ref("num_epochs") * c.data.get_ref("train_examples") + batch - 1) // batch


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "tradeoff"  # experiments/studies/: classification vs reconstruction
  c.seed = 0  # parameters and data order follow from it
  c.lam = 0.5  # loss = lam * MSE + (1 - lam) * CE for the encoder (the sweep sets it per run)
  c.batch_size = 32  # global batch (split over all devices of all hosts)
  c.num_epochs = 20  # passes over the training split

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"  # digits | mnist | fashion_mnist | cifar10 (prepared TFDS, grayscale)
  c.data.data_dir = ""  # TFDS data_dir; "" = ~/tensorflow_datasets
  c.data.omniglot_dir = ""  # folder with the Omniglot archives (data.name = omniglot only)
  c.data.image_size = 8  # images are resized to image_size x image_size, scaled to [-1, 1]
  c.data.train_split = "train"  # split to train on
  c.data.eval_split = "test"  # split of the reported metrics
  c.data.train_examples = 1437  # size of the train split (checked): steps per epoch
  c.data.num_classes = 10  # classes of the head
  c.data.in_memory = True  # hold the converted train split in memory (4 bytes per pixel)

  c.num_train_steps = steps_for_epochs(c)  # optimiser steps: num_epochs over the train split
  c.log_every_steps = 100  # metrics.jsonl / TensorBoard interval
  c.checkpoint_every_steps = 1000  # orbax checkpoint interval (and at the end, and on SIGTERM)
  c.checkpoints_to_keep = 1  # older checkpoints are deleted

  c.model = ml_collections.ConfigDict()
  c.model.architecture = "fc_small"  # fc_small | fc_medium | fc_large | cnn | vit | mamba
  c.model.latent_dim = 8  # size of the shared latent z (the sweep sets it per run)
  c.model.head_hidden = 0  # classification head: 0 = linear, else one ReLU hidden layer
  c.model.fc = ml_collections.ConfigDict()
  c.model.fc.small = (64,)  # encoder hidden widths of fc_small (the decoder mirrors them)
  c.model.fc.medium = (128, 64)  # ... of fc_medium
  c.model.fc.large = (256, 128, 64)  # ... of fc_large
  c.model.cnn_channels = (16, 32)  # one stride-2 3x3 convolution per entry (side / 2 each)
  c.model.patch_size = 2  # vit / mamba: non-overlapping P x P patches in raster order
  c.model.vit = ml_collections.ConfigDict()
  c.model.vit.d_model = 32  # transformer width
  c.model.vit.n_layers = 1  # blocks in the encoder and in the decoder
  c.model.vit.n_heads = 4  # attention heads
  c.model.vit.pool = "mean"  # latent from: mean over patches | last patch
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

  c.sweep = ml_collections.ConfigDict()  # read by the study's sweep.py only
  c.sweep.architectures = ("fc_small", "fc_medium", "cnn", "mamba")  # architectures of the grid
  c.sweep.latent_dims = (2, 16)  # latent sizes of the grid
  c.sweep.lams = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0)  # lambdas of the grid
  c.sweep.figure_images = 3  # test images per architecture and latent in reconstructions.png
  return c
