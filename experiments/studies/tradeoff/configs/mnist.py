r"""Study C at the paper's scale (Rathjens & Wiskott 2024): MNIST, the paper's MNIST families
(the vit on request, see the sweep's comment below) and mamba, a latent grid, the paper's training
(Adam lr 1e-3, batch 512, 10 epochs: 1172 steps per run).

5 architectures x 7 latent sizes x 8 lambdas = 280 points x 3 seeds (840 runs); for a GPU or TPU
host (data parallel over its devices). MNIST must be prepared as a TFDS array_record data set in
data_dir (nothing is downloaded here; a missing set fails at once with the command that prepares
it):

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/mnist.py --workdir=runs/tradeoff_mnist \
      --config.data.data_dir=/path/to/tensorflow_datasets

Each grid point runs for each of config.sweep.seeds (0, 1, 2; the outer loop), and the sweep
writes tradeoff.csv (one row per run), tradeoff_summary.csv (means over seeds with 90% bootstrap
bands), tradeoff.png and reconstructions.png (see sweep.py). Fashion-MNIST:
--config.data.name=fashion_mnist (same sizes). CIFAR-10 in colour with the paper's rotation:
configs/cifar10.py (grayscale CIFAR-10: --config.data.name=cifar10 --config.data.image_size=32
--config.data.train_examples=50000 here). A sweep interrupted (or preempted) resumes with the
same command.
"""

from experiments.studies.tradeoff.configs import digits


def get_config():
  c = digits.get_config()
  c.data.name = "mnist"
  c.data.channels = 1  # grayscale data
  c.data.image_size = 28  # native size
  c.data.train_examples = 60_000
  c.batch_size = 512  # the paper's
  c.num_epochs = 10  # the paper's
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  # The paper's families at the paper's sizes (its code, for 28 x 28; networks.py lists them).
  c.model.fc_small.hidden = ()
  c.model.fc_medium.hidden = (616,)
  c.model.fc_large.hidden = (716, 684, 616)
  c.model.cnn_small.pool = (True, True, True)  # 28 -> 14 -> 8 -> 4: latent latent_dim x 4 x 4
  c.model.cnn_small.pool_padding = (0, 1, 0)  # the paper's second pool pads by 1 (14 -> 8)
  c.model.cnn_large.pool = (False, False, True, True, True)  # 32 -> 4 (CIFAR-10); 28 -> 3
  c.model.cnn_large.pool_padding = (0, 0, 0, 0, 0)
  c.model.vit.patch_size = 7  # 4 x 4 = 16 patches, latent 17 tokens of latent_dim
  # This project's earlier families at their earlier MNIST sizes.
  c.model.project_fc.small = (256,)
  c.model.project_fc.medium = (512, 256)
  c.model.project_fc.large = (1024, 512, 256)
  c.model.project_cnn.channels = (32, 64)  # 28 -> 14 -> 7
  c.model.patch_size = 4  # mamba, project_vit: 7 x 7 = 49 patches
  c.model.project_vit.d_model = 64
  c.model.project_vit.n_layers = 4
  c.model.project_vit.n_heads = 4
  c.model.mamba.d_model = 64
  c.model.mamba.n_layers = 4
  c.model.mamba.d_state = 16
  c.eval.batch_size = 1000
  # the paper's MNIST families and mamba; vit needs a latent_dim divisible by 4 (its token
  # dimension): --config.sweep.architectures='("vit",)' --config.sweep.latent_dims='(4,8,16)'
  c.sweep.architectures = ("fc_small", "fc_medium", "fc_large", "cnn_small", "mamba")
  c.sweep.latent_dims = (2, 4, 8, 16, 32, 64, 128)
  c.sweep.extra_points = ()  # cnn_small's 4 x 4 x z: equal sizes are in the grid (z 2, 4, 8)
  c.sweep.seeds = (0, 1, 2)  # training seeds (the outer loop): bands over seeds
  return c
