"""Knowledge distillation on the synthetic castings: the student learns what the teacher says
(a teacher that says the opposite of the labels is followed, at alpha 1), keeps its threshold
policy and records where it came from."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from castinspect.core.config import TrainConfig
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import load_checkpoint
from castinspect.training.distill import Teacher, shrink, student_config
from castinspect.training.run import train_and_evaluate


def quick(cfg):
    cfg.train.epochs, cfg.train.min_steps, cfg.train.patience, cfg.train.min_val_to_select = 12, 0, 12, 20
    return cfg


def test_the_loss_is_zero_where_the_student_says_what_the_teacher_says(model_path):
    teacher = Teacher(load_checkpoint(model_path), alpha=1.0, temperature=3.0)
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.2]])
    soft = torch.softmax(logits / 3.0, dim=1)
    assert teacher.loss(logits, torch.tensor([1, 0]), soft, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert teacher.loss(-logits, torch.tensor([1, 0]), soft, 0.0).item() > 0.1
    x = torch.rand(2, 1, 64, 64)
    assert shrink(x, 48).shape == (2, 1, 48, 48) and shrink(x, 64) is x
    # two classes: no wrong class to tell of, so the outputs are not softened unless asked
    assert Teacher(load_checkpoint(model_path)).temperature == 1.0


def test_the_student_trains_on_the_compact_cnns_schedule_with_the_teachers_policy():
    teacher = load_checkpoint(None)  # the bundled model: a pretrained backbone's short schedule
    cfg = student_config(teacher)
    assert cfg.model.backbone == "castnet" and teacher.config.train.epochs < cfg.train.epochs == TrainConfig().epochs
    assert cfg.train.lr is None and cfg.train.min_steps is None  # filled in from the compact CNN's row
    assert cfg.train.target_recall == 0.99 and cfg.data.locate == teacher.config.data.locate


def test_the_teacher_says_the_same_on_every_backend(model_path):
    ckpt = load_checkpoint(model_path)
    x = torch.rand(16, 1, 64, 64)
    net = ckpt.build_network().eval()
    with torch.no_grad():  # the teacher's own network on the views as the uint8 photos they round to
        logits = net(x.mul(255).round().div(255))
    expected = torch.softmax(logits / (ckpt.temperature * 3.0), dim=1)
    for backend in ("pytorch", "onnxruntime"):
        soft = Teacher(ckpt, temperature=3.0, backend=backend).targets(x)
        assert torch.allclose(soft, expected, atol=1e-4), backend


def test_the_student_follows_its_teacher(model_path, synth_root, tmp_path):
    ckpt = load_checkpoint(model_path)
    cfg = quick(student_config(ckpt, "tiny", input_size=48))
    assert cfg.model.backbone == "castnet" and cfg.data.locate == ckpt.config.data.locate
    result, metrics = train_and_evaluate(cfg, synth_root, tmp_path / "student", teacher=Teacher(ckpt))
    info = result.checkpoint.info
    assert info["distilled_from"]["model"] == ckpt.model_id and info["threshold_rule"] == ckpt.info["threshold_rule"]
    student, teacher = Predictor(result.checkpoint), Predictor(ckpt)
    photos = sorted(str(p) for p in (synth_root / "test").glob("*/*.jpeg"))
    agree = np.mean([a.label == b.label for a, b in zip(student.predict(photos), teacher.predict(photos))])
    assert agree >= 0.9, agree

    # A teacher that says the opposite of every label (its classifier negated): with alpha 1 the
    # student learns the teacher, not the labels.
    liar = copy.deepcopy(ckpt)
    liar.state_dict = {k: -v if k.startswith("fc.") else v for k, v in liar.state_dict.items()}
    cfg = quick(student_config(liar, "tiny", input_size=48))
    cfg.train.min_val_to_select = 10 ** 6  # the last weights: validation's true labels pick no epoch here
    lied, _ = train_and_evaluate(cfg, synth_root, tmp_path / "lied", teacher=Teacher(liar, alpha=1.0))
    flipped = np.mean([a.label != t for a, t in zip(Predictor(lied.checkpoint).predict(photos),
                                                    [p.split("/")[-2] for p in photos])])
    assert flipped >= 0.8, flipped
