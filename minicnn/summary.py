"""model.summary(): the table Keras 3 prints (keras/src/utils/summary_utils.py), 80 columns."""

from __future__ import annotations

import re

# Column widths of Keras's table on an 80-column terminal (line_length 76, positions .45/.80/1).
WIDTHS = (33, 24, 15)


def readable_memory_size(nbytes: float) -> str:
    """Keras's byte formatter: 1024-based units, two decimals."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes / 1024 < 1:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def _rule(left, mid, right, fill):
    return left + mid.join(fill * w for w in WIDTHS) + right


def _wrap(text: str, width: int) -> list[str]:
    """The lines rich (which draws Keras's table) wraps a cell into: word by word, and a word
    wider than the column on a line of its own, cut to the width with an ellipsis (rich's
    divide_line with fold=False, then truncate with overflow='ellipsis', a Column's default).
    A layer named max_pooling2d_400 puts its "(MaxPooling2D)" on a second line."""
    breaks, used = [], 0
    for match in re.finditer(r"\s*\S+\s*", text):  # a word and the blanks after it
        start, word = match.start(), match.group()
        length = len(word.rstrip())
        if width - used >= length:
            used += len(word)
            continue
        if start and (used or length > width):
            breaks.append(start)
        used = len(word)
    bounds = [0, *breaks, len(text)]
    lines = [text[a:b].rstrip() for a, b in zip(bounds, bounds[1:])] or [""]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines]


def _row(cells, bar="│") -> list[str]:
    """One table row: the cells wrapped as rich wraps them, so possibly several lines."""
    w1, w2, w3 = (w - 2 for w in WIDTHS)
    wrapped = [_wrap(cell, w) for cell, w in zip(cells, (w1, w2, w3))]
    height = max(map(len, wrapped))
    a, b, c = ([*lines, *[""] * (height - len(lines))] for lines in wrapped)
    return [f"{bar} {a[i]:<{w1}} {bar} {b[i]:<{w2}} {bar} {c[i]:>{w3}} {bar}"
            for i in range(height)]


def format_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def summary_lines(model) -> list[str]:
    """The lines of model.summary() for a built Sequential model."""
    lines = [f'Model: "{model.name}"', _rule("┏", "┳", "┓", "━"),
             *_row(("Layer (type)", "Output Shape", "Param #"), "┃"), _rule("┡", "╇", "┩", "━")]
    shapes = model.output_shapes()
    for i, (layer, shape) in enumerate(zip(model.layers, shapes)):
        lines.extend(_row((f"{layer.name} ({type(layer).__name__})",
                           format_shape((None, *shape)), f"{layer.count_params():,}")))
        if i < len(model.layers) - 1:
            lines.append(_rule("├", "┼", "┤", "─"))
    lines.append(_rule("└", "┴", "┘", "─"))
    weights = [(k in layer.non_trainable, p) for layer in model.layers
               for k, p in layer.params.items()]
    trainable = sum(p.size for frozen, p in weights if not frozen)
    t_bytes = sum(p.nbytes for frozen, p in weights if not frozen)
    frozen = sum(p.size for fz, p in weights if fz)
    f_bytes = sum(p.nbytes for fz, p in weights if fz)
    opt_count, opt_bytes = model.optimizer_param_count()
    total = trainable + frozen + opt_count
    total_bytes = t_bytes + f_bytes + opt_bytes
    lines.append(f" Total params: {total:,} ({readable_memory_size(total_bytes)})")
    lines.append(f" Trainable params: {trainable:,} ({readable_memory_size(t_bytes)})")
    lines.append(f" Non-trainable params: {frozen:,} ({readable_memory_size(f_bytes)})")
    if opt_count:
        lines.append(f" Optimizer params: {opt_count:,} ({readable_memory_size(opt_bytes)})")
    return lines
