"""One registry of methods: every name is reached the same way, and the hooks run in the order
``methods/base.py`` documents."""
import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import distill_lib as dl
from distill_lib import methods
from distill_lib.methods import METHODS, LOGIT_LOSSES, Method, get_loss, get_method, logit_method

PACKAGE = Path(dl.__file__).parent


def batch(seed=0, n=8, c=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64), torch.randn(n, c, generator=g, dtype=torch.float64), \
        torch.randint(0, c, (n,), generator=g)


def test_the_logit_losses_are_the_registry_s_logit_methods():
    assert LOGIT_LOSSES == ("kl", "mse-logits", "mse-soft", "dkd")
    for name in LOGIT_LOSSES:
        assert type(get_method(name)) is METHODS[name]
        assert type(logit_method(name, temperature=2.0, alpha=0.5)) is METHODS[name]


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_get_loss_dkd_is_hard_term_plus_alpha_times_the_paper_s_dkd(alpha):
    # the oracle: F.cross_entropy and dl.dkd_loss, itself checked against the paper sample by sample
    s, t, y = batch()
    expected = (1 - alpha) * F.cross_entropy(s, y) + alpha * dl.dkd_loss(s, t, y, temperature=3.0, nckd_weight=2.0)
    got = dl.get_loss("dkd", nckd_weight=2.0)(s, t, y, temperature=3.0, alpha=alpha)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_get_loss_is_the_method_the_loop_trains_with():
    s, t, y = batch(seed=1)
    for name in LOGIT_LOSSES:
        parts = logit_method(name, temperature=2.0, alpha=0.4)(methods.StepOutputs(s, y, t))
        assert get_loss(name)(s, t, y, temperature=2.0, alpha=0.4).item() == pytest.approx(sum(parts.values()).item())


def test_an_unknown_name_is_refused_alike_everywhere(tiny_dataset):
    messages = []
    for call in (lambda: get_loss("hinge"), lambda: logit_method("hinge", temperature=1.0, alpha=0.5),
                 lambda: dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-tiny"), tiny_dataset, loss="hinge")):
        with pytest.raises(ValueError) as info:
            call()
        messages.append(str(info.value))
    assert len(set(messages)) == 1 and "'dkd'" in messages[0], messages


def test_a_bad_option_is_refused_when_the_loss_is_made():
    with pytest.raises(ValueError, match="its options: .*nckd_weight"):
        get_loss("dkd", nckd=8.0)


def test_dkd_through_get_loss_refuses_unlabelled_samples():
    s, t, y = batch()
    with pytest.raises(ValueError, match="needs a label for every sample"):
        get_loss("dkd")(s, t, torch.where(y == 0, -1, y), temperature=2.0, alpha=0.5)
    with pytest.raises(ValueError, match="needs a label for every sample"):
        get_loss("dkd")(s, t, None, temperature=2.0, alpha=1.0)


def test_no_module_of_methods_holds_a_second_name_table():
    # a module-level dict whose keys are registry names is a second registry (SOFT_TERMS was one)
    for path in sorted((PACKAGE / "methods").glob("*.py")):
        if path.name == "registry.py":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                keys = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
                assert not keys & set(METHODS), f"{path.name}: a table keyed by method names, {sorted(keys & set(METHODS))}"


class Recorder(Method):
    """Records each call; its one loss part is plain cross-entropy, so training works."""

    name = "recorder"

    def __init__(self, calls):
        super().__init__()
        self.calls = calls
        self.weight = torch.nn.Parameter(torch.ones(()))

    def _log(self, name):
        self.calls.append(name)

    def student_stages(self):
        self._log("student_stages")
        return ()

    def teacher_stages(self):
        self._log("teacher_stages")
        return ()

    def prepare(self, **shapes):
        self._log("prepare")

    def settings(self):
        self._log("settings")
        return {}

    def student_parameters(self):
        self._log("student_parameters")
        return [self.weight]

    def start_epoch(self, epoch):
        self._log(f"start_epoch {epoch}")

    def before_student_step(self, out):
        self._log("before_student_step")
        return {}

    def forward(self, out):
        self._log("forward")
        return {"ce": self.weight * F.cross_entropy(out.student_logits, out.labels)}

    def epoch_stats(self):
        self._log("epoch_stats")
        return {}

    def eval_metrics(self, student_logits, teacher_logits, labels):
        self._log("eval_metrics")
        return {}

    def end_epoch(self, epoch, history):
        self._log(f"end_epoch {epoch}")


def test_the_hooks_run_in_the_documented_order(tiny_dataset):
    calls = []
    dl.train(dl.build_model("mlp-tiny", seed=0), tiny_dataset, Recorder(calls), teacher=dl.build_model("mlp-tiny", seed=1),
             epochs=2, batch_size=30, eval_set=tiny_dataset, device="cpu", progress="off")
    step = ["before_student_step", "forward"] * 2  # two batches of 30
    epoch = lambda e: [f"start_epoch {e}", *step, "epoch_stats", "eval_metrics", f"end_epoch {e}"]  # noqa: E731
    assert calls == ["student_stages", "teacher_stages", "prepare", "settings", "student_parameters",
                     *epoch(1), *epoch(2)]


def test_an_unknown_option_is_named_alone_with_the_options_there_are():
    # issue 22: loss_options={"bogus": 1} listed alpha and temperature as if they were the problem
    with pytest.raises(ValueError) as refused:
        dl.get_loss("kl", bogus=1)
    message = str(refused.value)
    assert "has no option 'bogus'" in message and "its options: temperature, alpha" in message
    assert "cannot take" not in message and "'alpha'" not in message
