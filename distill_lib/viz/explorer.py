"""An explorer of softmax temperature: one test image, the teacher's and a student's softened
predictions, their entropy, and the KD loss split into its hard and soft parts.

:class:`TemperatureExplorer` keeps its state in plain attributes (``temperature``, ``alpha``,
``index``) and derives everything else from them, so a test or a learner can inspect it.
``widget()`` adds ipywidgets controls (a log-scale temperature slider, an alpha slider, a class
picker and an image slider); ``static_figure()`` draws the same content for a few temperatures,
for headless runs where no widget callback ever fires.
"""
from __future__ import annotations

import contextlib
import io
import math

import matplotlib.pyplot as plt
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core import checks
from ..lessons.temperature import entropy_bits, loss_split
from ..methods.kd import soft_targets
from .temperature import as_picture

T_MIN, T_MAX = 0.1, 50.0  # the slider's range (log scale)
ANY_CLASS = -1


class TemperatureExplorer:
    """Teacher vs student soft targets on one test image at temperature T (see module doc)."""

    def __init__(self, teacher_logits, student_logits, images, labels, classes, *,
                 temperature: float = 1.0, alpha: float = 0.9, index: int = 0):
        if teacher_logits.ndim != 2 or teacher_logits.shape != student_logits.shape:
            raise ValueError(f"teacher_logits {tuple(teacher_logits.shape)} and student_logits "
                             f"{tuple(student_logits.shape)} must both be samples x classes")
        count, num_classes = teacher_logits.shape
        if len(images) != count or len(labels) != count or len(classes) != num_classes:
            raise ValueError(f"need one image and label per row of logits ({count}) and one class name "
                             f"per column ({num_classes}); got {len(images)} images, {len(labels)} "
                             f"labels, {len(classes)} class names")
        self.teacher_logits, self.student_logits = teacher_logits.float(), student_logits.float()
        self.images, self.labels, self.classes = images, labels, list(classes)
        self.temperature, self.alpha, self.index = 1.0, 0.9, 0
        self._controls = None  # the ipywidgets, once widget() has been called
        self._syncing = False
        self.figure, self._artists = self._build_figure()
        self.set(temperature=temperature, alpha=alpha, index=index)

    # ------------------------------------------------------------------ state
    def set(self, *, temperature: float | None = None, alpha: float | None = None,
            index: int | None = None) -> None:
        """Change any of the three settings (checked first), then redraw."""
        if temperature is not None:
            checks.positive_number("temperature", temperature)
            if not T_MIN <= temperature <= T_MAX:
                raise ValueError(f"temperature must be in [{T_MIN:g}, {T_MAX:g}] (the explorer's range); "
                                 f"got {temperature:g}")
        if alpha is not None:
            checks.fraction("alpha", alpha)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                                  or not 0 <= index < len(self.labels)):
            raise ValueError(f"index must be an integer in [0, {len(self.labels) - 1}]; got {index!r}")
        self.temperature = float(temperature) if temperature is not None else self.temperature
        self.alpha = float(alpha) if alpha is not None else self.alpha
        self.index = int(index) if index is not None else self.index
        self._draw()
        self._sync_controls()

    @property
    def label(self) -> int:
        return int(self.labels[self.index])

    @property
    def teacher_probs(self) -> torch.Tensor:
        return soft_targets(self.teacher_logits[self.index], self.temperature)

    @property
    def student_probs(self) -> torch.Tensor:
        return soft_targets(self.student_logits[self.index], self.temperature)

    @property
    def entropy(self) -> dict:
        """Entropy in bits of the teacher's and the student's softened predictions."""
        return {"teacher": float(entropy_bits(self.teacher_probs)),
                "student": float(entropy_bits(self.student_probs))}

    @property
    def loss(self) -> dict:
        """This image's KD loss at (T, alpha): ``hard``, ``soft``, ``total``, ``ce``, ``kl``."""
        i = slice(self.index, self.index + 1)
        return loss_split(self.student_logits[i], self.teacher_logits[i], self.labels[i].long(),
                          temperature=self.temperature, alpha=self.alpha)

    @property
    def plotted(self) -> dict:
        """The bar heights currently drawn (read back from the figure, not recomputed)."""
        return {name: torch.tensor([bar.get_height() for bar in self._artists[name]])
                for name in ("teacher", "student")}

    @property
    def readout(self) -> str:
        loss, entropy = self.loss, self.entropy
        return (f"T={self.temperature:.3f} · alpha={self.alpha:.2f} · test image #{self.index} "
                f"({self.classes[self.label]}) · entropy: teacher {entropy['teacher']:.2f} bits, "
                f"student {entropy['student']:.2f} bits · KD loss: hard (1-alpha)·CE {loss['hard']:.3f} "
                f"+ soft alpha·T²·KL {loss['soft']:.3f} = {loss['total']:.3f}")

    # ------------------------------------------------------------------ drawing
    def _build_figure(self):
        figure = Figure(figsize=(11.5, 3.0), layout="constrained")
        FigureCanvasAgg(figure)  # a figure of its own: pyplot never shows it twice
        grid = figure.add_gridspec(1, 4, width_ratios=[1.0, 2.4, 2.4, 1.1])
        ax_image, ax_teacher, ax_student, ax_loss = (figure.add_subplot(grid[0, k]) for k in range(4))
        ax_image.axis("off")
        n = len(self.classes)
        artists = {"image": ax_image.imshow(self._image(0), cmap="gray_r", vmin=0, vmax=1),
                   "image_title": ax_image.set_title("", fontsize=9)}
        for name, ax in (("teacher", ax_teacher), ("student", ax_student)):
            artists[name] = ax.bar(range(n), [0.0] * n)
            ax.set_xticks(range(n), self.classes, rotation=70, fontsize=7)
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
            artists[f"{name}_title"] = ax.set_title("", fontsize=9)
        artists["hard"] = ax_loss.bar([0], [0.0], color="C1", label="hard: (1-α)·CE")[0]
        artists["soft"] = ax_loss.bar([0], [0.0], color="C0", label="soft: α·T²·KL")[0]
        ax_loss.set_xticks([])
        ax_loss.legend(fontsize=7, loc="upper left")
        artists["loss_axes"], artists["loss_title"] = ax_loss, ax_loss.set_title("", fontsize=9)
        return figure, artists

    def _draw(self) -> None:
        a, label, entropy, loss = self._artists, self.label, self.entropy, self.loss
        a["image"].set_data(self._image(self.index))
        a["image_title"].set_text(f"#{self.index}: {self.classes[label]}")
        for name, probs in (("teacher", self.teacher_probs), ("student", self.student_probs)):
            for k, (bar, p) in enumerate(zip(a[name], probs.tolist())):
                bar.set_height(p)
                bar.set_color("C2" if k == label else "C0")
            a[f"{name}_title"].set_text(f"{name}, T={self.temperature:.3g}: H={entropy[name]:.2f} bits")
        a["hard"].set_height(loss["hard"])
        a["soft"].set_y(loss["hard"])
        a["soft"].set_height(loss["soft"])
        a["loss_axes"].set_ylim(0, max(1.6 * loss["total"], 1e-3))  # headroom for the legend
        a["loss_title"].set_text(f"KD loss {loss['total']:.3f}")
        if self._controls is not None:
            self._controls["picture"].value = self.png()

    def _image(self, index: int):
        return as_picture(self.images[index])

    def png(self, dpi: int = 80) -> bytes:
        """The current figure as PNG bytes (what the widget shows)."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    def static_figure(self, temperatures=(1.0, 4.0, 20.0)):
        """The explorer's content at several temperatures, one row each (for headless runs)."""
        temperatures = list(temperatures)
        for t in temperatures:
            checks.positive_number("temperature", t)
        saved = self.temperature
        fig = plt.figure(figsize=(12, 2.6 * len(temperatures)), layout="constrained")
        axes = fig.subplot_mosaic([["image", f"t{r}", f"s{r}", f"l{r}"] for r in range(len(temperatures))],
                                  width_ratios=[1.0, 2.4, 2.4, 1.4])
        axes["image"].imshow(self._image(self.index), cmap="gray_r", vmin=0, vmax=1)
        axes["image"].set_title(f"test image #{self.index}: {self.classes[self.label]}", fontsize=9)
        axes["image"].axis("off")
        try:
            for r, t in enumerate(temperatures):
                self.temperature = float(t)  # the derived properties follow the temperature
                self._static_row(axes[f"t{r}"], axes[f"s{r}"], axes[f"l{r}"])
        finally:
            self.temperature = saved
        return fig

    def _static_row(self, ax_teacher, ax_student, ax_loss) -> None:
        entropy, loss, n = self.entropy, self.loss, len(self.classes)
        for name, ax, probs in (("teacher", ax_teacher, self.teacher_probs), ("student", ax_student, self.student_probs)):
            ax.bar(range(n), probs.tolist(), color=["C2" if k == self.label else "C0" for k in range(n)])
            ax.set_xticks(range(n), self.classes, rotation=70, fontsize=7)
            ax.set(ylim=(0, 1))
            ax.set_title(f"{name}, T={self.temperature:g}: H={entropy[name]:.2f} bits", fontsize=9)
        ax_loss.barh([1, 0], [loss["hard"], loss["soft"]], color=["C1", "C0"])
        ax_loss.set_yticks([1, 0], ["(1-α)·CE", "α·T²·KL"], fontsize=8)
        ax_loss.set_title(f"α={self.alpha:g}: KD loss {loss['total']:.3f}", fontsize=9)

    # ------------------------------------------------------------------ widgets
    def widget(self):
        """The interactive explorer: sliders for T (log scale) and alpha, a class picker, an
        image slider (within the class, or over all test images), a readout and the figure."""
        import ipywidgets as w

        if self._controls is None:
            c = self._controls = {
                "temperature": w.FloatLogSlider(value=self.temperature, base=10, min=math.log10(T_MIN),
                                                max=math.log10(T_MAX), step=0.05, description="T",
                                                readout_format=".3g"),
                "alpha": w.FloatSlider(value=self.alpha, min=0.0, max=1.0, step=0.05, description="alpha"),
                "klass": w.Dropdown(options=[("any class", ANY_CLASS)] + [(n, k) for k, n in enumerate(self.classes)],
                                    value=ANY_CLASS, description="class"),
                "image": w.IntSlider(value=self.index, min=0, max=len(self.labels) - 1, description="image"),
                "readout": w.HTML(),
                "picture": w.Image(format="png"),
            }
            for name, control in c.items():  # stable CSS hooks for browser tests and styling
                control.add_class(f"temperature-explorer-{name}")
            c["temperature"].observe(lambda ch: self._from_control(temperature=ch["new"]), names="value")
            c["alpha"].observe(lambda ch: self._from_control(alpha=ch["new"]), names="value")
            c["klass"].observe(self._class_picked, names="value")
            c["image"].observe(lambda ch: self._from_control(index=self._selection()[ch["new"]]), names="value")
            self._box = w.VBox([w.HBox([c["temperature"], c["alpha"]]), w.HBox([c["klass"], c["image"]]),
                                c["readout"], c["picture"]])
            self._draw()
            self._sync_controls()
        return self._box

    def _selection(self) -> list:
        """Test indices the image slider walks through: all, or those of the picked class."""
        klass = self._controls["klass"].value if self._controls else ANY_CLASS
        if klass == ANY_CLASS:
            return list(range(len(self.labels)))
        return (self.labels == klass).nonzero().flatten().tolist()

    def _from_control(self, **change) -> None:
        if not self._syncing:
            self.set(**change)

    def _class_picked(self, change) -> None:
        if self._syncing:
            return
        selection = self._selection()
        with self._quiet():
            self._controls["image"].max = len(selection) - 1
            self._controls["image"].value = 0
        self.set(index=selection[0])

    def _sync_controls(self) -> None:
        """Show the state in the widgets (after a programmatic ``set``) without re-triggering."""
        c = self._controls
        if c is None:
            return
        with self._quiet():
            if self.index not in self._selection():
                c["klass"].value = ANY_CLASS
                c["image"].max = len(self.labels) - 1
            c["image"].value = self._selection().index(self.index)
            c["temperature"].value, c["alpha"].value = self.temperature, self.alpha
            c["readout"].value = f'<span class="temperature-readout">{self.readout}</span>'

    @contextlib.contextmanager
    def _quiet(self):
        """Widget changes made inside this block do not call back into ``set``."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False
