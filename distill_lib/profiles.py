"""Every notebook's settings in one place: what each parameter may be, and each profile's value.

A notebook's papermill ``parameters`` cell holds plain literals; ``None`` means "the profile's
value". Its next cell is one call, ``cfg = dl.notebook.start("00_quickstart", globals())``, which
calls :func:`configure`: every value is taken from the cell or, when ``None``, from the profile,
then checked, before any work starts. The runner calls :func:`check_run` with the same tables,
so a bad value is refused before a kernel is even started.

Profiles: ``quick`` = the bundled mini data, sized for a 2-core laptop CPU, 3 seeds for the
headline comparison; ``full`` = the full dataset, sized for a GPU. The teacher's training recipe
per profile (:data:`TEACHER_RECIPES`) lives here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from .core import checks

# core.data and core.models (class names, model presets) load torch, 2 s: they are imported inside
# the checks that need them, so that the command line (``python -m distill_lib --help``, the
# runner, which reads these tables) starts without torch.

PROFILE_NAMES = ("quick", "full")
REPO_ROOT = Path(__file__).resolve().parent.parent  # where runs/ (git-ignored) lives in a checkout

# The teacher. Augmentation (shift 2 px + horizontal flip) and a 40-epoch schedule take the full
# teacher past 93% (15 epochs stopped at 92.5%: this small net underfits); see data/README.md.
TEACHER_RECIPES = {
    # quick: the fallback when the shipped teacher is missing, and what notebook 01 trains in a minute
    "quick": {"model": "cnn-teacher", "dataset": "fashion-mnist-mini", "epochs": 4, "batch_size": 128,
              "lr": 3e-3, "weight_decay": 5e-4, "shift": 2, "flip": True, "label_smoothing": 0.0},
    "full": {"model": "cnn-teacher", "dataset": "fashion-mnist", "epochs": 40, "batch_size": 128,
             "lr": 3e-3, "weight_decay": 5e-4, "shift": 2, "flip": True, "label_smoothing": 0.0},
    # notebook 07's LeNet-5-sized BN teacher (both profiles): data-free distillation runs the teacher
    # forwards and backwards through every generated batch, which the 15M-MAC teacher makes too slow
    # for a CPU; the recipe is the full one's, on a model 35x cheaper (shipped in data/, see its README)
    "lenet": {"model": "lenet5-bn", "dataset": "fashion-mnist", "epochs": 10, "batch_size": 128,
              "lr": 3e-3, "weight_decay": 5e-4, "shift": 2, "flip": True, "label_smoothing": 0.0},
}


@dataclass(frozen=True)
class Setting:
    """One setting: the quick and full profiles' values and the check a given value must pass.

    A setting without a check is fixed by the profile (no notebook parameter changes it).
    """

    quick: object
    full: object
    check: Callable | None = None

    def value(self, profile: str):
        return self.quick if profile == "quick" else self.full


# ------------------------------------------------------------------ checks used by the tables
def model_name(name, value):
    from .core.models import MODEL_PRESETS
    checks.one_of(name, value, list(MODEL_PRESETS))


def device_name(name, value):
    from .core.device import resolve_device
    if not isinstance(value, str):
        raise ValueError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {value!r}")
    resolve_device(value)


def each(check):
    """A list (or tuple) of values, each passing ``check``, at least one."""
    def check_all(name, values):
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{name} must be a non-empty list; got {values!r}")
        for value in values:
            check(f"{name} entries", value)
    return check_all


def optional(check):
    """None (use everything / the default) or a value passing ``check``."""
    def check_optional(name, value):
        if value is not None:
            check(name, value)
    return check_optional


def fashion_class(name, value):
    from .core.data import FASHION_MNIST_CLASSES
    checks.one_of(name, value, FASHION_MNIST_CLASSES)


def boolean(name, value):
    checks.strict_choice(name, value, (True, False))


def text(name, value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string; got {value!r}")


TRANSFER_SOURCES = ("fashion-split", "mnist", "imagenet-resnet18")  # notebook 03's source tasks
TRANSFER_RESNETS = ("resnet18", "resnet34")  # the networks of its ImageNet source


def budgets_text(name, value):
    """Notebook 03's label budgets: comma-separated positive integers and/or "all"."""
    parts = str(value).replace(" ", "").split(",") if isinstance(value, str) else None
    if not parts or not all(p == "all" or (p.isdigit() and int(p) > 0) for p in parts):
        raise ValueError(f"{name} must be comma-separated positive integers (labelled images per class) "
                         f"or 'all', e.g. '1,10,100,all'; got {value!r}")


def class_ids(name, value):
    """Notebook 03's source classes: distinct class ids 0-9, at least one, and at least two classes
    left for the target task (what ``lessons.transfer.parse_classes`` demands once the notebook runs)."""
    parts = str(value).replace(" ", "").split(",") if isinstance(value, str) else None
    ids = [int(p) for p in parts if p.isdigit()] if parts else []
    if not ids or len(ids) != len(parts) or max(ids) > 9 or len(set(ids)) != len(ids) or len(ids) > 8:
        raise ValueError(f"{name} must be distinct comma-separated Fashion-MNIST class ids from 0 to 9, "
                         f"leaving at least two classes for the target task; got {value!r}")


def architecture_problem(source: str, student: str, teacher: str) -> str | None:
    """What is wrong with notebook 03's architectures, or None: presets for the Fashion/MNIST
    sources, torchvision ResNets for the ImageNet source."""
    from .core.models import MODEL_PRESETS
    allowed = TRANSFER_RESNETS if source == "imagenet-resnet18" else tuple(MODEL_PRESETS)
    for role, name in (("student", student), ("teacher", teacher)):
        if name not in allowed:
            return f"{role}={name!r} cannot be used with source={source!r}; allowed: {', '.join(allowed)}"
    return None


def transfer_architectures(cfg):
    return architecture_problem(cfg.source, cfg.student, cfg.teacher)


# ------------------------------------------------------------------ the tables
COMMON = {  # every notebook has these (profile and run_dir are handled by configure)
    "seed": Setting(0, 0, checks.non_negative_int),
    "interactive": Setting(True, True, boolean),
    "device": Setting("auto", "auto", device_name),
    # torch's CPU threads: results depend on it, so the profile fixes it (0 = torch's default)
    "threads": Setting(2, 0, checks.non_negative_int),
}

NOTEBOOKS: dict[str, dict[str, Setting]] = {
    "00_quickstart": {
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        # quick: 500 of the mini set's 1,000 images per class. The 800-800 student overfits
        # them on its own, the regime where KD helps (Hinton et al.), and 3 seeds take 20 s.
        "train_per_class": Setting(500, None, optional(checks.positive_int)),
        "student": Setting("mlp-hinton", "mlp-hinton", model_name),
        "epochs": Setting(20, 30, checks.positive_int),
        # 5 seeds: the per-seed gain ranges 0.8-2.3 points over seeds 0-9 on this CPU, and with 3
        # seeds a window's interval can end near 0; with 5 every window stays clear of it
        "n_seeds": Setting(5, 3, checks.positive_int),
        "temperature": Setting(4.0, 4.0, checks.positive_number),
        "alpha": Setting(0.9, 0.9, checks.fraction),
        "batch_size": Setting(256, 256),
        "lr": Setting(2e-3, 2e-3),
    },
    "01_teacher_training": {
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        "teacher_epochs": Setting(TEACHER_RECIPES["quick"]["epochs"], TEACHER_RECIPES["full"]["epochs"],
                                  checks.positive_int),
        "student": Setting("mlp-hinton", "mlp-hinton", model_name),
        "student_epochs": Setting(20, 30, checks.positive_int),
        "train_per_class": Setting(500, None, optional(checks.positive_int)),
        "n_seeds": Setting(3, 3, checks.positive_int),
        "batch_size": Setting(256, 256),
        "lr": Setting(2e-3, 2e-3),
    },
    "02_temperature_soft_targets": {
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        "train_per_class": Setting(500, None, optional(checks.positive_int)),
        # the pair of the lesson: a large student that overfits alone, and a tiny one; the first
        # is the headline's
        "students": Setting(("mlp-tiny", "mlp-hinton"), ("mlp-tiny", "mlp-hinton")),
        "temperatures": Setting((1.0, 4.0, 8.0), (1.0, 2.0, 4.0, 8.0, 20.0)),
        "alphas": Setting((0.9,), (0.5, 0.9, 1.0)),
        "student": Setting(None, None, optional(model_name)),
        "temperature": Setting(None, None, optional(checks.positive_number)),
        "alpha": Setting(None, None, optional(checks.fraction)),
        "headline_temperature": Setting(8.0, 8.0),
        "headline_alpha": Setting(0.9, 0.9),
        "variants_temperature": Setting(4.0, 4.0),  # MSE losses and DKD are compared with KL at this T
        "n_seeds": Setting(3, 3, checks.positive_int),
        # the headline student (mlp-tiny, cheap) runs 5: at T=8 one seed of 0-9 loses 5.45 points
        # against 2.2-3.85 for the rest, and a 3-seed window holding it crosses zero
        "headline_n_seeds": Setting(5, 3),
        "epochs": Setting(16, 40, checks.positive_int),
        "batch_size": Setting(256, 256),
        "lr": Setting(2e-3, 2e-3),
        "explorer_student": Setting("mlp-tiny", "mlp-tiny"),
        "omitted_class": Setting("Dress", "Dress", fashion_class),
        "omitted_student": Setting("mlp-hinton", "mlp-hinton"),
        "omitted_epochs": Setting(8, 20),
        "omitted_temperature": Setting(8.0, 8.0),
        "omitted_share": Setting(0.1, 0.1),  # the bias rule: this share of test images go to the class
        "loss_variants": Setting(True, True, boolean),
    },
    "03_transfer_vs_distillation": {
        "threads": Setting(1, 0, checks.non_negative_int),  # tiny MLPs gain nothing from a second thread
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        "source": Setting("fashion-split", "fashion-split", lambda name, value: checks.one_of(name, value, TRANSFER_SOURCES)),
        "source_classes": Setting("0,2,5,7,8", "0,2,5,7,8", class_ids),
        "budgets": Setting("1,10,100", "10,50,100,500,all", budgets_text),
        "transfer_set_budgets": Setting((1, 10), (10, 100)),  # labels per class with the strong teacher
        "n_seeds": Setting(3, 3, checks.positive_int),
        # the strong-teacher experiment holds the headline: with 1 label per class the seeds' spread
        # is large (which image is labelled), and five seeds keep every window's verdict (survey, seeds 0-9)
        "transfer_set_seeds": Setting(5, 5, checks.positive_int),
        "student": Setting("mlp-tiny", "cnn-small", text),
        "teacher": Setting("mlp-small", "cnn-teacher", text),
        "steps": Setting(200, 1500, checks.positive_int),
        "source_steps": Setting(400, 3000, checks.positive_int),
        "batch_size": Setting(128, 256),
        "lr": Setting(1e-3, 1e-3),
        "finetune_lr": Setting(1e-3, 1e-3, checks.positive_number),
        "temperature": Setting(2.0, 2.0, checks.positive_number),
        "alpha": Setting(0.5, 0.5, checks.fraction),
        "download": Setting(False, False, boolean),
    },
    "04_adversarial_distillation": {
        "threads": Setting(1, 0, checks.non_negative_int),  # small MLPs gain nothing from a second thread
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        # few labels, every other image unlabelled: KD carries the learning (06's setting), so the
        # adversarial term is tested on top of a KD that works
        "labels_per_class": Setting(100, 100, checks.positive_int),
        "student": Setting("mlp-small", "mlp-small", model_name),
        "epochs": Setting(6, 20, checks.positive_int),  # 6 passes over 10k images: the 60k samples the 5k-image setting had in 12
        # 5 seeds: KD + adversarial vs KD differs by -0.2 to +0.15 points per seed; 3-seed intervals
        # reach +-0.45, near the 0.5-point margin, 5-seed ones stay within +-0.25 (seeds 0-9)
        "n_seeds": Setting(5, 3, checks.positive_int),
        "temperature": Setting(2.0, 2.0, checks.positive_number),
        "alpha": Setting(0.9, 0.9, checks.fraction),
        "adv_weight": Setting(0.05, 0.05, checks.positive_number),
        "warmup_epochs": Setting(2, 3, checks.non_negative_int),
        "d_lr": Setting(1e-3, 1e-3, checks.positive_number),
        "large_d_width": Setting(512, 512, checks.positive_int),  # 268k parameters: more than the student's 102k
        "batch_size": Setting(256, 256),
        "lr": Setting(3e-3, 3e-3),
    },
    "05_knowledge_matching_lightweighting": {
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        "n_seeds": Setting(3, 3, checks.positive_int),
        # the matching students are small CNNs: ten times an MLP's cost per image on a CPU
        "matching_per_class": Setting(300, None, optional(checks.positive_int)),
        "matching_epochs": Setting(4, 30, checks.positive_int),
        "matching_channels": Setting((8, 16, 32), (16, 32, 64)),
        "matching_batch_size": Setting(64, 128),
        "matching_lr": Setting(1e-2, 3e-3),
        "hint_stage": Setting("stage3", "stage3"),
        "temperature": Setting(2.0, 2.0, checks.positive_number),
        "alpha": Setting(0.5, 0.5, checks.fraction),
        "hint_weight": Setting(1.0, 1.0, checks.non_negative_number),
        "at_weight": Setting(100.0, 100.0, checks.non_negative_number),
        "deploy_student": Setting("mlp-small", "mlp-small", model_name),
        "deploy_epochs": Setting(20, 30, checks.positive_int),
        "batch_size": Setting(256, 256),
        "lr": Setting(2e-3, 2e-3),
        "sparsity": Setting(0.5, 0.5, checks.fraction),
        "finetune_epochs": Setting(1, 3, checks.positive_int),
        "finetune_lr": Setting(1e-3, 3e-4),
        "calibration_images": Setting(512, 2048),
        "latency_repeats": Setting(30, 200),
        "latency_repeats_large": Setting(5, 20),
    },
    "06_pitfalls": {
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),
        # few labels, many unlabelled images: the teacher's signal carries most of the lesson,
        # so a bug that damages it shows (notebook 03's transfer set)
        "labels_per_class": Setting(100, 100, checks.positive_int),
        "student": Setting("mlp-small", "mlp-small"),
        "n_seeds": Setting(3, 3, checks.positive_int),
        "epochs": Setting(10, 20, checks.positive_int),
        "temperature": Setting(4.0, 4.0, checks.positive_number),
        "alpha": Setting(0.9, 0.9, checks.fraction),
        "batch_size": Setting(250, 250),  # every batch holds labelled images (see the notebook)
        "lr": Setting(2e-3, 2e-3),
    },
    "07_data_free": {
        "threads": Setting(1, 0, checks.non_negative_int),  # measured: a second thread does not speed these small convs up
        "dataset": Setting("fashion-mnist-mini", "fashion-mnist"),  # the test set; no training image is used
        "teacher": Setting("lenet", "lenet"),  # the LeNet-5-sized BN teacher (TEACHER_RECIPES["lenet"], shipped)
        "student": Setting("mlp-small", "mlp-small", model_name),
        "n_seeds": Setting(3, 3, checks.positive_int),
        # quick: 200 student steps and 200 generator steps (about 45 s of one CPU thread per seed);
        # full: 3,000 steps at batch 512 (nearer DFAD's MNIST schedule; sized for a GPU, not measured)
        "steps_per_epoch": Setting(25, 100, checks.positive_int),
        "epochs": Setting(8, 30, checks.positive_int),
        "batch_size": Setting(256, 512, checks.positive_int),
        "lr": Setting(1e-3, 1e-3),  # the student's Adam, constant
        "temperature": Setting(1.0, 1.0),
        "generator_channels": Setting(32, 64),
        "noise_dim": Setting(64, 64),
        "g_lr": Setting(1e-2, 1e-2),
        "class_weight": Setting(1.0, 1.0),
        "bn_weight": Setting(10.0, 10.0, checks.non_negative_number),
        "tv_weight": Setting(1.0, 1.0),
        "adv_weight": Setting(0.1, 0.1, checks.non_negative_number),
        "jitter": Setting(2, 2),
        "balance_weight": Setting(5.0, 5.0),  # DAFL's weight, for the ablation without the BN prior
        "noise": Setting("uniform", "uniform", lambda name, value: checks.one_of(name, value, ("uniform", "gaussian"))),
        "ablation_epochs": Setting(4, 10, checks.positive_int),
    },
}

# rules that tie several values of one notebook together: notebook -> [rule(cfg) -> message or None]
RULES: dict[str, list] = {
    "03_transfer_vs_distillation": [transfer_architectures],
    "04_adversarial_distillation": [lambda cfg: None if cfg.warmup_epochs < cfg.epochs else (
        f"warmup_epochs must be < epochs ({cfg.epochs}), or the adversarial term never switches on; "
        f"got {cfg.warmup_epochs}")],
}


class Config(SimpleNamespace):
    """Attribute access to the resolved settings, plus ``as_dict()`` for metrics.json."""

    def as_dict(self) -> dict:
        return {k: (str(v) if type(v).__module__.startswith("torch") else v) for k, v in vars(self).items()}

    def __repr__(self) -> str:
        rows = "\n".join(f"  {k:<18} {v!r}" for k, v in vars(self).items())
        return f"Config(\n{rows}\n)"


def settings_of(notebook: str) -> dict:
    """Every setting of ``notebook`` (the common ones first)."""
    if notebook not in NOTEBOOKS:
        raise ValueError(f"no settings for notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    return {**COMMON, **NOTEBOOKS[notebook]}


def configure(notebook: str, values: dict) -> Config:
    """Resolve ``values`` (a notebook's parameters; ``None`` = the profile's value) and check them.

    Only the notebook's own settings are read from ``values`` (a notebook passes ``globals()``).
    Raises ``ValueError`` naming the parameter, the value and what is allowed.
    """
    profile = values.get("profile", "quick")
    checks.one_of("profile", profile, PROFILE_NAMES)
    resolved = {"profile": profile}
    for name, setting in settings_of(notebook).items():
        given = values.get(name)
        if given is not None and setting.check is None:
            raise ValueError(f"{name} is fixed by the profile in this notebook; got {given!r}")
        value = setting.value(profile) if given is None else given
        if setting.check is not None:
            setting.check(name, value)
        resolved[name] = value
    resolved["run_dir"] = str(resolve_run_dir(values.get("run_dir") or f"runs/manual/{notebook}"))
    config = Config(**resolved)
    for rule in RULES.get(notebook, []):
        message = rule(config)
        if message:
            raise ValueError(message)
    return config


def check_run(notebook: str, profile: str, params: dict) -> None:
    """What the runner calls before starting a kernel: the same checks as the notebook's."""
    if notebook in NOTEBOOKS:
        configure(notebook, {**params, "profile": profile})


def resolve_run_dir(run_dir) -> Path:
    """A relative run directory lies under the repository (whose ``runs/`` git ignores), whatever
    the kernel's working directory; outside a checkout, under the working directory."""
    path = Path(run_dir)
    if path.is_absolute():
        return path
    in_checkout = (REPO_ROOT / "notebooks").is_dir() and (REPO_ROOT / "distill_lib").is_dir()
    return (REPO_ROOT if in_checkout else Path.cwd()) / path
