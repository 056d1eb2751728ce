"""ImageNet-1k class names, read from torchvision's metadata (no download needed)."""
from functools import lru_cache


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def find_classes(query: str) -> list[tuple[int, str]]:
    """Indices and names of the classes whose name contains `query` (case-insensitive)."""
    q = query.strip().lower()
    return [(i, n) for i, n in enumerate(class_names()) if q in n.lower()]
