import json
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def sedd_math() -> dict:
    """Numbers produced by the original SEDD code (see fixtures/sedd_reference/README.json)."""
    return json.loads((FIXTURES / "sedd_reference" / "math.json").read_text())


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
