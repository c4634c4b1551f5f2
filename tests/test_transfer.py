"""Transfer tasks, label budgets and arms (notebook 03).

Oracles: every synthetic image carries its own id in two pixels, so what a split holds, what a
model was trained on and what the teacher saw are read back from the pixels themselves, never
from the code's bookkeeping. Class counts come from torch.bincount, normalisation from
torchvision's Normalize, statistics from Python's statistics module.
"""
import math
import statistics

import pytest
import torch

import distill_lib as dl
from distill_lib.core import cache
from distill_lib.core.data import Dataset
from distill_lib.lessons.transfer import (UNLABELLED, class_split_task, cross_dataset_task, load_task, parse_budgets,
                                  parse_classes, split_budget)
from distill_lib.lessons.transfer_arms import (ARMS, TEACHER, UPPER_BOUND, Arm, FrozenBackbone, Schedule, fine_tune_teacher,
                                       initial_student, replace_head, run_experiment, train_arm, training_set,
                                       training_size)
from distill_lib.lessons.transfer_models import ImageNetInput, check_architectures, source_models, torchvision_resnet
from distill_lib.lessons import transfer_results as results
from distill_lib.viz import transfer as transfer_viz

SHAPE = (1, 8, 8)
FAST = Schedule(steps=3, batch_size=16)


def id_dataset(labels, first_id=0, shape=SHAPE, split="train", classes=10) -> Dataset:
    """Random images whose first two pixels encode a unique id (low byte, high byte)."""
    labels = torch.as_tensor(labels)
    n = len(labels)
    images = torch.rand(n, *shape, generator=torch.Generator().manual_seed(first_id))
    ids = torch.arange(first_id, first_id + n)
    images.view(n, -1)[:, 0] = (ids % 256) / 255
    images.view(n, -1)[:, 1] = (ids // 256) / 255
    return Dataset("synthetic", split, images, labels, [f"class{i}" for i in range(classes)])


def ids_of(images: torch.Tensor) -> set:
    pixels = (images.flatten(1)[:, :2] * 255).round().long()
    return set((pixels[:, 0] + 256 * pixels[:, 1]).tolist())


@pytest.fixture
def task():
    train = id_dataset(torch.arange(10).repeat(12))            # 12 images per class, ids 0..119
    test = id_dataset(torch.arange(10).repeat(3), first_id=1000, split="test")
    return class_split_task(train, test, (0, 2, 4, 6, 8))


def recorder(model, seen: list):
    """Record the ids of every batch the model sees while training (shared by deep copies)."""
    def hook(module, inputs):
        if module.training:
            seen.append(ids_of(inputs[0]))
    model.register_forward_pre_hook(hook)
    return model


def mlp(num_classes, seed):
    return dl.build_model("mlp-tiny", num_classes, in_shape=SHAPE, seed=seed)


# ------------------------------------------------------------------------------ splits
def test_class_split_is_disjoint_complete_and_renumbered(task):
    train_ids = set(range(120))
    source, target = ids_of(task.source_train.images), ids_of(task.target_train.images)
    assert source.isdisjoint(target) and source | target == train_ids
    assert task.source_train.classes == ["class0", "class2", "class4", "class6", "class8"]
    assert task.target_classes == ["class1", "class3", "class5", "class7", "class9"]
    # id i has original label i % 10, so the renumbering is checked against the pixels
    for data, offset in ((task.target_train, 1), (task.source_train, 0)):
        original = torch.tensor([i % 10 for i in sorted(ids_of(data.images))])
        order = torch.tensor(sorted(range(len(data)), key=lambda k: ids_of(data.images[k:k + 1]).pop()))
        assert torch.equal(data.labels[order] * 2 + offset, original)
    assert torch.equal(torch.bincount(task.target_test.labels), torch.full((5,), 3))
    assert ids_of(task.target_test.images) <= set(range(1000, 1030))


def test_budget_is_exact_stratified_and_leak_free(task):
    test_ids = ids_of(task.target_test.images)
    for per_class in (1, 5, 12):
        split = split_budget(task, per_class, seed=3)
        labelled, unlabelled = split.labelled(task), split.transfer_set(task)
        assert torch.equal(torch.bincount(labelled.labels, minlength=5), torch.full((5,), per_class))
        pool = unlabelled.images[unlabelled.labels == UNLABELLED]
        assert ids_of(labelled.images).isdisjoint(ids_of(pool))
        assert ids_of(labelled.images) | ids_of(pool) == ids_of(task.target_train.images)
        assert test_ids.isdisjoint(ids_of(unlabelled.images))
        assert len(pool) == len(task.target_train) - 5 * per_class


def test_transfer_set_hides_exactly_the_pool_labels(task):
    split = split_budget(task, 4, seed=0)
    data = split.transfer_set(task)
    kept = data.labels != UNLABELLED
    assert int(kept.sum()) == 20
    truth = {i: (i % 10 - 1) // 2 for i in range(120)}  # target class 2k+1 -> label k
    for k in torch.nonzero(kept).flatten().tolist():
        assert data.labels[k] == truth[ids_of(data.images[k:k + 1]).pop()]


def test_budget_draw_is_repeatable_nested_and_seeded(task):
    a, b = split_budget(task, 3, seed=1), split_budget(task, 3, seed=1)
    assert torch.equal(a.labelled_rows, b.labelled_rows)
    assert not torch.equal(a.labelled_rows, split_budget(task, 3, seed=2).labelled_rows)
    bigger = split_budget(task, 6, seed=1)  # more labels add to the same labelled images
    assert set(a.labelled_rows.tolist()) <= set(bigger.labelled_rows.tolist())


def test_real_fashion_split_is_disjoint_and_stratified():
    task = load_task("fashion-split", "fashion-mnist-mini", source_classes="0,2,5,7,8")
    assert task.target_classes == ["Trouser", "Dress", "Coat", "Shirt", "Ankle boot"]
    assert torch.equal(torch.bincount(task.target_train.labels), torch.full((5,), 1000))
    assert torch.equal(torch.bincount(task.target_test.labels), torch.full((5,), 200))
    assert set(task.source_rows.tolist()).isdisjoint(task.target_rows.tolist())
    assert len(task.source_rows) + len(task.target_rows) == 10_000


@pytest.mark.parametrize("text, message", [("0,0", "distinct"), ("a,b", "comma-separated"), ("10", "distinct"),
                                           ("0,1,2,3,4,5,6,7,8", "fewer than 2")])
def test_bad_source_classes_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_classes(text, 10)


def test_budgets_parse_and_refuse():
    assert parse_budgets("100, 10,all,10", 1000) == [10, 100, 1000]
    for bad in ("0", "1001", "ten", "-5"):
        with pytest.raises(ValueError, match="budgets"):
            parse_budgets(bad, 1000)


def test_budget_larger_than_the_class_is_refused(task):
    with pytest.raises(ValueError, match="per_class=13"):
        split_budget(task, 13, seed=0)


# ------------------------------------------------------------------------------ arms
@pytest.mark.parametrize("key", list(ARMS))
def test_each_arm_trains_on_what_it_claims(key, task):
    split = split_budget(task, 2, seed=0)
    labelled_ids = ids_of(split.labelled(task).images)
    student_seen, teacher_seen = [], []
    source = recorder(mlp(5, seed=1), student_seen)
    teacher = recorder(mlp(5, seed=2), teacher_seen).eval()
    build = lambda k, seed: recorder(mlp(k, seed), student_seen)  # noqa: E731
    cache.clear_cache()
    train_arm(key, task, split, FAST, build_student=build, source_student=source, teacher=teacher, seed=0, device="cpu")
    seen = set().union(*student_seen)
    expected = labelled_ids if ARMS[key].data == "labelled" else ids_of(task.target_train.images)
    assert seen == expected
    assert not teacher_seen  # the teacher never trains inside an arm
    data = training_set(ARMS[key], task, split)
    assert int((data.labels == UNLABELLED).sum()) == len(expected) - len(labelled_ids)
    assert training_size(ARMS[key], split) == len(expected)  # the count recorded without building the set


def test_distilling_arms_ask_the_teacher_about_their_images(task):
    split = split_budget(task, 2, seed=0)
    for key in ARMS:
        asked = []
        teacher = mlp(5, seed=2).eval()
        teacher.register_forward_pre_hook(lambda module, inputs: asked.append(ids_of(inputs[0])))
        cache.clear_cache(disk=True)  # the teacher must really be asked, not the disk
        train_arm(key, task, split, FAST, build_student=mlp, source_student=mlp(5, 1), teacher=teacher,
                  seed=0, device="cpu")
        expected = ids_of(training_set(ARMS[key], task, split).images) if ARMS[key].teacher else set()
        assert set().union(*asked) == expected, key


def test_students_start_from_identical_or_source_weights():
    source = mlp(5, seed=7)
    starts = {key: initial_student(arm, mlp, source, 3, seed=0) for key, arm in ARMS.items()}
    fresh = mlp(3, seed=0)
    for key, model in starts.items():
        model = model.model if isinstance(model, FrozenBackbone) else model
        reference = fresh if ARMS[key].init == "scratch" else source
        for (name, p), (_, q) in zip(model.stages.named_parameters(), reference.stages.named_parameters()):
            assert torch.equal(p, q), (key, name)
        assert model.head.out_features == 3
    heads = [starts[k].model.head if k == "frozen" else starts[k].head for k in ARMS if ARMS[k].init == "source"]
    assert all(torch.equal(h.weight, heads[0].weight) for h in heads)


def test_frozen_arm_keeps_features_and_batch_norm_statistics(task):
    cnn = lambda k, seed: dl.build_model("cnn-small", k, in_shape=SHAPE, seed=seed, channels=(4, 8))  # noqa: E731
    source = cnn(5, 1)
    split = split_budget(task, 3, seed=0)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    frozen = train_arm("frozen", task, split, FAST, build_student=cnn, source_student=source, teacher=None,
                       seed=0, device="cpu").model
    tuned = train_arm("finetune", task, split, FAST, build_student=cnn, source_student=source, teacher=None,
                      seed=0, device="cpu")
    for name, value in frozen.stages.state_dict().items():
        assert torch.equal(value, before[f"stages.{name}"]), name  # weights and BN running stats
    assert any(not torch.equal(v, before[f"stages.{n}"]) for n, v in tuned.stages.state_dict().items())
    assert not torch.equal(frozen.head[-1].weight, replace_head(source, 5, 0).head[-1].weight)


def test_replace_head_leaves_the_source_untouched():
    source = mlp(5, seed=0)
    original = source.head.weight.clone()
    new = replace_head(source, 3, seed=1)
    assert new.head.out_features == 3 and torch.equal(source.head.weight, original)
    assert new.num_classes == 3 and source.num_classes == 5
    assert torch.equal(replace_head(source, 3, seed=1).head.weight, new.head.weight)


def test_teacher_of_a_budget_sees_only_its_labelled_images(task):
    split = split_budget(task, 3, seed=0)
    seen = []
    fine_tune_teacher(recorder(mlp(5, 4), seen), task, split, FAST, seed=0, device="cpu")
    assert set().union(*seen) == ids_of(split.labelled(task).images)


def test_schedule_epochs_give_at_least_the_steps():
    schedule = Schedule(steps=150, batch_size=128)
    assert schedule.epochs_for(50) == 150          # one batch per epoch
    assert schedule.epochs_for(5000) == 4          # 40 batches per epoch: 160 >= 150 updates
    with pytest.raises(ValueError, match="alpha"):
        Schedule(alpha=1.5)
    with pytest.raises(ValueError, match="without a teacher"):
        Arm("bad", "scratch", "labelled+unlabelled", teacher=False)


def test_experiment_records_every_arm_budget_and_the_upper_bound(task):
    sources = {"student": mlp(5, 1), "teacher": mlp(5, 2)}
    records = run_experiment(task, [2, 5], [0, 1], sources_for_seed=lambda seed: sources, build_student=mlp,
                             schedule=FAST, progress="off")
    for seed in (0, 1):
        for per_class in (2, 5):
            got = {r["model"] for r in records if r["seed"] == seed and r["per_class"] == per_class}
            assert got == set(ARMS) | {TEACHER}
        upper = [r for r in records if r["seed"] == seed and r["model"] == UPPER_BOUND]
        assert len(upper) == 1 and upper[0]["train_images"] == len(task.target_train)
    assert all("agreement" in r for r in records if r["model"] in ARMS)
    with pytest.raises(ValueError, match="budget 13"):
        run_experiment(task, [13], [0], sources_for_seed=lambda s: sources, build_student=mlp, schedule=FAST)


# ------------------------------------------------------------------------------ online paths, offline stand-ins
def test_imagenet_input_matches_torchvision_normalize():
    from torchvision.transforms import Normalize
    images = torch.rand(4, 3, 32, 32)
    expected = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(images)
    assert torch.allclose(ImageNetInput()((images - 0.5) / 0.5), expected, atol=1e-6)


def test_resnet_path_with_random_weights_and_fake_cifar():
    fake = id_dataset(torch.arange(10).repeat(2), shape=(3, 32, 32))
    test = id_dataset(torch.arange(10), first_id=500, shape=(3, 32, 32), split="test")
    task = cross_dataset_task("fake imagenet -> fake cifar", None, None, fake, test)
    check_architectures("imagenet-resnet18", "resnet18", "resnet18")
    sources = source_models("imagenet-resnet18", task, student="resnet18", teacher="resnet18", schedule=FAST,
                            seed=0, device="cpu", source_steps=1, weights=None)
    assert sources["student"](fake.images[:2]).shape == (2, 1000)
    before = {k: v.clone() for k, v in sources["student"].stages.state_dict().items()}
    split = split_budget(task, 1, seed=0)
    model = train_arm("frozen", task, split, Schedule(steps=1, batch_size=10), build_student=None,
                      source_student=sources["student"], teacher=None, seed=0, device="cpu")
    assert model(test.images[:3]).shape == (3, 10)
    assert all(torch.equal(v, before[k]) for k, v in model.model.stages.state_dict().items())
    fresh = [torchvision_resnet("resnet18", 10, seed=3) for _ in range(2)]  # the scratch arms' student
    assert all(torch.equal(p, q) for p, q in zip(fresh[0].parameters(), fresh[1].parameters()))


def test_mnist_path_pretrains_on_the_source_images():
    source = id_dataset(torch.arange(10).repeat(3), first_id=2000)
    target = id_dataset(torch.arange(10).repeat(4))
    test = id_dataset(torch.arange(10), first_id=3000, split="test")
    task = cross_dataset_task("fake mnist -> fake fashion", source, None, target, test)
    sources = source_models("mnist", task, student="mlp-tiny", teacher="mlp-small", schedule=FAST, seed=0,
                            device="cpu", source_steps=2)
    assert sources["student"].num_classes == 10 and sources["teacher"].arch["name"] == "mlp-small"
    records = run_experiment(task, [1], [0], sources_for_seed=lambda seed: sources,
                             build_student=lambda k, s: dl.build_model("mlp-tiny", k, in_shape=SHAPE, seed=s),
                             schedule=FAST, progress="off")
    assert {r["model"] for r in records} == set(ARMS) | {TEACHER, UPPER_BOUND}
    with pytest.raises(ValueError, match="same shape"):
        cross_dataset_task("bad", id_dataset([0, 1], shape=(1, 4, 4)), None, target, test)
    with pytest.raises(ValueError, match="student='resnet18'"):
        check_architectures("mnist", "resnet18", "mlp-small")


# ------------------------------------------------------------------------------ summaries and reading
def fake_records():
    accuracy = {"scratch": (0.80, 0.82), "finetune": (0.86, 0.86), "frozen": (0.70, 0.72), "kd_labelled": (0.81, 0.81),
                "kd_unlabelled": (0.84, 0.85), "finetune_kd": (0.88, 0.89), TEACHER: (0.85, 0.86)}
    records = []
    for per_class, shift in ((10, 0.0), (100, 0.05)):
        for seed in (0, 1):
            for model, accs in accuracy.items():
                extra = {} if model == TEACHER else {"agreement": 0.9}
                records.append({"model": model, "per_class": per_class, "seed": seed, "nll": 0.5, "ece": 0.05,
                                "accuracy": accs[seed] + shift, **extra})
        records.append({"model": UPPER_BOUND, "per_class": 1000, "seed": 0, "accuracy": 0.95, "nll": 0.2, "ece": 0.02})
    return records


def test_summary_and_gain_match_statistics():
    table = results.summary(fake_records(), "gain")
    gains = [100 * (0.86 - 0.80), 100 * (0.86 - 0.82)]
    mean, std, n = table["finetune"][10]
    assert math.isclose(mean, statistics.mean(gains)) and math.isclose(std, statistics.stdev(gains)) and n == 2
    acc = results.summary(fake_records(), "accuracy")
    assert math.isclose(acc["finetune_kd"][100][0], statistics.mean([0.93, 0.94]))


def test_reading_reports_paired_effects_with_the_one_verdict_rule():
    # fine-tune at 10 labels: differences +6 and +4 points; interval 5 +- 12.706 * 1.414 / 1.414
    # = 5 +- 12.7: the two-seed interval is wide, so "inconclusive" despite a mean of +5 points
    found = results.effect(fake_records(), "finetune", 10)
    assert found.differences == [pytest.approx(0.06), pytest.approx(0.04)]
    assert found.ci95 == (pytest.approx(0.05 - 12.7062047 * 0.01), pytest.approx(0.05 + 12.7062047 * 0.01))
    assert found.verdict == "inconclusive"
    # KD with unlabelled images vs KD on labelled ones: +3 and +4 points, interval 3.5 +- 6.35
    versus = results.effect(fake_records(), "kd_unlabelled", 10, against="kd_labelled")
    assert versus.mean == pytest.approx(0.035)
    lines = results.reading(fake_records())
    assert "2 seeds" in lines[0]
    assert "+5.00 points (95% CI -7.71 to +17.71, 2 seeds, margin ±0.50): inconclusive with 10 labels per class" in lines[1]
    assert "95.0%" in lines[-1]


def test_transfer_set_comparisons_keep_every_pair_of_arms_apart():
    # notebook 03 once keyed these by (arm, budget): "KD + unlabelled vs KD, labelled only" overwrote
    # "KD + unlabelled vs scratch", so a table row and metrics.json showed the wrong comparison
    found = results.comparisons(fake_records())
    assert set(found) == {(m, a, b) for m, a in results.TRANSFER_SET_COMPARISONS for b in (10, 100)}
    versus_scratch, versus_kd = found[("kd_unlabelled", "scratch", 10)], found[("kd_unlabelled", "kd_labelled", 10)]
    assert versus_scratch.differences == [pytest.approx(0.04), pytest.approx(0.03)]  # 0.84 - 0.80, 0.85 - 0.82
    assert versus_kd.differences == [pytest.approx(0.03), pytest.approx(0.04)]       # 0.84 - 0.81, 0.85 - 0.81
    rows = results.comparison_rows(found)
    assert [row[0] for row in rows] == ["KD, labelled images only vs from scratch", "KD + unlabelled images vs from scratch",
                                        "KD + unlabelled images vs KD, labelled images only"]
    assert rows[1][1] == versus_scratch.text() and rows[2][1] == versus_kd.text() and len(set(map(tuple, rows))) == 3
    saved = results.comparisons_for_json(found)
    assert len(saved) == 6 and saved["kd_unlabelled vs scratch 10"]["mean"] == pytest.approx(0.035)
    assert results.comparison_label("kd_unlabelled", "kd_labelled", short=True) == "KD + unlabelled vs KD (labelled only)"


def test_transfer_set_reading_splits_the_gain_and_follows_the_numbers():
    found = results.comparisons(fake_records())
    lines = results.transfer_set_reading(found)
    assert len(lines) == 2 and lines[0].startswith("With 10 labels per class")
    # +3.50 (vs scratch) = +0.00 (KD on the labels) + +3.50 (the unlabelled images): two seeds, no gain shown
    assert "+3.50 points (inconclusive) = KD on the labelled images vs from scratch +0.00 (inconclusive)" in lines[0]
    assert "not shown to carry most of the gain" in lines[0]
    three_seeds = [r for r in fake_records()] + [
        {**r, "seed": 2, "accuracy": r["accuracy"] + (0.005 if r["model"] == "kd_unlabelled" else 0.0)}
        for r in fake_records() if r["seed"] == 0]
    assert "carry most of the gain, as SimCLRv2 found" in results.transfer_set_reading(results.comparisons(three_seeds))[0]


def test_words_for_budgets_and_the_verdict_rule():
    assert results.per_class_text(1) == "1 label per class" and results.per_class_text(10) == "10 labels per class"
    assert results.budget_header(1) == "1 label/class" and results.budget_header(100) == "100 labels/class"
    rule = results.rule_text()
    assert all(f"**{v}**" in rule for v in ("gain", "loss", "negligible", "inconclusive")) and "±0.50 points" in rule
    assert rule in results.reading(fake_records())[0] and "read off the 95% interval" not in rule


def test_students_beating_their_teacher_are_counted():
    counts = results.students_beating_teacher(fake_records())
    assert counts["finetune_kd"] == (4, 4)  # 0.88/0.89 (+0.05) beat 0.85/0.86 (+0.05) at both budgets
    assert counts["frozen"] == (0, 4) and counts["finetune"] == (2, 4)  # 0.86 > 0.85 only for seed 0


def test_beating_the_teacher_reading_follows_the_counts():
    lines = results.beating_teacher_reading(results.students_beating_teacher(fake_records()), fake_records())
    assert lines[0] == "The student from scratch, which never sees the teacher, is above it in 0 of 4 runs."
    assert "KD, labelled images only: above its teacher in 0 of 4 runs, as often as" in lines[1]
    assert "fine-tune + KD (+ unlabelled): above its teacher in 4 of 4 runs, more often than" in lines[3]
    # teacher minus scratch: +5 and +4 points over two seeds, inconclusive at both budgets
    assert "not shown to be better" in lines[5] and "10 labels per class and 100 labels per class" in lines[5]
    assert lines[6].startswith("The best student here (fine-tune + KD (+ unlabelled) with 100 labels per class, 93.50%")
    assert "1.50 points below the teacher trained on ALL target labels (95.00%)" in lines[6]


def test_metrics_json_has_accuracy_and_agreement_of_every_arm_per_budget():
    metrics = results.metrics_for_json(fake_records())
    for arm in ARMS:
        assert set(metrics["accuracy"][arm]) == {"10", "100"} and set(metrics["agreement"][arm]) == {"10", "100"}
    assert metrics["accuracy"][UPPER_BOUND] == {"1000": 0.95}


def test_overview_figure_splits_the_arms_into_transfer_and_distillation_panels():
    fig = transfer_viz.overview_figure(fake_records())
    (transfer_acc, distill_acc), (transfer_gain, distill_gain) = [fig.axes[:2], fig.axes[2:4]]
    bars = lambda ax: [c.get_label() for c in ax.containers]  # noqa: E731  one error-bar series per model
    assert bars(transfer_acc) == [results.LABELS[m] for m in ("scratch", "finetune", "frozen", TEACHER)]
    assert bars(distill_acc) == [results.LABELS[m] for m in ("scratch", "kd_labelled", "kd_unlabelled", "finetune_kd",
                                                              TEACHER)]
    assert "scratch" not in " ".join(bars(transfer_gain) + bars(distill_gain))  # scratch minus itself is not drawn
    assert len(bars(distill_gain)) == 4
    # accuracy in percent, both accuracy panels on one scale, the upper bound dotted on each
    top = transfer_acc.containers[0].lines[0].get_ydata()
    assert max(top) == pytest.approx(100 * (0.82 + 0.05 + 0.80 + 0.05) / 2)
    assert transfer_acc.get_ylim() == distill_acc.get_ylim()
    assert [line.get_ydata()[0] for ax in (transfer_acc, distill_acc) for line in ax.get_lines()
            if line.get_linestyle() == ":"] == [95.0, 95.0]
    assert transfer_acc.get_yscale() == transfer_gain.get_yscale() == "linear"  # no axis that magnifies noise
    # a strong teacher: renamed, and left out of the gain panel (scored once, so not paired)
    fig = transfer_viz.overview_figure(fake_records(), metrics=("accuracy", "gain"), teacher_label="strong teacher",
                                       groups={"strong": ["scratch", "kd_labelled", TEACHER]}, teacher_gain=False)
    assert bars(fig.axes[0])[-1] == "strong teacher" and bars(fig.axes[1]) == [results.LABELS["kd_labelled"]]
    explorer = transfer_viz.TransferExplorer(fake_records())
    explorer.figure("ece", ["scratch", "finetune"])
    assert explorer.state == {"metric": "ece", "models": ["scratch", "finetune"]}


def test_imagenet_weights_are_not_fetched_without_permission(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the weights cannot be there
    fake = id_dataset(torch.arange(10), shape=(3, 32, 32))
    task = cross_dataset_task("fake", None, None, fake, fake)
    with pytest.raises(FileNotFoundError, match="download=True"):
        source_models("imagenet-resnet18", task, student="resnet18", teacher="resnet18", schedule=FAST, seed=0,
                      device="cpu", source_steps=1)


def test_explorer_widget_redraws_on_a_new_choice():
    explorer = transfer_viz.TransferExplorer(fake_records())
    metric, models = explorer.widget().children[0].children
    metric.value = "agreement"
    models.value = ("kd_unlabelled",)
    assert explorer.state == {"metric": "agreement", "models": ["kd_unlabelled"]}
