"""Optimizer parameter groups with weight decay off for normalization weights and biases.

Transformer recipes (ViT, DeiT) decay only the weight matrices and convolution kernels: every
1-d parameter (norm scales and shifts, biases) and the model's own ``no_weight_decay()`` names
(a ViT's position embedding and class token) get ``weight_decay = 0``. This is timm's rule,
taken from timm. The groups go to any torch optimizer (or to the base optimizer of the SAM
family), whose per-group ``weight_decay`` then overrides its default.
"""

import torch
from timm.optim import param_groups_weight_decay
from torch import nn


def weight_decay_groups(
    model: nn.Module, *, weight_decay: float, exclude_norm_and_bias: bool = True
) -> list[dict]:
    """``[{"params": ..., "weight_decay": ...}, ...]`` for ``torch.optim`` constructors.

    With ``exclude_norm_and_bias=False`` this is one group with every trainable parameter at
    ``weight_decay``, i.e. the same as passing ``model.parameters()``.
    """
    if not exclude_norm_and_bias:
        params: list[torch.nn.Parameter] = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": weight_decay}]
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
