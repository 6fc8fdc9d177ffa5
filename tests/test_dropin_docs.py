"""docs/INTEGRATIONS.md's examples run as written (each after the page's setup block)."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "INTEGRATIONS.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_examples():
    assert len(BLOCKS) >= 7


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
@pytest.mark.parametrize("index", range(1, len(BLOCKS)))
def test_example_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[0] + BLOCKS[index], f"{PAGE.name} block {index}", "exec"), namespace)
    assert "opt" in namespace
