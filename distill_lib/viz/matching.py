"""Figures of notebook 05's matching part: attention maps side by side."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def plot_attention_maps(images: torch.Tensor, maps: dict, title: str = ""):
    """One row per image: the image, then each labelled attention map (batch x H x W) beside it.

    The maps of one row share one colour scale (0 to the row's largest value), so that a brighter
    cell means more attention in every panel of the row, not only within its own panel.
    """
    rows, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.7 * rows + 0.3), squeeze=False)
    for r in range(rows):
        top = max(float(batch[r].max()) for batch in maps.values())
        panels = [("image", images[r, 0])] + [(label, batch[r]) for label, batch in maps.items()]
        for c, (label, panel) in enumerate(panels):
            scale = {"cmap": "gray"} if c == 0 else {"cmap": "magma", "vmin": 0.0, "vmax": top}
            axes[r][c].imshow(panel.detach().cpu(), **scale)
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(label, fontsize=8)
    fig.suptitle(title + ("\n" if title else "") + "colour: attention, one scale per row (dark 0, bright the row's largest)",
                 fontsize=8)
    fig.tight_layout()
    return fig
