r"""Study C on CIFAR-10 in colour, as the paper (Rathjens & Wiskott 2024) runs it: RGB 32 x 32
images (config.data.channels = 3), the paper's augmentation of the training batches
(torchvision's RandomRotation(15): config.data.random_rotation_degrees = 15, see
experiments/data/augment.py) and its training (three Adam optimisers at lr 1e-3, batch 512, 10
epochs: 977 steps per run), with its CIFAR-10 network, cnn_large.

CIFAR-10 must be prepared as a TFDS array_record data set in data_dir; nothing is downloaded
here, and a missing set fails at once (well under a second) with the command that prepares it
(`tfds build cifar10 --file_format=array_record --data_dir=DIR` on a machine with network
access). For a GPU or TPU host (data parallel over its devices):

  python -m experiments.studies.tradeoff.sweep \
      --config=experiments/studies/tradeoff/configs/cifar10.py --workdir=runs/tradeoff_cifar10 \
      --config.data.data_dir=/path/to/tensorflow_datasets

The grid: cnn_large x 7 latent sizes (2..128 channels of its 4 x 4 latent map; the paper's 128) x
8 lambdas, each for the 3 seeds of config.sweep.seeds (the outer loop), then tradeoff.csv (one row
per run), tradeoff_summary.csv (means over seeds with 90% bootstrap bands), tradeoff.png and
reconstructions.png (in colour; see sweep.py). A sweep interrupted (or preempted) resumes with the
same command.

From the paper's code (wiskott-lab/classification-reconstruction-encoder: utils.get_datasets,
train_cre.py): the encoder's input is the rotated image and the decoder's MSE target the
unrotated one; the test images are never rotated. Departures: one rotation angle per example (the
paper's code draws one per batch, applying the transform to the batch tensor); the last partial
batch of an epoch is not dropped (the stream runs on into the next epoch), so 10 epochs are 977
steps where the paper's drop_last loader makes 970. The paper's code holds one set of training
settings (epochs 10, batch 512, lr 1e-3) for every data set; these are they. The converted
training split is held in memory: 50000 x 32 x 32 x 3 float32, about 0.6 GB.
"""

from experiments.studies.tradeoff.configs import mnist


def get_config():
  c = mnist.get_config()
  c.data.name = "cifar10"
  c.data.channels = 3  # RGB, the paper's
  c.data.image_size = 32  # native size
  c.data.train_examples = 50_000
  c.data.random_rotation_degrees = 15.0  # the paper's RandomRotation(15), training batches only
  c.batch_size = 512  # the paper's
  c.num_epochs = 10  # the paper's
  c.optimizer.learning_rate = 1e-3  # the paper's, for each of the three optimisers
  c.model.architecture = "cnn_large"  # the paper's CIFAR-10 network
  c.model.latent_dim = 128  # cnn_large: the latent feature map's channels, the paper's 128
  c.sweep.architectures = ("cnn_large",)
  c.sweep.extra_points = ()
  c.sweep.seeds = (0, 1, 2)  # training seeds (the outer loop): bands over seeds
  return c
