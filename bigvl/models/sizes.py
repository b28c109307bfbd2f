"""Named transformer sizes (big_vision's ViT table) and parsing of variant strings like "B/16".

The same table sizes the text tower ("B" = width 768, 12 layers, as big_vision's text
transformer); open_clip's CLIP text towers are narrower and are given explicitly in configs.
"""
from __future__ import annotations

import dataclasses

# Reference: big_vision vit.decode_variant (Table 2 of arXiv:2106.04560, plus So400m).
#          width, depth, mlp_dim, num_heads
_SIZES: dict[str, tuple[int, int, int, int]] = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "So400m": (1152, 27, 4304, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
    "e": (1792, 56, 15360, 16),
}
SIZE_NAMES = tuple(_SIZES)
CUSTOM = ("custom", "")  # variant names meaning "every dimension is given explicitly"


@dataclasses.dataclass(frozen=True)
class TransformerSize:
    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int = 0  # 0 for text towers / when the variant names none

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


def resolve_size(variant: str, *, width: int = 0, depth: int = 0, mlp_dim: int = 0, num_heads: int = 0,
                 patch_size: int = 0, what: str = "model") -> TransformerSize:
    """Variant string ("B/16", "So400m/14", "L", "custom") plus explicit overrides → TransformerSize.

    A non-zero override wins over the variant's value. With variant "custom" (or "") every
    dimension must be given. Raises ValueError naming `what` for unknown names or missing or
    inconsistent dimensions (width not divisible by num_heads).
    """
    name, _, patch = variant.partition("/")
    if name in CUSTOM:
        base = (0, 0, 0, 0)
    elif name in _SIZES:
        base = _SIZES[name]
    else:
        raise ValueError(f"{what}: unknown variant {variant!r}; sizes are {', '.join(SIZE_NAMES)} "
                         f"(optionally '/PATCH', e.g. 'B/16'), or 'custom' with explicit dimensions")
    if patch and not patch.isdigit():
        raise ValueError(f"{what}: variant {variant!r} has a non-integer patch size {patch!r}")
    size = TransformerSize(width=width or base[0], depth=depth or base[1], mlp_dim=mlp_dim or base[2],
                           num_heads=num_heads or base[3], patch_size=patch_size or int(patch or 0))
    missing = [f.name for f in dataclasses.fields(size) if f.name != "patch_size" and getattr(size, f.name) <= 0]
    if missing:
        raise ValueError(f"{what}: variant {variant!r} needs explicit {', '.join(missing)} (> 0)")
    if size.width % size.num_heads:
        raise ValueError(f"{what}: width {size.width} is not divisible by num_heads {size.num_heads}")
    return size
