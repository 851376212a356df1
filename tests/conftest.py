"""Shared fixtures: tiny synthetic castings in the real folder layout, one tiny training run.

An OK part is a smooth bright disc with a hub on a dark background; a defective one also has a
dark blob (a blowhole) or a dark scratch somewhere on the disc.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from castinspect.core.config import Config
from castinspect.models.registry import compact

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "casting_data"
SYNTH_SIZE = 96


def make_casting(rng: np.random.Generator, defect: str | None, size: int = SYNTH_SIZE) -> np.ndarray:
    """A grayscale synthetic casting photo; ``defect`` is None, "blob" or "scratch"."""
    img = np.full((size, size), 40, np.float32)
    c = size / 2 + rng.uniform(-3, 3, 2)
    r = size * rng.uniform(0.36, 0.42)
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(xx - c[0], yy - c[1])
    img[d < r] = 150 + rng.uniform(-15, 15)
    img[d < r * 0.35] = 110  # the hub
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    if defect is not None:
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.45, 0.8) * r
        p = (int(c[0] + dist * np.cos(angle)), int(c[1] + dist * np.sin(angle)))
        if defect == "blob":
            cv2.circle(img, p, int(rng.integers(4, 7)), 30, -1)
        else:
            direction = rng.uniform(0, 2 * np.pi)  # a long thin line: unlike a round blob at any size
            q = (int(p[0] + 28 * np.cos(direction)), int(p[1] + 28 * np.sin(direction)))
            cv2.line(img, p, q, 30, 2)
    # Each part's own casting texture (smooth, so it survives resizing), then sensor noise.
    texture = cv2.GaussianBlur(rng.normal(0, 1, img.shape).astype(np.float32), (0, 0), 1.5)
    img += texture / texture.std() * 6 + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split(root: Path, n_per_class: int, rng: np.random.Generator) -> None:
    for cls in ("def_front", "ok_front"):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            defect = None if cls == "ok_front" else ("blob" if i % 2 else "scratch")
            cv2.imwrite(str(folder / f"{cls}_{i:03d}.jpeg"), make_casting(rng, defect))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(0)
    write_split(root / "train", 150, rng)
    write_split(root / "test", 30, rng)
    return root


def tiny_config(epochs: int = 30) -> Config:
    cfg = Config()
    cfg.model = compact("tiny", input_size=64)
    cfg.train.epochs = epochs
    cfg.train.batch_size = 32
    cfg.train.patience = epochs
    cfg.train.min_steps = 0  # exactly the epochs asked for: the tests stay quick
    cfg.train.min_val_to_select = 20  # the synthetic validation splits hold ~60 photos
    cfg.data.val_fraction = 0.2
    return cfg


@pytest.fixture(scope="session")
def trained_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tiny training run per session, reused by the predict, evaluate and CLI tests."""
    from castinspect.training.run import train_and_evaluate

    run_dir = tmp_path_factory.mktemp("run")
    result, metrics = train_and_evaluate(tiny_config(), synth_root, run_dir)
    return result, metrics


@pytest.fixture(scope="session")
def model_path(trained_run) -> Path:
    return trained_run[0].run_dir / "model.ckpt"


def real_data_available() -> bool:
    return (REAL_DATA / "test" / "def_front").is_dir() and not os.environ.get("CASTINSPECT_SKIP_REAL")


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (see services.py)."""
    from services import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """An empty inspection-log database: SQLite in a file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"  # an absolute path: sqlite:////tmp/...
    return request.getfixturevalue("postgres").new_database()
