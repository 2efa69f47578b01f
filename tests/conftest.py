"""Test configuration: offline Hugging Face caches in a temp dir, one torch thread.

The HF environment variables are read when huggingface_hub / datasets are imported, so they are set
here, before any test module imports them.
"""

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="hfgen-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(_HF_HOME, "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("HF_TOKEN", None)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator: same seed, same samples."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def no_pyplot_figures_left():
    """The figures are built without pyplot: none may be left open in pyplot's registry."""
    import matplotlib.pyplot as plt

    yield
    leaked = plt.get_fignums()
    plt.close("all")
    assert leaked == []


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each in-process training run starts from a clean Accelerate state (a process-wide singleton)."""
    yield
    from factories import reset_accelerate

    reset_accelerate()
