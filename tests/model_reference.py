"""Independent float64 NumPy forward passes of torchvision's resnet18,
resnet50, vgg16 and mobilenet_v2, evaluated straight from a torchvision-style
state_dict: every conv followed by an explicit batch norm with running
statistics, separate activations, residual adds, pools, flatten and linear,
all in NCHW float64, as torchvision's modules compute them in eval mode.

Written from torchvision's module definitions, not from paskdnn.models (no
folding, no graph); like reference.py it does not import paskdnn.
"""
from __future__ import annotations

import numpy as np

from reference import _conv2d_raw, adaptive_avg_pool2d_ref, max_pool2d_ref

EPS = 1e-5

__all__ = ["resnet18", "resnet50", "vgg16", "vgg16_features", "vgg16_classifier", "mobilenet_v2", "FORWARD"]


def _w(sd, key):
    return np.asarray(sd[key], np.float64)


def conv(sd, prefix, x, stride=1, padding=0, groups=1, bias=False):
    w = _w(sd, prefix + ".weight")
    y = _conv2d_raw(x, w, (stride, stride), ((padding, padding), (padding, padding)), (1, 1), groups)
    if bias:
        y = y + _w(sd, prefix + ".bias")[None, :, None, None]
    return y


def batch_norm(sd, prefix, x):
    mean = _w(sd, prefix + ".running_mean")[None, :, None, None]
    var = _w(sd, prefix + ".running_var")[None, :, None, None]
    gamma = _w(sd, prefix + ".weight")[None, :, None, None]
    beta = _w(sd, prefix + ".bias")[None, :, None, None]
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def relu(x):
    return np.maximum(x, 0.0)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def linear(sd, prefix, x):
    return x @ _w(sd, prefix + ".weight").T + _w(sd, prefix + ".bias")


def flatten(x):
    return x.reshape(x.shape[0], -1)


# ---- ResNet -----------------------------------------------------------------------


def _basic_block(sd, p, x, stride):
    out = relu(batch_norm(sd, p + ".bn1", conv(sd, p + ".conv1", x, stride, 1)))
    out = batch_norm(sd, p + ".bn2", conv(sd, p + ".conv2", out, 1, 1))
    identity = x
    if p + ".downsample.0.weight" in sd:
        identity = batch_norm(sd, p + ".downsample.1", conv(sd, p + ".downsample.0", x, stride, 0))
    return relu(out + identity)


def _bottleneck(sd, p, x, stride):
    out = relu(batch_norm(sd, p + ".bn1", conv(sd, p + ".conv1", x, 1, 0)))
    out = relu(batch_norm(sd, p + ".bn2", conv(sd, p + ".conv2", out, stride, 1)))  # v1.5
    out = batch_norm(sd, p + ".bn3", conv(sd, p + ".conv3", out, 1, 0))
    identity = x
    if p + ".downsample.0.weight" in sd:
        identity = batch_norm(sd, p + ".downsample.1", conv(sd, p + ".downsample.0", x, stride, 0))
    return relu(out + identity)


def _resnet(sd, x, block, layers):
    x = np.asarray(x, np.float64)
    x = relu(batch_norm(sd, "bn1", conv(sd, "conv1", x, 2, 3)))
    x = max_pool2d_ref(x, 3, 2, 1)
    for li, n in enumerate(layers, start=1):
        for bi in range(n):
            x = block(sd, f"layer{li}.{bi}", x, 2 if (li > 1 and bi == 0) else 1)
    x = adaptive_avg_pool2d_ref(x, 1)
    return linear(sd, "fc", flatten(x))


def resnet18(sd, x):
    return _resnet(sd, x, _basic_block, [2, 2, 2, 2])


def resnet50(sd, x):
    return _resnet(sd, x, _bottleneck, [3, 4, 6, 3])


# ---- VGG-16 -------------------------------------------------------------------------

_VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features(sd, x):
    """model.features (Conv2d, ReLU pairs and MaxPool2d(2, 2) in one Sequential)."""
    x = np.asarray(x, np.float64)
    i = 0
    for v in _VGG_D:
        if v == "M":
            x = max_pool2d_ref(x, 2, 2)
            i += 1
        else:
            x = relu(conv(sd, f"features.{i}", x, 1, 1, bias=True))
            i += 2
    return x


def vgg16_classifier(sd, x):
    """model.avgpool, flatten, model.classifier (dropout is the identity in eval)."""
    x = adaptive_avg_pool2d_ref(np.asarray(x, np.float64), 7)
    x = flatten(x)
    x = relu(linear(sd, "classifier.0", x))
    x = relu(linear(sd, "classifier.3", x))
    return linear(sd, "classifier.6", x)


def vgg16(sd, x):
    return vgg16_classifier(sd, vgg16_features(sd, x))


# ---- MobileNetV2 --------------------------------------------------------------------

_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _conv_bn_act(sd, p, x, stride=1, groups=1, act=relu6):
    """Conv2dNormActivation: p.0 Conv2d (no bias), p.1 BatchNorm2d, p.2 ReLU6."""
    k = _w(sd, p + ".0.weight").shape[-1]
    return act(batch_norm(sd, p + ".1", conv(sd, p + ".0", x, stride, (k - 1) // 2, groups)))


def mobilenet_v2(sd, x):
    x = np.asarray(x, np.float64)
    x = _conv_bn_act(sd, "features.0", x, 2)
    cin, idx = 32, 1
    for t, c, n, s in _MBV2:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            hidden = cin * t
            h, j = x, 0
            if t != 1:
                h = _conv_bn_act(sd, f"{p}.{j}", h)
                j += 1
            h = _conv_bn_act(sd, f"{p}.{j}", h, stride, groups=hidden)
            h = batch_norm(sd, f"{p}.{j + 2}", conv(sd, f"{p}.{j + 1}", h))
            x = x + h if (stride == 1 and cin == c) else h
            cin, idx = c, idx + 1
    x = _conv_bn_act(sd, f"features.{idx}", x)
    x = adaptive_avg_pool2d_ref(x, 1)
    return linear(sd, "classifier.1", flatten(x))


FORWARD = {"resnet18": resnet18, "resnet50": resnet50, "vgg16": vgg16, "mobilenet_v2": mobilenet_v2}
