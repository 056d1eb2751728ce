"""CaffeNet (BVLC reference), the encoder the original priors invert, with the module names of the converted
`caffenet.pt` from the Hugging Face repo binxu/DeePSim_DosovitskiyBrox2016. Input: BGR, mean-subtracted, 227 px."""
from collections import OrderedDict

from torch import nn


def caffenet(num_classes: int = 1000) -> nn.Sequential:
    def pool():
        return nn.MaxPool2d(3, 2, ceil_mode=True)

    def lrn():
        return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

    # ReLUs are not in place so that activations read by hooks are never overwritten afterwards.
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 96, 11, 4)), ("relu1", nn.ReLU()), ("pool1", pool()), ("norm1", lrn()),
        ("conv2", nn.Conv2d(96, 256, 5, 1, 2, groups=2)), ("relu2", nn.ReLU()), ("pool2", pool()), ("norm2", lrn()),
        ("conv3", nn.Conv2d(256, 384, 3, 1, 1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(384, 384, 3, 1, 1, groups=2)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(384, 256, 3, 1, 1, groups=2)), ("relu5", nn.ReLU()), ("pool5", pool()),
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(9216, 4096)), ("relu6", nn.ReLU()),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()),
        ("fc8", nn.Linear(4096, num_classes)),
    ]))
