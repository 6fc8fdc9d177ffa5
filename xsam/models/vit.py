"""Vision Transformers from timm (Dosovitskiy et al., arXiv:2010.11929).

``vit_cifar``: timm's VisionTransformer on 32x32 inputs with 4x4 patches (64 tokens + class
token) and ViT-S's width (384), depth (12) and heads (6). ``vit_s16``: timm's
``vit_small_patch16_224`` (ViT-S/16) for ImageNet. Both randomly initialized.
"""

import timm
from timm.models.vision_transformer import VisionTransformer


def vit_cifar(
    *,
    num_classes: int = 10,
    image_size: int = 32,
    in_channels: int = 3,
    patch_size: int = 4,
    embed_dim: int = 384,
    depth: int = 12,
    num_heads: int = 6,
    drop_path_rate: float = 0.0,
) -> VisionTransformer:
    """ViT with small patches for small images (ViT-S/4 at the defaults)."""
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        in_chans=in_channels,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        drop_path_rate=drop_path_rate,
    )


def vit_s16(
    *,
    num_classes: int = 1000,
    image_size: int = 224,
    in_channels: int = 3,
    drop_path_rate: float = 0.0,
) -> VisionTransformer:
    """timm's ViT-S/16, untrained (the DeiT recipe uses ``drop_path_rate=0.1``)."""
    return timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        num_classes=num_classes,
        img_size=image_size,
        in_chans=in_channels,
        drop_path_rate=drop_path_rate,
    )
