"""Default names, as Keras gives them: 'dense', 'dense_1', ..., per process until cleared.

A module of its own (nothing from minicnn imported) so that the layers, the model and
minicnn.backend (clear_session) can all use it.
"""

from __future__ import annotations

import re
from collections import defaultdict

_NAME_COUNTS: defaultdict[str, int] = defaultdict(int)


def unique_name(base: str) -> str:
    """'dense', then 'dense_1', 'dense_2', ... per process, as Keras names layers."""
    n = _NAME_COUNTS[base]
    _NAME_COUNTS[base] += 1
    return base if n == 0 else f"{base}_{n}"


def clear_session() -> None:
    """Restart layer and model naming from 'conv2d', 'dense', 'sequential', as Keras's."""
    _NAME_COUNTS.clear()


def snake_case(name: str) -> str:
    """'MaxPooling2D' -> 'max_pooling2d', Keras's rule for default layer names."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
