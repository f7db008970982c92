r"""Study C at the paper's scale (Rathjens & Wiskott 2024): MNIST, every architecture, a latent
grid, the paper's training (Adam lr 1e-3, batch 512, 10 epochs: 1172 steps per run).

6 architectures x 7 latent sizes x 8 lambdas = 336 runs; for a GPU or TPU host (data parallel
over its devices). MNIST must be prepared as a TFDS array_record data set in data_dir (nothing
is downloaded here; a missing set fails at once with the command that prepares it):

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/mnist.py --workdir=runs/tradeoff_mnist \
      --config.data.data_dir=/path/to/tensorflow_datasets

Fashion-MNIST: --config.data.name=fashion_mnist (same sizes). CIFAR-10:
--config.data.name=cifar10 --config.data.image_size=32 --config.data.train_examples=50000
(the data module makes every image grayscale, so this is grayscale CIFAR-10).
A sweep interrupted (or preempted) resumes with the same command.
"""

from experiments.studies.tradeoff.configs import digits


def get_config():
  c = digits.get_config()
  c.data.name = "mnist"
  c.data.image_size = 28  # native size
  c.data.train_examples = 60_000
  c.batch_size = 512  # the paper's
  c.num_epochs = 10  # the paper's
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.model.fc.small = (256,)
  c.model.fc.medium = (512, 256)
  c.model.fc.large = (1024, 512, 256)
  c.model.cnn_channels = (32, 64)  # 28 -> 14 -> 7
  c.model.patch_size = 4  # 7 x 7 = 49 patches
  c.model.vit.d_model = 64
  c.model.vit.n_layers = 4
  c.model.vit.n_heads = 4
  c.model.mamba.d_model = 64
  c.model.mamba.n_layers = 4
  c.model.mamba.d_state = 16
  c.eval.batch_size = 1000
  c.sweep.architectures = ("fc_small", "fc_medium", "fc_large", "cnn", "vit", "mamba")
  c.sweep.latent_dims = (2, 4, 8, 16, 32, 64, 128)
  return c
