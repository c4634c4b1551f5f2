"""Audit anyone's knowledge-distillation loss against the workbench's convention.

    report = audit_kd_loss(lambda s, t, y, T, alpha: my_loss(s, t, y, T, alpha))
    print(report)    # the verdict, the detected convention, one paragraph per finding
    report.ok        # True when nothing was found

The reference (the workbench's convention)::

    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))

with the KL averaged over the batch ("batchmean"). The audit trains nothing: it calls ``fn`` a few
dozen times on seeded synthetic logits (float64, 3 * randn) and measures

1. value and gradient on a grid of T and alpha: NaN or inf gives ``not-finite`` and ends the audit;
2. whether the loss moves when the teacher's logits or the labels are replaced by others
   (``teacher-ignored``, ``labels-ignored``). At which alpha the teacher matters gives the
   convention: alpha on the soft term (the workbench) or on the hard term (torchdistill);
3. the isolated soft term (the loss at the alpha whose hard weight is 0). Its value S(T) and its
   gradient G(T) w.r.t. the student logits at T = 1, 2, 4, 8 are fitted as k(T) * f(T) for every
   formula f of a small library of correct forms and known bugs (``_CANDIDATES``). A formula
   matches when one k(T) explains value and gradient to RTOL at every T; k(T) = c * T^p then
   tells the reduction (c = 1/C: ``class-mean-reduction``) and the temperature factor (p below the
   correct form's: ``missing-t2``). A matched buggy formula gives its code (``reverse-kl``,
   ``probabilities-as-log``, ``temperature-one-side``). A soft term that matches no formula gets
   soft_form "unknown" and no form-specific code; only the gradient-scaling test for a missing
   T^2 (gradient ratio T=8 vs T=2 against the reference's) applies to it.

If ``fn`` raises, audit_kd_loss raises ValueError naming the exception and the call: an exception
is a crash the user sees at once, while not-finite is for losses that silently return NaN or inf.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

TEMPERATURES = (1.0, 2.0, 4.0, 8.0)  # the soft-term fits; 1 is where every T placement agrees
ALPHAS = (0.0, 0.5, 0.9, 1.0)  # the finiteness grid, with TEMPERATURES
PROBE_T = 4.0  # temperature of the dependence checks: any T != 1 would do
LOGIT_SCALE = 3.0  # logits ~ 3 * randn: soft targets neither uniform nor one-hot
# A float32 loss agrees with the float64 formulas to ~1e-5; different formulas differ by > 1e-2.
RTOL = 1e-3
SAME_RTOL = 1e-6  # "the loss did not change": ignored inputs give bit-identical values
MISSING_T2_UNKNOWN_FORM = -1.5  # gradient exponent (in T) below which an unmatched form lacks T^2
MAX_CLASSES, MAX_BATCH = 1000, 1024  # bigger probes only slow the audit; they detect nothing more

REFERENCE_LINE = ("loss = (1 - alpha) * F.cross_entropy(s, labels) + alpha * T**2 * F.kl_div("
                  "F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), reduction='batchmean', "
                  "log_target=True)")
KL_LINE = ("F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), "
           "reduction='batchmean', log_target=True)")


@dataclass(frozen=True)
class Finding:
    """One problem: ``code`` (a fixed string) and a message saying what, how measured, and the fix."""
    code: str
    message: str


@dataclass
class AuditReport:
    """The audit's result: findings (empty when the loss is fine) and the detected convention."""
    findings: list = field(default_factory=list)
    convention: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def codes(self) -> list:
        return [f.code for f in self.findings]

    def __str__(self) -> str:
        verdict = "OK, no problem found" if self.ok else f"{len(self.findings)} problem(s): {', '.join(self.codes)}"
        c = self.convention
        weights = {"soft": "alpha weights the soft (teacher) term, as in the workbench",
                   "hard": "alpha weights the hard (label) term, as in torchdistill"}
        lines = [f"KD loss audit: {verdict}",
                 f"convention: {weights.get(c.get('alpha_weights'), 'the role of alpha is unknown')}; "
                 f"soft term: {c.get('soft_form')}, scale {c.get('soft_scale')}; hard term: {c.get('hard_form')}"]
        lines += [f"- [{f.code}] {f.message}" for f in self.findings]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- input checks
def _check_arguments(fn, num_classes, batch_size, seed) -> tuple:
    """ValueError naming the parameter, the value and what is allowed; returns the three integers
    as Python ints (numpy integers are accepted; torch's Generator refuses them)."""
    if not callable(fn):
        raise ValueError(f"fn must be callable as fn(student_logits, teacher_logits, labels, temperature, alpha) "
                         f"-> scalar tensor, got {fn!r} ({type(fn).__name__})")
    for name, value, high in (("num_classes", num_classes, MAX_CLASSES), ("batch_size", batch_size, MAX_BATCH)):
        # 2 is the least that tells a class mean (1/C) or a batch sum (x B) from the batchmean.
        if not _integer(value) or not 2 <= value <= high:
            raise ValueError(f"{name} must be an integer from 2 to {high}, got {value!r}")
    if not _integer(seed) or not -2 ** 63 <= seed < 2 ** 64:  # what torch's Generator.manual_seed takes
        raise ValueError(f"seed must be an integer from -2**63 to 2**64 - 1, got {seed!r}")
    return int(num_classes), int(batch_size), int(seed)


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


# ---------------------------------------------------------------------------------- probing fn
class _BadReturn(ValueError):
    """fn returned something that is not a one-element tensor."""


class _Probe:
    """Calls ``fn`` on fixed synthetic inputs; memoises (value, gradient w.r.t. the student)."""

    def __init__(self, fn, num_classes: int, batch_size: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        shape = (batch_size, num_classes)
        self.fn, self.classes, self.batch = fn, num_classes, batch_size
        self.student = LOGIT_SCALE * torch.randn(shape, generator=g, dtype=torch.float64)
        self.teachers = [LOGIT_SCALE * torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2)]
        labels = torch.randint(num_classes, (batch_size,), generator=g)
        # The other labels differ from the first in every sample, so any CE term must move.
        shift = torch.randint(1, num_classes, (batch_size,), generator=g)
        self.labels = [labels, (labels + shift) % num_classes]
        self._memo = {}
        self.candidate_memo = {}  # id(candidate) -> results at TEMPERATURES (see _candidate_values)

    def __call__(self, T: float, alpha: float, teacher: int = 0, labels: int = 0):
        key = (T, alpha, teacher, labels)
        if key not in self._memo:
            self._memo[key] = self._call(T, alpha, self.teachers[teacher], self.labels[labels])
        return self._memo[key]

    def _call(self, T, alpha, teacher, labels):
        # Fresh copies each call: an in-place edit inside fn must not corrupt later probes.
        s = self.student.clone().requires_grad_(True)
        try:
            with torch.enable_grad():  # the caller may be inside torch.no_grad()
                out = self.fn(s, teacher.clone(), labels.clone(), T, alpha)
                grad = _student_gradient(out, s)
        except _BadReturn as exc:
            raise ValueError(f"{exc}, when called with temperature={T:g}, alpha={alpha:g}") from None
        except Exception as exc:
            raise ValueError(
                f"fn raised {type(exc).__name__}: {exc} when called as fn(student_logits, teacher_logits, labels, "
                f"temperature={T:g}, alpha={alpha:g}) with {self.batch}x{self.classes} float64 logits and int64 "
                "labels; audit_kd_loss needs a scalar tensor for every temperature > 0 and alpha in [0, 1]") from exc
        return float(out.detach().reshape(())), grad


def _student_gradient(out, s):
    """d out / d s; zeros where out does not depend (differentiably) on the student."""
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        what = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else repr(type(out).__name__)
        raise _BadReturn(f"fn must return a scalar tensor (one element), got {what}")
    if not out.requires_grad:
        return torch.zeros_like(s)
    (grad,) = torch.autograd.grad(out.reshape(()), s, allow_unused=True)
    return torch.zeros_like(s) if grad is None else grad.detach().to(torch.float64)


def _changed(a: float, b: float) -> bool:
    return abs(a - b) > SAME_RTOL * max(1.0, abs(a), abs(b))


# ---------------------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class _Candidate:
    """A soft-term formula without any T^2 factor, batch-averaged and summed over classes."""
    formula: str  # as text, for messages
    form: str  # the soft_form it is (an attempt at)
    bugs: tuple  # the finding codes it embodies
    t_power: int  # the exponent of T in the correct form's scale
    term: Callable  # (s, t, T) -> scalar


def _kind_table():
    """Per-sample terms of (log p_s, log p_t), with the form they attempt and their bug codes."""
    e = torch.exp
    return [
        ("kl", (), "KL(softmax({t}) || softmax({s}))", lambda ls, lt: (e(lt) * (lt - ls)).sum(-1)),
        ("soft-target-ce", (), "-sum softmax({t}) * log_softmax({s})", lambda ls, lt: -(e(lt) * ls).sum(-1)),
        ("mse-soft", (), "sum (softmax({s}) - softmax({t}))^2", lambda ls, lt: (e(ls) - e(lt)).pow(2).sum(-1)),
        ("kl", ("reverse-kl",), "KL(softmax({s}) || softmax({t}))", lambda ls, lt: (e(ls) * (ls - lt)).sum(-1)),
        # F.kl_div(input, target) computes target * (log target - input): input must be log-probabilities.
        ("kl", ("probabilities-as-log",), "F.kl_div(softmax({s}), softmax({t}))",
         lambda ls, lt: (e(lt) * (lt - e(ls))).sum(-1)),
        ("kl", ("probabilities-as-log",), "F.kl_div(log_softmax({s}), softmax({t}), log_target=True)",
         lambda ls, lt: (e(e(lt)) * (e(lt) - ls)).sum(-1)),
        ("kl", ("probabilities-as-log",), "F.kl_div(softmax({s}), softmax({t}), log_target=True)",
         lambda ls, lt: (e(e(lt)) * (e(lt) - e(ls))).sum(-1)),
    ]


def _make_candidates() -> list:
    """Every kind with T on both sides, then on one side only; then mse-logits (T unused)."""
    placements = (((True, True), ()), ((True, False), ("temperature-one-side",)),
                  ((False, True), ("temperature-one-side",)))
    out = []
    for (on_s, on_t), side_bugs in placements:
        for form, bugs, text, per_sample in _kind_table():
            def term(s, t, T, per_sample=per_sample, on_s=on_s, on_t=on_t):
                ls = F.log_softmax(s / T if on_s else s, dim=-1)
                lt = F.log_softmax(t / T if on_t else t, dim=-1)
                return per_sample(ls, lt).mean()
            formula = text.format(s="s/T" if on_s else "s", t="t/T" if on_t else "t")
            out.append(_Candidate(formula, form, bugs + side_bugs, 2, term))
    out.append(_Candidate("0.5 * mean_classes((s - t)^2)", "mse-logits", (), 0,
                          lambda s, t, T: 0.5 * (s - t).pow(2).mean(-1).mean()))
    # Correct forms first, so that a correct loss is matched within four tries; the stable sort
    # keeps KL with T on both sides at index 0, the reference the messages measure against.
    return sorted(out, key=lambda candidate: bool(candidate.bugs))


_CANDIDATES = _make_candidates()


def _candidate_values(candidate: _Candidate, probe: _Probe) -> list:
    """(value, gradient w.r.t. the student) of the candidate at each of TEMPERATURES (memoised)."""
    key = id(candidate)
    if key not in probe.candidate_memo:
        probe.candidate_memo[key] = _evaluate_candidate(candidate, probe)
    return probe.candidate_memo[key]


def _evaluate_candidate(candidate: _Candidate, probe: _Probe) -> list:
    results = []
    for T in TEMPERATURES:
        s = probe.student.clone().requires_grad_(True)
        with torch.enable_grad():
            value = candidate.term(s, probe.teachers[0], T)
            (grad,) = torch.autograd.grad(value, s)
        results.append((float(value.detach()), grad))
    return results


def _fit(measured: list, reference: list):
    """k(T) with measured = k(T) * reference in value and gradient at every T, or None."""
    ks = []
    for (value, grad), (ref_value, ref_grad) in zip(measured, reference):
        norm2 = float((ref_grad * ref_grad).sum())
        if norm2 == 0.0:
            return None
        k = float((grad * ref_grad).sum()) / norm2  # least squares on the gradient
        grad_off = float((grad - k * ref_grad).norm()) > RTOL * float(grad.norm())
        value_off = abs(value - k * ref_value) > RTOL * max(abs(value), 1e-12)
        if grad_off or value_off:
            return None
        ks.append(k)
    return ks


def _power_law(ks: list):
    """(c, p) with k(T) = c * T^p at every T, or None (a sign change, or no power law)."""
    if min(ks) <= 0:
        return None
    p = math.log(ks[-1] / ks[0]) / math.log(TEMPERATURES[-1] / TEMPERATURES[0])
    c = ks[0] / TEMPERATURES[0] ** p
    if any(abs(k - c * T ** p) > 10 * RTOL * k for k, T in zip(ks, TEMPERATURES)):
        return None
    return c, p


def _grad_ratio(results: list, power: float = 0.0) -> float:
    """|G(8)| / |G(2)| of T^power * term: how the gradient scales from T=2 to T=8."""
    at = dict(zip(TEMPERATURES, results))
    low, high = float(at[2.0][1].norm()) * 2.0 ** power, float(at[8.0][1].norm()) * 8.0 ** power
    return high / low if low > 0 else math.nan


def _power_text(c: float, p: float) -> str:
    """'0.1 x T^2': a fitted scale, the exponent shown as an integer when it is one."""
    shown = f"{round(p)}" if abs(p - round(p)) < 0.05 else f"{p:.2f}"
    return f"{c:.4g} x T^{shown}"


# ---------------------------------------------------------------------------------- the checks
def _finiteness(probe: _Probe):
    """A not-finite Finding for the first grid point with NaN/inf in value or gradient, or None."""
    bad = []
    for T in TEMPERATURES:
        for alpha in ALPHAS:
            value, grad = probe(T, alpha)
            if not math.isfinite(value) or not bool(torch.isfinite(grad).all()):
                bad.append((T, alpha, value, int((~torch.isfinite(grad)).sum())))
    if not bad:
        return None
    T, alpha, value, bad_grads = bad[0]
    return Finding("not-finite", (
        f"the loss is not finite on ordinary inputs: at T={T:g}, alpha={alpha:g} it returned {value:.6g} with "
        f"{bad_grads} non-finite gradient entries (of {probe.batch * probe.classes}); measured on logits "
        f"~ {LOGIT_SCALE:g}*randn, float64, at {len(bad)} of {len(TEMPERATURES) * len(ALPHAS)} points of the "
        f"grid T in {TEMPERATURES} x alpha in {ALPHAS}; the other checks were skipped. Fix: take logs with "
        "F.log_softmax(x / T, dim=-1) rather than torch.log(F.softmax(...)), and divide by nothing that can be "
        f"0 (alpha, 1 - alpha, a count), e.g. `{REFERENCE_LINE}`"))


_DETACHED_CAUSES = ("typical causes: `.detach()`, `.item()` or `.data` on the loss or on the student logits, "
                    "or the loss computed under `torch.no_grad()` / `torch.inference_mode()`")


def _no_gradient(probe: _Probe):
    """no-gradient when the loss gives the student's logits a zero gradient at every grid point:
    a loss that trains nothing, however right its values are."""
    points = [(T, alpha) for T in TEMPERATURES for alpha in ALPHAS]
    if any(bool(probe(T, alpha)[1].any()) for T, alpha in points):
        return None
    return Finding("no-gradient", (
        f"the loss trains nothing: its gradient with respect to student_logits is exactly zero at all "
        f"{len(points)} points of the grid T in {TEMPERATURES} x alpha in {ALPHAS}, so optimizer.step() never "
        f"changes the student; the other checks were skipped ({_DETACHED_CAUSES}). Fix: compute it from "
        f"student_logits with autograd on, e.g. `{REFERENCE_LINE}`"))


def _part_without_gradient(part: str, alpha: float, temperatures: tuple, results: list):
    """no-gradient for one term (measured alone, at the alpha where the other has weight 0)."""
    if any(bool(grad.any()) for _, grad in results):
        return None
    return Finding("no-gradient", (
        f"the {part} term trains nothing: at alpha={alpha:g}, where it is the whole loss, its gradient with "
        f"respect to student_logits is exactly zero at T in {temperatures} although its value is {results[0][0]:.4g} ({_DETACHED_CAUSES} inside that term). Fix: compute "
        f"it from student_logits itself, e.g. `{REFERENCE_LINE}`"))


def _teacher_dependence(probe: _Probe) -> dict:
    """alpha -> whether replacing the teacher's logits changes the loss (at PROBE_T)."""
    return {a: _changed(probe(PROBE_T, a)[0], probe(PROBE_T, a, teacher=1)[0]) for a in (0.0, 0.5, 1.0)}


def _convention(uses_teacher: dict) -> str:
    """'soft' if alpha=0 drops the teacher (the workbench), 'hard' if alpha=1 does (torchdistill)."""
    if uses_teacher[1.0] and not uses_teacher[0.0]:
        return "soft"
    if uses_teacher[0.0] and not uses_teacher[1.0]:
        return "hard"
    return "unknown"


def _teacher_ignored(probe: _Probe, uses_teacher: dict):
    """teacher-ignored when no alpha lets the teacher's logits move the loss."""
    if any(uses_teacher.values()):
        return None
    deltas = [abs(probe(PROBE_T, a)[0] - probe(PROBE_T, a, teacher=1)[0]) for a in uses_teacher]
    return Finding("teacher-ignored", (
        f"the loss ignores the teacher: replacing teacher_logits by other random logits changed it by at most "
        f"{max(deltas):.3g} at alpha in {tuple(uses_teacher)} (T={PROBE_T:g}), so nothing is distilled. "
        f"Fix: add the soft term, e.g. `{REFERENCE_LINE}`"))


def _labels_ignored(probe: _Probe, alpha_weights: str):
    """Labels must matter wherever the hard term has weight: at alpha=0.5 and at full hard weight."""
    alphas = {"soft": (0.0, 0.5), "hard": (1.0, 0.5)}.get(alpha_weights, (0.5,))
    ignored = [a for a in alphas if not _changed(probe(PROBE_T, a)[0], probe(PROBE_T, a, labels=1)[0])]
    if not ignored:
        return None
    weight = "alpha" if alpha_weights == "hard" else "(1 - alpha)"
    return Finding("labels-ignored", (
        f"the hard (label) term is missing: changing every label changed the loss by "
        f"{max(abs(probe(PROBE_T, a)[0] - probe(PROBE_T, a, labels=1)[0]) for a in ignored):.3g} at alpha in "
        f"{tuple(ignored)} (T={PROBE_T:g}), where the cross-entropy should weigh {weight}. Fix: add "
        f"`{weight} * F.cross_entropy(student_logits, labels)` to the loss"))


def _hard_without_gradient(probe: _Probe, alpha_weights: str):
    """no-gradient for the hard term: at full hard weight the labels move the loss but not the student."""
    if alpha_weights == "unknown":
        return None
    alpha = 0.0 if alpha_weights == "soft" else 1.0
    if not _changed(probe(PROBE_T, alpha)[0], probe(PROBE_T, alpha, labels=1)[0]):
        return None  # no hard term at all: labels-ignored says so
    return _part_without_gradient("hard (label)", alpha, (PROBE_T,), [probe(PROBE_T, alpha)])


def _soft_term(probe: _Probe, alpha_weights: str):
    """(soft alpha, results at TEMPERATURES) of the loss where the hard weight is 0, or a reason why not."""
    if alpha_weights == "unknown":
        return None, "not isolated: no alpha drops the teacher, so alpha does not separate the terms"
    alpha = 1.0 if alpha_weights == "soft" else 0.0
    if _changed(probe(PROBE_T, alpha)[0], probe(PROBE_T, alpha, labels=1)[0]):
        return None, f"not isolated: at alpha={alpha:g}, where the hard weight should be 0, the labels still matter"
    return alpha, [probe(T, alpha) for T in TEMPERATURES]


def _match(measured: list, probe: _Probe):
    """The first candidate (correct forms first) whose k(T) fits, with its results and k(T)."""
    for candidate in _CANDIDATES:
        reference = _candidate_values(candidate, probe)
        ks = _fit(measured, reference)
        if ks is not None:
            return candidate, reference, ks
    return None, None, None


def _hard_form(probe: _Probe, alpha_weights: str) -> str:
    """'ce' when the loss at full hard weight is F.cross_entropy (value and gradient), else 'unknown'."""
    if alpha_weights == "unknown":
        return "unknown"
    alpha = 0.0 if alpha_weights == "soft" else 1.0
    s = probe.student.clone().requires_grad_(True)
    with torch.enable_grad():
        ce = F.cross_entropy(s, probe.labels[0])
        (ce_grad,) = torch.autograd.grad(ce, s)
    ks = _fit([probe(PROBE_T, alpha)], [(float(ce.detach()), ce_grad)])
    return "ce" if ks is not None and abs(ks[0] - 1) < RTOL else "unknown"


# ---------------------------------------------------------------------------------- soft findings
def _distance_from_reference(measured: list, probe: _Probe):
    """(value, gradient) relative distances from T^2 * KL at the T where the gradient is farthest."""
    distances = []
    reference = _candidate_values(_CANDIDATES[0], probe)
    for T, (value, grad), (ref_value, ref_grad) in zip(TEMPERATURES, measured, reference):
        value_off = abs(value - T ** 2 * ref_value) / abs(T ** 2 * ref_value)
        distances.append((float((grad - T ** 2 * ref_grad).norm() / (T ** 2 * ref_grad).norm()), value_off, T))
    grad_off, value_off, T = max(distances)
    return value_off, grad_off, T


def _form_findings(candidate: _Candidate, measured: list, probe: _Probe, where: str) -> list:
    """reverse-kl / probabilities-as-log / temperature-one-side from a matched buggy formula."""
    value_off, grad_off, worst_T = _distance_from_reference(measured, probe)
    how = (f"the soft term ({where}) equals k(T) * {candidate.formula} in value and gradient at T in "
           f"{TEMPERATURES} (to {RTOL:g}), while its value and gradient are {value_off:.0%} and {grad_off:.0%} "
           f"away from the reference T^2 * KL(softmax(t/T) || softmax(s/T)) at T={worst_T:g}")
    fixes = {
        "reverse-kl": ("it computes KL(student || teacher) instead of KL(teacher || student) (F.kl_div's "
                       "arguments swapped: input must be the student's log-probabilities, target the teacher's)",
                       KL_LINE),
        "probabilities-as-log": ("probabilities are passed where F.kl_div expects log-probabilities",
                                 "F.kl_div(F.log_softmax(s / T, dim=-1), F.softmax(t / T, dim=-1), "
                                 "reduction='batchmean')  # or both log_softmax with log_target=True"),
        "temperature-one-side": ("only one side's logits are divided by T (student and teacher must both be "
                                 "softened by the same T)",
                                 "F.log_softmax(student_logits / T, dim=-1) and F.log_softmax(teacher_logits / T, "
                                 "dim=-1)"),
    }
    return [Finding(code, f"{fixes[code][0]}: {how}. Fix: `{fixes[code][1]}`") for code in candidate.bugs]


# A line of code with the T^2 factor, per soft form (the fix of missing-t2).
_WITH_T2 = {"kl": "T**2 * " + KL_LINE,
            "soft-target-ce": "-T**2 * (F.softmax(t / T, dim=-1) * F.log_softmax(s / T, dim=-1)).sum(dim=-1).mean()",
            "mse-soft": "T**2 * (F.softmax(s / T, dim=-1) - F.softmax(t / T, dim=-1)).pow(2).sum(dim=-1).mean()",
            "mse-logits": "0.5 * F.mse_loss(student_logits, teacher_logits)  # raw logits, not divided by T"}
# A line of code with the batchmean reduction, per soft form (the fix of class-mean-reduction).
_BATCHMEAN = {"kl": "F.kl_div(..., reduction='batchmean')  # or nn.KLDivLoss(reduction='batchmean')",
              "soft-target-ce": "-(p_t * log_p_s).sum(dim=-1).mean()",
              "mse-soft": "(p_s - p_t).pow(2).sum(dim=-1).mean()  # not F.mse_loss(p_s, p_t)"}


def _scale_findings(candidate, reference, measured, ks, probe, where: str):
    """(findings, scale text): class-mean-reduction and missing-t2 from k(T) = c * T^p."""
    law = _power_law(ks)
    if law is None:
        return [], "k(T) = " + ", ".join(f"{k:.4g}" for k in ks) + " (no power law of T)"
    c, p = law
    fitted = f"fitted to {candidate.formula}, {where}, its scale is {_power_text(c, p)}"
    findings = []
    # mse-logits is a class mean by definition (Ba & Caruana): no class-mean check for it.
    if candidate.form != "mse-logits" and abs(c * probe.classes - 1) < 10 * RTOL:
        findings.append(_class_mean(candidate, c, fitted, probe.classes))
    if p - candidate.t_power <= -0.5:  # a T^2 (or a T) short of the correct scale
        findings.append(_missing_t2(candidate, _grad_ratio(measured),
                                    _grad_ratio(reference, candidate.t_power), fitted))
    return findings, _power_text(c, p) + f" (correct: {_power_text(1.0, candidate.t_power)})"


def _class_mean(candidate, c: float, fitted: str, classes: int) -> Finding:
    return Finding("class-mean-reduction", (
        f"the soft term is averaged over the classes as well as the samples (reduction='mean', the default of "
        f"F.kl_div and nn.KLDivLoss): {fitted} where the batchmean form has {_power_text(1.0, candidate.t_power)}, "
        f"i.e. {c:.4g} = 1/C for C={classes} classes, which weakens the soft term {classes}-fold. "
        f"Fix: `{_BATCHMEAN[candidate.form]}`"))


def _missing_t2(candidate, measured_ratio: float, right_ratio: float, fitted: str) -> Finding:
    return Finding("missing-t2", (
        f"the soft term lacks the T^2 factor: {fitted} where the correct form has "
        f"{_power_text(1.0, candidate.t_power)}; from T=2 to T=8 its gradient w.r.t. the student logits changes "
        f"x{measured_ratio:.3g} against x{right_ratio:.3g} for the same formula at its correct scale, so the "
        f"soft term's weight drifts with T. Fix: `soft_loss = T**2 * soft_loss`, e.g. "
        f"`{_WITH_T2[candidate.form]}`"))


def _unmatched_t2(measured: list, probe: _Probe, where: str):
    """missing-t2 for an unrecognised form: its gradient falls ~T^-2 faster than the reference's."""
    measured_ratio = _grad_ratio(measured)
    reference_ratio = _grad_ratio(_candidate_values(_CANDIDATES[0], probe), 2)
    if not measured_ratio > 0 or not reference_ratio > 0:
        return None
    exponent = math.log(measured_ratio / reference_ratio) / math.log(4.0)
    if exponent > MISSING_T2_UNKNOWN_FORM:
        return None
    return Finding("missing-t2", (
        f"the soft term (an unrecognised formula, {where}) seems to lack the T^2 factor: from T=2 to T=8 its "
        f"gradient w.r.t. the student logits changes x{measured_ratio:.3g} against x{reference_ratio:.3g} for the "
        f"reference T^2 * KL: an extra factor of about T^{exponent:.2f}. Fix: `soft_loss = T**2 * soft_loss`"))


def _soft_analysis(probe: _Probe, alpha_weights: str):
    """(findings, soft_form, soft_scale) from the isolated soft term."""
    alpha, measured = _soft_term(probe, alpha_weights)
    if alpha is None:
        return [], "unknown", measured
    detached = _part_without_gradient("soft (teacher)", alpha, TEMPERATURES, measured)
    if detached is not None:  # no gradient to fit formulas to
        return [detached], "unknown", "not measured: the soft term has no gradient"
    where = f"the loss at alpha={alpha:g}"
    candidate, reference, ks = _match(measured, probe)
    if candidate is None:
        finding = _unmatched_t2(measured, probe, where)
        return [finding] if finding else [], "unknown", "not measured: no known formula matches"
    findings = _form_findings(candidate, measured, probe, where)
    scale_findings, scale = _scale_findings(candidate, reference, measured, ks, probe, where)
    return findings + scale_findings, candidate.form, scale


# ---------------------------------------------------------------------------------- entry point
def audit_kd_loss(fn, *, num_classes: int = 10, batch_size: int = 64, seed: int = 0) -> AuditReport:
    """Probe ``fn(student_logits, teacher_logits, labels, temperature, alpha) -> scalar tensor`` on
    synthetic logits and report deviations from a correct distillation loss (see the module docstring).

    ``num_classes`` x ``batch_size`` is the size of the synthetic logits (``seed`` seeds them); the
    defaults take ~10 ms for a correct loss and ~0.1 s for an unrecognised one on one CPU core.
    ``report.convention`` holds ``alpha_weights`` ("soft", "hard", "unknown"), ``soft_form``
    ("kl", "soft-target-ce", "mse-logits", "mse-soft", "unknown"; for a buggy soft term, the form it
    attempts), ``soft_scale`` (the fitted k(T) against the form's correct scale, or why not measured)
    and ``hard_form`` ("ce" when the hard term is F.cross_entropy, else "unknown").

    Raises ValueError for bad arguments, and when ``fn`` raises or returns something other than a
    one-element tensor (naming the exception and the call).
    """
    num_classes, batch_size, seed = _check_arguments(fn, num_classes, batch_size, seed)
    probe = _Probe(fn, num_classes, batch_size, seed)
    convention = {"alpha_weights": "unknown", "soft_form": "unknown", "soft_scale": "not measured",
                  "hard_form": "unknown"}
    not_finite = _finiteness(probe)
    if not_finite is not None:  # every later measurement would be NaN-polluted
        return AuditReport([not_finite], convention)
    no_gradient = _no_gradient(probe)
    if no_gradient is not None:  # nothing to measure a formula's gradient against
        return AuditReport([no_gradient], convention)
    uses_teacher = _teacher_dependence(probe)
    alpha_weights = _convention(uses_teacher)
    findings = [f for f in (_teacher_ignored(probe, uses_teacher), _labels_ignored(probe, alpha_weights),
                            _hard_without_gradient(probe, alpha_weights)) if f]
    soft_findings, soft_form, soft_scale = _soft_analysis(probe, alpha_weights)
    convention.update(alpha_weights=alpha_weights, soft_form=soft_form, soft_scale=soft_scale,
                      hard_form=_hard_form(probe, alpha_weights))
    return AuditReport(findings + soft_findings, convention)
