"""docs/INTEGRATIONS.md's examples run as written (each after the page's setup block)."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "INTEGRATIONS.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_examples():
    assert len(BLOCKS) >= 11  # setup, plain loop, contract, fp16, accumulation, timm, ...
    assert sum("lightning" in b for b in BLOCKS) == 3  # automatic, manual, 16-mixed
    assert sum("accelerate" in b for b in BLOCKS) == 1


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state: reset it after its example."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
@pytest.mark.parametrize("index", range(1, len(BLOCKS)))
def test_example_runs(index, tmp_path, monkeypatch, fresh_accelerator_state):
    """Each block, after the setup block, runs to its end (an error fails the test)."""
    monkeypatch.chdir(tmp_path)  # where Lightning may write its logs
    code = compile(BLOCKS[0] + BLOCKS[index], f"{PAGE.name} block {index}", "exec")
    exec(code, {"__name__": "__main__"})
