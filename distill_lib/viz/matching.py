"""Figures of notebook 05's matching part: attention maps side by side."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def plot_attention_maps(images: torch.Tensor, maps: dict, title: str = ""):
    """One row per image: the image, then each labelled attention map (batch x H x W) beside it."""
    rows, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.7 * rows), squeeze=False)
    for r in range(rows):
        panels = [("image", images[r, 0])] + [(label, batch[r]) for label, batch in maps.items()]
        for c, (label, panel) in enumerate(panels):
            axes[r][c].imshow(panel.detach().cpu(), cmap="gray" if c == 0 else "magma")
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
