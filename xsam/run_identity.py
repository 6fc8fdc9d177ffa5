"""What makes two runs the same run: the keys of the resolved config that enter the run
directory's hash. One home, read by the hash (``train.py``) and by the tables' comparisons of
runs' configs (:mod:`xsam.tables.table`), so that the two never disagree."""

from typing import Any

# the settings that do not change what a run computes: where it is stored, how it is shown,
# how it resumes
NOT_IN_RUN_IDENTITY = (
    *("run_root", "data_root", "logger", "loader", "progress", "sync_every", "device"),
    *("resume", "objective"),
)

# The study label (``study=table2``): the runs/<study>/ folder and the W&B group. It was the
# config key ``experiment`` until that name went to Hydra overlays, and it has always been
# part of the hash, so the hash reads it under its old name: run directories made before the
# rename keep their names, and a relaunched sweep finds its finished runs.
STUDY = "study"
_STUDY_IN_HASH = "experiment"


def identity_items(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved config's top-level items that the run directory's hash covers."""
    items = {k: v for k, v in resolved.items() if k not in NOT_IN_RUN_IDENTITY}
    if STUDY in items:  # an old config.yaml already says "experiment"
        items[_STUDY_IN_HASH] = items.pop(STUDY)
    return items
