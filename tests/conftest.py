import os
import tempfile

import pytest
import torch

# Trained teachers go to a throwaway cache, never the user's ~/.cache, during tests.
os.environ.setdefault("DISTILL_LIB_CACHE", tempfile.mkdtemp(prefix="distill-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_dataset():
    """60 random 1x28x28 images in 10 classes: enough to exercise the code paths quickly."""
    from distill_lib.data import Dataset
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(60, 1, 28, 28, generator=generator)
    labels = torch.arange(60) % 10
    return Dataset("tiny", "train", images, labels, [str(i) for i in range(10)])
