"""Shared test setup: offline model hubs; fixtures over tests/factories.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .factories import make_bundle
from .s3_server import s3_server  # noqa: F401 - the session's SeaweedFS S3 server fixture

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if not torch.cuda.is_available():  # Triton kernels run in the interpreter on CPU; set before kernels are imported
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def bundle_factory(tmp_path: Path):
    def factory(name: str = "conv", **kwargs) -> Path:
        return make_bundle(tmp_path / "in" / name, conv_id=kwargs.pop("conv_id", name), **kwargs)

    return factory


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 5 espeak-ng demo conversations, run through the job once per test session."""
    from pipeline.job import run
    from synth.demo import make_demo_bundles

    root = tmp_path_factory.mktemp("demo")
    make_demo_bundles(root / "bundles", count=5, seed=0)
    run(["--input", str(root / "bundles"), "--output", str(root / "dataset")])
    return root
