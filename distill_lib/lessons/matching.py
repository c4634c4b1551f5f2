"""Structure matching for feature distillation: which teacher stage should guide which student stage.

Hints (``methods.hint``) and attention transfer (``methods.attention``) compare what the student
computes inside with what the teacher computes. When teacher and student have different depths
and widths, :func:`match_stages` pairs each student stage with a teacher stage: same spatial size
first (attention maps can only be compared position by position), then nearest relative depth.
"""
from __future__ import annotations


# ------------------------------------------------------------------------ structure matching
def match_stages(student_shapes: dict, teacher_shapes: dict) -> list:
    """For every student stage, the teacher stage to match: same spatial size, then nearest depth.

    Shapes are ``models.feature_shapes`` dictionaries (stage -> (C, H, W) or (C,)). Relative
    depth is a stage's position divided by the number of stages, so the last stage of a 2-stage
    student matches the last stage of a 3-stage teacher. Returns one dict per student stage:
    student, teacher, their shapes, and "why" (the rule that decided).
    """
    for name, shapes in (("student_shapes", student_shapes), ("teacher_shapes", teacher_shapes)):
        if not shapes:
            raise ValueError(f"{name} must name at least one stage, got {shapes!r}")
    teacher_names = list(teacher_shapes)
    teacher_depth = {t: (i + 1) / len(teacher_names) for i, t in enumerate(teacher_names)}
    pairs = []
    for i, (s_name, s_shape) in enumerate(student_shapes.items()):
        depth = (i + 1) / len(student_shapes)
        same_size = [t for t in teacher_names if _spatial(teacher_shapes[t]) == _spatial(s_shape) and len(s_shape) == 3]
        candidates, why = (same_size, "same spatial size, nearest depth") if same_size else (teacher_names, "nearest depth")
        best = min(candidates, key=lambda t: (abs(teacher_depth[t] - depth), -teacher_depth[t]))
        pairs.append({"student": s_name, "teacher": best, "student_shape": tuple(s_shape),
                      "teacher_shape": tuple(teacher_shapes[best]), "why": why})
    return pairs


def _spatial(shape) -> tuple:
    return tuple(shape[1:])
