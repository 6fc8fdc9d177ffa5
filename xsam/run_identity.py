"""The settings that do not change what a run computes: where it is stored, how it is shown,
how it resumes. One list, read by the run directory's hash (``train.py``) and by the tables'
comparisons of runs' configs (:mod:`xsam.tables.table`), so that the two never disagree."""

NOT_IN_RUN_IDENTITY = (
    *("run_root", "data_root", "logger", "loader", "progress", "sync_every", "device"),
    *("resume", "objective"),
)
