r"""Study B: in-context learning of relu 2nn (DESIGN.md 6B); settings in icl_base.py.

Paper scale (GPU/TPU):  python -m experiments.main \
    --config=experiments/configs/icl_relu_2nn.py --workdir=runs/icl_relu_2nn
Small CPU run:          python -m experiments.main \
    --config=experiments/configs/icl_relu_2nn.py:cpu --workdir=runs/icl_relu_2nn_cpu
"""

from experiments.configs import icl_base


def get_config(variant="paper"):
  return icl_base.get_config("relu_2nn", variant)
