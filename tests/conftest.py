import os
import tempfile

# On a shared 2-core machine OpenMP's busy-waiting threads slow torch by 10x or more when any
# other process wants a core; passive waiting costs almost nothing when the machine is idle.
# Set before torch loads (and inherited by the notebook kernels the tests start).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# Trained teachers go to a throwaway cache, never the user's ~/.cache, during tests.
os.environ.setdefault("DISTILL_LIB_CACHE", tempfile.mkdtemp(prefix="distill-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def cleared_cache():
    """The teacher-output cache emptied (memory and disk) before and after the test."""
    from distill_lib.core.cache import clear_cache
    clear_cache(disk=True)
    yield
    clear_cache(disk=True)


@pytest.fixture
def tiny_dataset():
    """60 random 1x28x28 images in 10 classes: enough to exercise the code paths quickly."""
    from distill_lib.core.data import Dataset
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(60, 1, 28, 28, generator=generator)
    labels = torch.arange(60) % 10
    return Dataset("tiny", "train", images, labels, [str(i) for i in range(10)])
