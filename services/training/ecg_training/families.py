"""The three model families, as Keras 3 functional models over (window, n_leads) input of any length and lead count.

- ``cnn``: a compact 1-D CNN (four conv-batchnorm-ReLU-pool stages, global average pooling).
- ``resnet``: a 1-D residual network in the spirit of Ribeiro et al. 2020 (Nat. Commun. 11, 1760): a strided
  convolutional stem and four residual blocks that each downsample by 4, max-pool + 1x1 conv skips.
- ``inception``: InceptionTime (Fawaz et al. 2020): inception modules (bottleneck, three kernel sizes and a max-pool
  branch), a residual shortcut every three modules; a strided stem keeps it affordable on CPU for long windows.
- ``leadwise``: one single-lead encoder (the ``resnet`` trunk over one lead), shared by every lead, the leads'
  embeddings side by side into the head. Its encoder can be pretrained on single-lead recordings of another data set
  (``pretrain`` in the request, :func:`encoder_weights` / :func:`load_encoder`). Needs a fixed window.

Every model ends in a float32 softmax layer named ``probabilities`` (also under a mixed-precision policy), so the ONNX
export's output is ``probabilities`` and its input ``ecg``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import keras
from keras import layers

from ecg_shared.model_metadata import INPUT_NAME, OUTPUT_NAME

MIXED_PRECISION_POLICY = "mixed_bfloat16"


def _head(x, n_classes: int, dropout: float = 0.3):
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(n_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name=OUTPUT_NAME)(x)


def _conv_bn_relu(x, filters: int, kernel: int, strides: int = 1, name: str = ""):
    x = layers.Conv1D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_cnn(n_leads: int, n_classes: int, window: int | None = None) -> keras.Model:
    inputs = keras.Input((window, n_leads), name=INPUT_NAME)
    x = inputs
    for i, (filters, kernel) in enumerate([(32, 11), (64, 9), (96, 7), (128, 5)]):
        x = _conv_bn_relu(x, filters, kernel, name=f"stage{i}")
        x = layers.MaxPooling1D(4 if i < 3 else 2, padding="same", name=f"stage{i}_pool")(x)
    return keras.Model(inputs, _head(x, n_classes), name="cnn")


def _residual_block(x, skip, filters: int, kernel: int, downsample: int, dropout: float, name: str):
    """Ribeiro et al.'s block: conv-BN-ReLU-dropout-strided conv, added to the pooled skip, then BN-ReLU-dropout."""
    skip = layers.MaxPooling1D(downsample, padding="same", name=f"{name}_skip_pool")(skip)
    if skip.shape[-1] != filters:
        skip = layers.Conv1D(filters, 1, use_bias=False, name=f"{name}_skip_conv")(skip)
    x = layers.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Dropout(dropout, name=f"{name}_drop1")(x)
    x = layers.Conv1D(filters, kernel, strides=downsample, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.Add(name=f"{name}_add")([x, skip])
    skip = x
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.ReLU(name=f"{name}_relu2")(x)
    x = layers.Dropout(dropout, name=f"{name}_drop2")(x)
    return x, skip


def _resnet_trunk(inputs):
    # The stem halves the rate (Ribeiro et al. run their first block at full rate; halving it keeps the network
    # three times cheaper on CPU at the same receptive field in seconds, with little effect on accuracy).
    x = _conv_bn_relu(inputs, 32, 15, strides=2, name="stem")
    skip = x
    for i, filters in enumerate([32, 64, 96, 128]):
        x, skip = _residual_block(x, skip, filters, kernel=15, downsample=4, dropout=0.2, name=f"block{i}")
    return x


def build_resnet(n_leads: int, n_classes: int, window: int | None = None) -> keras.Model:
    inputs = keras.Input((window, n_leads), name=INPUT_NAME)
    return keras.Model(inputs, _head(_resnet_trunk(inputs), n_classes), name="resnet")


LEAD_ENCODER = "lead_encoder"


def build_leadwise(n_leads: int, n_classes: int, window: int | None = None) -> keras.Model:
    """The ``resnet`` trunk as a single-lead encoder (window samples -> 128 values), applied to each lead with the
    same weights; the head sees the leads' embeddings side by side, so it knows which lead said what."""
    if window is None:
        raise ValueError("the leadwise family needs a fixed window")
    lead = keras.Input((window, 1), name="lead")
    embedding = layers.GlobalAveragePooling1D(name="lead_pool")(_resnet_trunk(lead))
    encoder = keras.Model(lead, embedding, name=LEAD_ENCODER)
    inputs = keras.Input((window, n_leads), name=INPUT_NAME)
    x = layers.Permute((2, 1), name="leads_first")(inputs)
    x = layers.Reshape((n_leads, window, 1), name="one_lead_each")(x)
    x = layers.TimeDistributed(encoder, name="each_lead")(x)
    x = layers.Flatten(name="embeddings")(x)
    x = layers.Dropout(0.3, name="head_dropout")(x)
    x = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, layers.Activation("softmax", dtype="float32", name=OUTPUT_NAME)(x), name="leadwise")


def encoder_weights(model: keras.Model) -> list:
    """The single-lead encoder's weights of a ``leadwise`` model (of any lead count)."""
    return model.get_layer("each_lead").layer.get_weights()


def load_encoder(model: keras.Model, weights: list) -> None:
    """Start a ``leadwise`` model's encoder from ``weights`` (:func:`encoder_weights` of another one)."""
    model.get_layer("each_lead").layer.set_weights(weights)


def _inception_module(x, filters: int, kernels: tuple[int, ...], name: str):
    bottleneck = layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_bottleneck")(x)
    branches = [
        layers.Conv1D(filters, k, padding="same", use_bias=False, name=f"{name}_conv{k}")(bottleneck) for k in kernels
    ]
    pooled = layers.MaxPooling1D(3, strides=1, padding="same", name=f"{name}_maxpool")(x)
    branches.append(layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_poolconv")(pooled))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_inception(n_leads: int, n_classes: int, window: int | None = None) -> keras.Model:
    inputs = keras.Input((window, n_leads), name=INPUT_NAME)
    x = _conv_bn_relu(inputs, 32, 7, strides=2, name="stem")
    x = layers.MaxPooling1D(2, padding="same", name="stem_pool")(x)
    shortcut = x
    for i in range(6):
        x = _inception_module(x, 24, (31, 15, 7), name=f"inception{i}")
        if i % 3 == 2:
            projected = layers.Conv1D(x.shape[-1], 1, use_bias=False, name=f"shortcut{i}_conv")(shortcut)
            projected = layers.BatchNormalization(name=f"shortcut{i}_bn")(projected)
            x = layers.ReLU(name=f"shortcut{i}_relu")(layers.Add(name=f"shortcut{i}_add")([x, projected]))
            x = layers.MaxPooling1D(4, padding="same", name=f"shortcut{i}_pool")(x)
            shortcut = x
    return keras.Model(inputs, _head(x, n_classes), name="inception")


FAMILIES: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "resnet": build_resnet,
    "inception": build_inception,
    "leadwise": build_leadwise,
}


@contextmanager
def dtype_policy(name: str):
    """Build layers under ``name`` (e.g. mixed_bfloat16), restoring the previous global policy afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(
    family: str, n_leads: int, n_classes: int, window: int | None = None, mixed_precision: bool = False
) -> keras.Model:
    """A fresh, uncompiled model of ``family``; under ``mixed_bfloat16`` if asked (variables stay float32)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    with dtype_policy(MIXED_PRECISION_POLICY if mixed_precision else "float32"):
        return FAMILIES[family](n_leads, n_classes, window)


def float32_copy(model: keras.Model, family: str, n_leads: int, n_classes: int, window: int) -> keras.Model:
    """The same network in float32 with the trained weights, at a fixed window: what gets exported to ONNX."""
    copy = build_model(family, n_leads, n_classes, window, mixed_precision=False)
    copy.set_weights(model.get_weights())
    return copy
