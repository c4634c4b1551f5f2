"""Every notebook's settings: profile values, checks before work, and where runs are written."""
from pathlib import Path

import pytest

from distill_lib import profiles


def test_none_means_the_profiles_value_and_given_values_win():
    quick = profiles.configure("00_quickstart", {"profile": "quick", "epochs": None, "alpha": 0.5})
    full = profiles.configure("00_quickstart", {"profile": "full"})
    table = profiles.NOTEBOOKS["00_quickstart"]
    assert quick.epochs == table["epochs"].quick and full.epochs == table["epochs"].full
    assert quick.alpha == 0.5 and full.alpha == table["alpha"].full
    assert quick.threads == profiles.COMMON["threads"].quick


@pytest.mark.parametrize("notebook, values, message", [
    ("00_quickstart", {"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ("00_quickstart", {"alpha": 1.5}, "alpha must be a number in [0, 1], got 1.5"),
    ("00_quickstart", {"temperature": -1.0}, "temperature must be a finite number > 0, got -1"),
    ("00_quickstart", {"student": "resnet"}, "student must be one of"),
    ("00_quickstart", {"profile": "fast"}, "profile must be one of 'quick', 'full'; got 'fast'"),
    ("00_quickstart", {"interactive": 1}, "interactive must be one of True, False; got 1"),
    ("00_quickstart", {"batch_size": 64}, "batch_size is fixed by the profile"),
    ("03_transfer_vs_distillation", {"budgets": "1,x"}, "budgets must be comma-separated positive integers"),
    ("03_transfer_vs_distillation", {"source_classes": "0,1,2,3,4,5,6,7,8,9"}, "source_classes must be"),
    # what the notebook's own parser refuses, refused before a kernel starts
    ("03_transfer_vs_distillation", {"source_classes": "0,0"}, "source_classes must be distinct"),
    ("03_transfer_vs_distillation", {"source_classes": "0,1,2,3,4,5,6,7,8"}, "leaving at least two classes"),
    ("03_transfer_vs_distillation", {"source": "imagenet-resnet18"}, "student='mlp-tiny' cannot be used with source"),
    ("04_adversarial_distillation", {"warmup_epochs": 6}, "warmup_epochs must be < epochs (6)"),
    ("05_knowledge_matching_lightweighting", {"sparsity": 2.0}, "sparsity must be a number in [0, 1]"),
    ("nope", {}, "no settings for notebook 'nope'"),
])
def test_bad_values_are_refused_with_the_parameter_value_and_what_is_allowed(notebook, values, message):
    with pytest.raises(ValueError) as refused:
        profiles.configure(notebook, values)
    assert message in str(refused.value)
    if notebook != "nope":
        with pytest.raises(ValueError):  # the runner's check, before any kernel starts
            profiles.check_run(notebook, values.get("profile", "quick"), {k: v for k, v in values.items() if k != "profile"})


def test_every_notebook_has_settings_that_pass_their_own_checks():
    notebooks = sorted(p.stem for p in (profiles.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks == sorted(profiles.NOTEBOOKS)
    for notebook in notebooks:
        for profile in profiles.PROFILE_NAMES:
            profiles.configure(notebook, {"profile": profile})


def test_a_relative_run_dir_lies_under_the_repository_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = profiles.configure("01_teacher_training", {"run_dir": "runs/manual/x"})
    assert Path(cfg.run_dir) == profiles.REPO_ROOT / "runs" / "manual" / "x"
    assert profiles.configure("01_teacher_training", {"run_dir": str(tmp_path / "abs")}).run_dir == str(tmp_path / "abs")
    assert (profiles.REPO_ROOT / ".gitignore").read_text().count("/runs/") == 1  # and git ignores it


@pytest.mark.parametrize("text", ["0,2,5,7,8", "3", "0,0", "0,1,2,3,4,5,6,7", "0,1,2,3,4,5,6,7,8", "10", "0,x", ""])
def test_the_early_source_classes_check_agrees_with_the_notebooks_parser(text):
    from distill_lib.lessons.transfer import parse_classes

    def refused(check):
        try:
            check()
        except ValueError:
            return True
        return False
    assert refused(lambda: profiles.class_ids("source_classes", text)) == refused(lambda: parse_classes(text, 10))
