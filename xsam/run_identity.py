"""What makes two runs the same run: the keys of the resolved config that enter the run
directory's hash (``semantic_config``, read by ``train.py``), and the settings that never do
(``NOT_IN_RUN_IDENTITY``, read also by the tables' comparisons of runs' configs,
:mod:`xsam.tables.table`), so that the two never disagree."""

from typing import Any

from omegaconf import DictConfig, OmegaConf

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


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config minus the settings that do not change what a run computes."""
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.data_root = "<data_root>"  # the same run on another cluster's storage is the same run
    resolved = OmegaConf.to_container(cfg, resolve=True)
    semantic = identity_items(resolved)
    if semantic.get("time_budget_s") is None:  # unset, it leaves earlier runs' hashes alone
        semantic.pop("time_budget_s", None)
    semantic["data_path"] = "device" if cfg.loader.device_resident else "torchvision"
    # settings that compute nothing here are left out, so that runs made before they existed
    # keep their hash: full epochs, and ASAM's scope on a non-adaptive optimizer
    if semantic.get("train", {}).get("limit_batches") is None:
        semantic.pop("train", None)
    if not semantic["optimizer"].get("adaptive"):
        semantic["optimizer"].pop("adaptive_scope", None)
    if not semantic["diagnostics"].get("sphere_every"):  # the probe is off
        semantic["diagnostics"].pop("sphere_every", None)
    if not semantic["dataset"].get("splits", {}).get("label_noise", 1):  # clean labels
        semantic["dataset"]["splits"].pop("label_noise", None)
    return semantic
