"""A one-minute distillation on the bundled data: teacher, student alone, student with KD."""
from __future__ import annotations

import time

from .core import checks
from .core.data import load_dataset
from .core.device import resolve_device
from .core.cache import teacher_outputs
from .core.evaluate import metrics_from_logits
from .core.models import MODEL_PRESETS, build_model
from .teachers import get_teacher
from .loop import distill, fit


def run_demo(*, student: str = "mlp-hinton", epochs: int = 20, temperature: float = 4.0, alpha: float = 0.9,
             seed: int = 0, device="auto", progress=None) -> dict:
    """Train two identical students (labels only, and with the teacher); return all accuracies."""
    checks.one_of("student", student, list(MODEL_PRESETS))
    epochs, seed = checks.positive_int("epochs", epochs), checks.non_negative_int("seed", seed)
    checks.positive_number("temperature", temperature)
    checks.fraction("alpha", alpha)
    device = resolve_device(device)  # all before the teacher is fetched (or trained)
    train_set, test_set = load_dataset("fashion-mnist-mini"), load_dataset("fashion-mnist-mini", split="test")
    started = time.perf_counter()
    teacher, info = get_teacher("quick", device=device, progress=progress)
    common = dict(epochs=epochs, device=device, seed=seed, eval_set=test_set, progress=progress)
    alone = fit(build_model(student, seed=seed), train_set, desc="student alone", **common)
    kd = distill(build_model(student, seed=seed), teacher, train_set, temperature=temperature, alpha=alpha,
                 desc="student + KD", **common)
    teacher_test = teacher_outputs(teacher, test_set, device=device).logits  # cached by distill's evaluation
    return {"teacher": metrics_from_logits(teacher_test, test_set.labels)["accuracy"],
            "student_alone": alone.final["accuracy"], "student_kd": kd.final["accuracy"],
            "teacher_checkpoint": info["checkpoint"], "seconds": time.perf_counter() - started,
            "setting": f"{student}, {epochs} epochs, T={temperature}, alpha={alpha}, seed {seed}, {device}"}


def format_demo(result: dict) -> str:
    rows = [("teacher", result["teacher"]), ("student alone", result["student_alone"]),
            ("student + KD", result["student_kd"])]
    lines = [f"fashion-mnist-mini test accuracy ({result['setting']}):"]
    lines += [f"  {name:<14} {accuracy:.2%}" for name, accuracy in rows]
    lines.append(f"  KD gain: {result['student_kd'] - result['student_alone']:+.2%} (one seed; "
                 f"{result['seconds']:.0f} s; teacher from {result['teacher_checkpoint']})")
    return "\n".join(lines)
