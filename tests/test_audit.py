"""audit_kd_loss against distillation losses written the way users write them (F.kl_div,
nn.KLDivLoss, F.cross_entropy, explicit sums): correct ones in every convention must pass clean,
each known bug must be named, alone or combined, and nothing else may be reported.

The losses here are deliberately written independently of the candidate formulas inside
distill_lib.audit, so that a wrong candidate there cannot make a test agree with itself.
"""
import ast
import re
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_lib.audit import AuditReport, Finding, audit_kd_loss

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # the class-mean bug on purpose


# ------------------------------------------------------------------ soft terms, written as users do
def kl_log_target(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1), reduction="batchmean", log_target=True)


def kl_prob_target(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")


def workbench(soft):
    """The workbench convention: alpha weights the soft term."""
    return lambda s, t, y, T, alpha: (1 - alpha) * F.cross_entropy(s, y) + alpha * soft(s, t, T)


def torchdistill(soft):
    """torchdistill's convention: alpha weights the hard (label) term."""
    return lambda s, t, y, T, alpha: alpha * F.cross_entropy(s, y) + (1 - alpha) * soft(s, t, T)


def tutorial_soft_target_ce(s, t, T):
    """PyTorch KD tutorial (first version): cross-entropy with the teacher's soft targets, times T^2."""
    soft_targets = F.softmax(t / T, dim=-1)
    soft_prob = F.log_softmax(s / T, dim=-1)
    return -torch.sum(soft_targets * soft_prob) / soft_prob.size()[0] * (T ** 2)


def tutorial_kl_by_hand(s, t, T):
    """PyTorch KD tutorial (current version): KL written out, batchmean by hand."""
    soft_targets = F.softmax(t / T, dim=-1)
    soft_prob = F.log_softmax(s / T, dim=-1)
    return torch.sum(soft_targets * (soft_targets.log() - soft_prob)) / soft_prob.size()[0] * (T ** 2)


def mse_logits(s, t, T):
    return 0.5 * F.mse_loss(s, t)  # Ba & Caruana: T is not used


def mse_soft(s, t, T):
    gap = F.softmax(s / T, dim=1) - F.softmax(t / T, dim=1)
    return T ** 2 * (gap ** 2).sum(dim=1).mean()


def kl_float32(s, t, T):
    return T ** 2 * kl_log_target(s.float(), t.float(), T)


def kldivloss_batchmean(s, t, T):
    return T ** 2 * nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1))


def symmetric_kl(s, t, T):
    """Not a form the audit knows: must give soft_form 'unknown' and no bug code."""
    return 0.5 * (kl_log_target(s, t, T) + kl_log_target(t, s, T))


CORRECT = {
    "workbench, F.kl_div log_target": (workbench(lambda s, t, T: T ** 2 * kl_log_target(s, t, T)), "soft", "kl"),
    "torchdistill, F.kl_div prob target": (torchdistill(lambda s, t, T: T ** 2 * kl_prob_target(s, t, T)),
                                           "hard", "kl"),
    "tutorial soft-target CE": (workbench(tutorial_soft_target_ce), "soft", "soft-target-ce"),
    "tutorial KL by hand": (workbench(tutorial_kl_by_hand), "soft", "kl"),
    "mse-logits": (workbench(mse_logits), "soft", "mse-logits"),
    "mse-soft": (workbench(mse_soft), "soft", "mse-soft"),
    "mse-soft, torchdistill": (torchdistill(mse_soft), "hard", "mse-soft"),
    "float32": (workbench(kl_float32), "soft", "kl"),
    "nn.KLDivLoss batchmean": (workbench(kldivloss_batchmean), "soft", "kl"),
    "unknown form (symmetric KL)": (workbench(lambda s, t, T: T ** 2 * symmetric_kl(s, t, T)), "soft", "unknown"),
}


# ------------------------------------------------------------------ buggy losses
def teacher_ignored(s, t, y, T, alpha):
    """The tutorial bug: the teacher's soft targets are computed, then plain CE is returned."""
    soft_targets = F.softmax(t / T, dim=-1)  # noqa: F841  (computed, never used)
    return F.cross_entropy(s, y)


def forgot_ce(s, t, y, T, alpha):
    return alpha * T ** 2 * kl_log_target(s, t, T)


def normalised_by_hard_weight(s, t, y, T, alpha):
    """Divides by (1 - alpha) as a tensor: inf at alpha = 1."""
    loss = (1 - alpha) * F.cross_entropy(s, y) + alpha * T ** 2 * kl_log_target(s, t, T)
    return loss / torch.tensor(1.0 - alpha)


def nan_gradient(s, t, y, T, alpha):
    """A finite value with a NaN gradient: sqrt at 0 (e.g. a norm of a zero difference)."""
    return (1 - alpha) * F.cross_entropy(s, y) + alpha * T ** 2 * kl_log_target(s, t, T) + ((s - s) ** 2).sum().sqrt()


BUGS = {
    "no T^2": (workbench(kl_log_target), {"missing-t2"}),
    "swapped F.kl_div arguments": (workbench(lambda s, t, T: T ** 2 * F.kl_div(
        F.log_softmax(t / T, dim=1), F.log_softmax(s / T, dim=1), reduction="batchmean", log_target=True)),
        {"reverse-kl"}),
    "swapped arguments, torchdistill": (torchdistill(lambda s, t, T: T ** 2 * F.kl_div(
        F.log_softmax(t / T, dim=1), F.softmax(s / T, dim=1), reduction="batchmean")), {"reverse-kl"}),
    "nn.KLDivLoss default mean": (workbench(lambda s, t, T: T ** 2 * nn.KLDivLoss()(
        F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1))), {"class-mean-reduction"}),
    "F.mse_loss for mse-soft": (workbench(lambda s, t, T: T ** 2 * F.mse_loss(
        F.softmax(s / T, dim=1), F.softmax(t / T, dim=1))), {"class-mean-reduction"}),
    "softmax into F.kl_div": (workbench(lambda s, t, T: T ** 2 * F.kl_div(
        F.softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")), {"probabilities-as-log"}),
    "T on the student only": (workbench(lambda s, t, T: T ** 2 * F.kl_div(
        F.log_softmax(s / T, dim=1), F.softmax(t, dim=1), reduction="batchmean")), {"temperature-one-side"}),
    "T on the teacher only": (workbench(lambda s, t, T: T ** 2 * F.kl_div(
        F.log_softmax(s, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")), {"temperature-one-side"}),
    "nn.KLDivLoss default and no T^2": (workbench(lambda s, t, T: nn.KLDivLoss()(
        F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1))), {"missing-t2", "class-mean-reduction"}),
    "unknown form, no T^2": (workbench(symmetric_kl), {"missing-t2"}),
    "teacher computed, CE returned": (teacher_ignored, {"teacher-ignored"}),
    "forgot the CE term": (forgot_ce, {"labels-ignored"}),
    "divided by 1 - alpha": (normalised_by_hard_weight, {"not-finite"}),
    "NaN gradient": (nan_gradient, {"not-finite"}),
}

# What each finding's message must say: its subject, the measurement (a number), the fix (code).
SUBJECT = {"not-finite": "not finite", "teacher-ignored": "ignores the teacher", "labels-ignored": "label",
           "missing-t2": "T^2", "reverse-kl": "KL(student || teacher)", "class-mean-reduction": "classes",
           "probabilities-as-log": "log-probabilities", "temperature-one-side": "divided by T"}
MEASUREMENT = {"not-finite": r"at T=\d+, alpha=\d", "teacher-ignored": r"changed it by at most \d",
               "labels-ignored": r"changed the loss by \d", "missing-t2": r"changes x\d\S* against x\d",
               "reverse-kl": r"\d+% and \d+% away", "class-mean-reduction": r"= 1/C for C=10",
               "probabilities-as-log": r"\d+% and \d+% away", "temperature-one-side": r"\d+% and \d+% away"}
FIX = {"not-finite": r"F\.log_softmax", "teacher-ignored": r"F\.kl_div\(", "labels-ignored": r"F\.cross_entropy\(",
       "missing-t2": r"T\*\*2 \*", "reverse-kl": r"F\.kl_div\(F\.log_softmax\(s / T",
       "class-mean-reduction": r"reduction='batchmean'|\.sum\(dim=-1\)\.mean\(\)",  # KL | mse-soft
       "probabilities-as-log": r"F\.kl_div\(F\.log_softmax\(s / T", "temperature-one-side": r"student_logits / T"}


def codes(report: AuditReport) -> set:
    return {finding.code for finding in report.findings}


# ------------------------------------------------------------------ correct losses pass clean
@pytest.mark.parametrize("name", CORRECT)
def test_a_correct_loss_gets_no_finding_and_its_convention(name):
    fn, alpha_weights, soft_form = CORRECT[name]
    report = audit_kd_loss(fn)
    assert report.ok and report.findings == [], str(report)
    assert report.convention["alpha_weights"] == alpha_weights
    assert report.convention["soft_form"] == soft_form


@pytest.mark.parametrize("kind", ["kl", "mse-logits", "mse-soft"])
def test_the_workbench_s_own_losses_pass(kind):
    from distill_lib.methods import get_loss
    loss = get_loss(kind)
    report = audit_kd_loss(lambda s, t, y, T, alpha: loss(s, t, y, temperature=T, alpha=alpha))
    assert report.ok, str(report)
    assert report.convention["soft_form"] == kind and report.convention["hard_form"] == "ce"


# ------------------------------------------------------------------ each bug, and only it
@pytest.mark.parametrize("name", BUGS)
def test_a_buggy_loss_gets_exactly_its_codes(name):
    fn, expected = BUGS[name]
    report = audit_kd_loss(fn)
    assert codes(report) == expected, str(report)
    assert not report.ok


def test_the_convention_is_still_detected_when_the_soft_term_is_buggy():
    fn, _ = BUGS["swapped arguments, torchdistill"]
    assert audit_kd_loss(fn).convention["alpha_weights"] == "hard"
    convention = audit_kd_loss(BUGS["nn.KLDivLoss default and no T^2"][0]).convention
    assert (convention["alpha_weights"], convention["soft_form"]) == ("soft", "kl")


@pytest.mark.parametrize("num_classes,batch_size", [(2, 2), (100, 8)])
def test_small_and_wide_probes_give_the_same_verdicts(num_classes, batch_size):
    assert audit_kd_loss(CORRECT["workbench, F.kl_div log_target"][0], num_classes=num_classes,
                         batch_size=batch_size).ok
    report = audit_kd_loss(BUGS["nn.KLDivLoss default and no T^2"][0], num_classes=num_classes,
                           batch_size=batch_size)
    assert codes(report) == {"missing-t2", "class-mean-reduction"}, str(report)


def test_not_finite_stops_the_probing():
    """inf at alpha = 1 only: the other checks would see it too, so only not-finite is reported."""
    report = audit_kd_loss(normalised_by_hard_weight)
    assert report.codes == ["not-finite"]
    assert "alpha=1" in report.findings[0].message


# ------------------------------------------------------------------ messages and the report text
@pytest.mark.parametrize("name", BUGS)
def test_every_message_says_what_how_and_the_fix(name):
    for finding in audit_kd_loss(BUGS[name][0]).findings:
        assert isinstance(finding, Finding)
        what_how, fix = finding.message.split("Fix: ", 1)
        assert SUBJECT[finding.code] in what_how, finding.message
        assert re.search(MEASUREMENT[finding.code], what_how), finding.message
        assert re.search(r"`[^`]*(" + FIX[finding.code] + r")[^`]*`", fix), finding.message


def test_str_gives_the_verdict_the_convention_and_each_finding():
    text = str(audit_kd_loss(BUGS["nn.KLDivLoss default and no T^2"][0]))
    lines = text.splitlines()
    assert lines[0].startswith("KD loss audit: 2 problem")
    assert "soft (teacher) term" in lines[1] and "soft term: kl" in lines[1]
    assert [line.split("]")[0] for line in lines[2:]] == ["- [class-mean-reduction", "- [missing-t2"]
    ok_text = str(audit_kd_loss(CORRECT["torchdistill, F.kl_div prob target"][0]))
    assert ok_text.splitlines()[0] == "KD loss audit: OK, no problem found" and "torchdistill" in ok_text


# ------------------------------------------------------------------ cost, purity, robustness
def test_an_audit_takes_well_under_a_second():
    start = time.perf_counter()
    audit_kd_loss(workbench(lambda s, t, T: T ** 2 * symmetric_kl(s, t, T)))  # unmatched: tries every formula
    assert time.perf_counter() - start < 2.0


def test_the_audit_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    audit_kd_loss(CORRECT["mse-soft"][0])
    assert torch.equal(torch.rand(3), expected)


def test_it_works_inside_no_grad_and_protects_its_probes_from_in_place_edits():
    def edits_teacher_in_place(s, t, y, T, alpha):
        t /= T  # a user's in-place softening, then a correct KL on the already-softened logits
        return (1 - alpha) * F.cross_entropy(s, y) + alpha * T ** 2 * F.kl_div(
            F.log_softmax(s / T, dim=1), F.log_softmax(t, dim=1), reduction="batchmean", log_target=True)
    with torch.no_grad():
        report = audit_kd_loss(edits_teacher_in_place)
    assert report.ok and report.convention["soft_form"] == "kl", str(report)


def test_the_module_imports_only_torch_and_the_standard_library():
    import distill_lib.audit as audit
    tree = ast.parse(Path(audit.__file__).read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))
    assert roots - set(sys.stdlib_module_names) == {"torch"}


# ------------------------------------------------------------------ bad arguments and bad fns
@pytest.mark.parametrize("kwargs,words", [
    ({"fn": None}, ["fn", "None", "callable"]),
    ({"num_classes": 1}, ["num_classes", "1", "from 2 to"]),
    ({"num_classes": 2.5}, ["num_classes", "2.5", "integer"]),
    ({"num_classes": True}, ["num_classes", "True", "integer"]),
    ({"batch_size": 1}, ["batch_size", "1", "from 2 to"]),
    ({"batch_size": 10 ** 6}, ["batch_size", "1000000", "from 2 to"]),
    ({"seed": "0"}, ["seed", "'0'", "integer"]),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, words):
    arguments = {"fn": CORRECT["mse-soft"][0], **kwargs}
    with pytest.raises(ValueError) as error:
        audit_kd_loss(arguments.pop("fn"), **arguments)
    for word in words:
        assert word in str(error.value)


def test_a_fn_that_raises_gives_value_error_naming_the_exception_and_the_call():
    def ratio_weighted(s, t, y, T, alpha):
        return F.cross_entropy(s, y) + alpha / (1 - alpha) * T ** 2 * kl_log_target(s, t, T)
    with pytest.raises(ValueError, match=r"ZeroDivisionError.*temperature=1, alpha=1") as error:
        audit_kd_loss(ratio_weighted)
    assert isinstance(error.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize("returns,words", [
    (lambda s, t, y, T, alpha: F.cross_entropy(s, y).item(), "'float'"),
    (lambda s, t, y, T, alpha: F.cross_entropy(s, y, reduction="none"), "shape (64,)"),
])
def test_a_fn_that_returns_no_scalar_tensor_gives_value_error(returns, words):
    with pytest.raises(ValueError, match="scalar tensor") as error:
        audit_kd_loss(returns)
    assert words in str(error.value)


# ------------------------------------------------------------------ losses that train nothing (issue 22)
def t2_kl(s, t, T):
    return T ** 2 * kl_log_target(s, t, T)


def under_no_grad(s, t, y, T, alpha):
    with torch.no_grad():
        return workbench(t2_kl)(s, t, y, T, alpha)


def inference_mode(s, t, y, T, alpha):
    with torch.inference_mode():
        return workbench(t2_kl)(s.clone(), t, y, T, alpha)


DETACHED = {
    ".detach() on the result": lambda s, t, y, T, a: workbench(t2_kl)(s, t, y, T, a).detach(),
    "computed under torch.no_grad()": under_no_grad,
    "computed under torch.inference_mode()": inference_mode,
    ".item() wrapped again": lambda s, t, y, T, a: torch.tensor(workbench(t2_kl)(s, t, y, T, a).item(), requires_grad=True),
    "student.detach() everywhere": lambda s, t, y, T, a: workbench(t2_kl)(s.detach(), t, y, T, a),
    "student.data": lambda s, t, y, T, a: workbench(t2_kl)(s.data, t, y, T, a),
    "torchdistill convention, detached": lambda s, t, y, T, a: torchdistill(t2_kl)(s, t, y, T, a).detach(),
}


@pytest.mark.parametrize("name", DETACHED)
def test_a_loss_without_gradient_is_a_finding_not_ok(name):
    report = audit_kd_loss(DETACHED[name])
    assert not report.ok and report.codes == ["no-gradient"], str(report)
    message = report.findings[0].message
    assert "trains nothing" in message and "exactly zero" in message and "torch.no_grad()" in message
    assert "OK" not in str(report)


@pytest.mark.parametrize("part, fn", [
    ("soft (teacher)", lambda s, t, y, T, a: (1 - a) * F.cross_entropy(s, y) + a * t2_kl(s.detach(), t, T)),
    ("hard (label)", lambda s, t, y, T, a: (1 - a) * F.cross_entropy(s.detach(), y) + a * t2_kl(s, t, T)),
    ("hard (label)", lambda s, t, y, T, a: a * F.cross_entropy(s.detach(), y) + (1 - a) * t2_kl(s, t, T)),
])
def test_one_term_without_gradient_is_named(part, fn):
    report = audit_kd_loss(fn)
    assert "no-gradient" in report.codes, str(report)
    assert any(f"the {part} term trains nothing" in f.message for f in report.findings), str(report)
