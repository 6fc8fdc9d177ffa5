"""A run's directory: its name follows from the config; it describes the run completely.

Layout (see docs/INTERFACES.md): ``config.yaml``, ``meta.json``, ``metrics.jsonl``,
``diagnostics.jsonl``, ``checkpoint.pt`` and, once the run has finished, ``summary.json``.
:class:`RunDir` is the one reader of that format: train.py, the tables (:mod:`xsam.tables`)
and the scripts read a run through it.
"""

import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from xsam import checkpoint


def config_hash(semantic_config: dict[str, Any]) -> str:
    """8 hex digits of the SHA-1 of the config's canonical JSON."""
    blob = json.dumps(semantic_config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def run_name(choices: dict[str, str], seed: int, digest: str) -> str:
    return f"{choices['dataset']}-{choices['model']}-{choices['optimizer']}-s{seed}-{digest}"


def git_state(repo: Path) -> dict[str, Any]:
    """The commit of the code and whether tracked files differ from it."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit or None, "dirty": dirty}


class DamagedRunDir(Exception):
    """A run directory file that cannot be read; the message names it and what to do."""


RUN_FILES = (
    "checkpoint.pt",
    "metrics.jsonl",
    "diagnostics.jsonl",
    "meta.json",
    "summary.json",
    "sharpness.json",
    "budget.json",  # what a time budget fixed (xsam.budget); set aside, it is measured again
)
_REMEDY = (
    "rerun with resume=from_last_good to keep it aside as {aside} and go on from what is intact, "
    "or resume=restart to set the run's files aside and start over"
)


@dataclass
class RunDir:
    path: Path
    _checkpoint: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def summary_file(self) -> Path:
        return self.path / "summary.json"

    def is_finished(self) -> bool:
        return self.summary_file.exists()

    def create(self, resolved_yaml: str, meta: dict[str, Any]) -> None:
        """Make the folder and describe the run; the first launch's meta is kept on resume."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.yaml").write_text(resolved_yaml)
        meta_file = self.path / "meta.json"
        if meta_file.exists():
            meta = {**self.read_meta(), "resumed": time.strftime("%FT%T")}
        _write_json(meta_file, meta)

    def read_meta(self) -> dict[str, Any]:
        return self.read_json("meta.json")

    def read_summary(self) -> dict[str, Any]:
        return self.read_json("summary.json")

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    def read_config(self) -> dict[str, Any]:
        """The resolved config as plain data; {} when the run has not written it yet."""
        if not self.config_file.is_file():
            return {}
        return yaml.safe_load(self.config_file.read_text()) or {}

    def read_json_if_any(self, name: str) -> dict[str, Any] | None:
        """``name`` (meta.json, summary.json, ...) or None when the run has not written it."""
        return self.read_json(name) if (self.path / name).is_file() else None

    def read_intact(self, name: str) -> list[dict[str, Any]]:
        """A JSONL file's records up to its first unreadable line (a run killed mid-write
        leaves a torn last line); for readers that must not stop at a running run."""
        return self._parse_jsonl(name)[0]

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            value = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise self.damaged(name, f"is not valid JSON ({err.__class__.__name__})") from None
        if not isinstance(value, dict):
            raise self.damaged(name, "does not hold a JSON object")
        return value

    def damaged(self, name: str, problem: str) -> DamagedRunDir:
        aside = f"{name}.damaged-<time>"
        return DamagedRunDir(f"{self.path / name} {problem}: " + _REMEDY.format(aside=aside))

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.append_jsonl("metrics.jsonl", record)

    def read_metrics(self) -> list[dict[str, Any]]:
        return self.read_jsonl("metrics.jsonl")

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        with open(self.path / name, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        records, bad = self._parse_jsonl(name)
        if bad is not None:
            raise self.damaged(name, bad)
        return records

    def _parse_jsonl(self, name: str) -> tuple[list[dict[str, Any]], str | None]:
        """The records up to the first unreadable line, and what is wrong with it (or None)."""
        path = self.path / name
        if not path.exists():
            return [], None
        records = []
        for i, line in enumerate(path.read_bytes().decode(errors="replace").splitlines(), 1):
            try:
                record = json.loads(line) if line else None
            except json.JSONDecodeError:
                record = "bad"
            if record is not None and not isinstance(record, dict):
                return records, f"has an unreadable line {i} (half-written, or not JSON)"
            if record is not None:
                records.append(record)
        return records, None

    def truncate_jsonl(self, name: str, key: str, last: int) -> int:
        """Drop records whose ``key`` is past ``last`` (work that will be redone); count them."""
        records = self.read_jsonl(name)
        kept = [r for r in records if r[key] <= last]
        if len(kept) != len(records):
            tmp = self.path / f".{name}.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.path / name)
        return len(records) - len(kept)

    def write_summary(self, summary: dict[str, Any]) -> None:
        _write_json(self.summary_file, summary)

    def load_checkpoint(self) -> dict[str, Any]:
        """checkpoint.pt, loaded once (``weights_only=True``)."""
        if self._checkpoint is None:
            try:
                self._checkpoint = checkpoint.load(self.checkpoint)
            except checkpoint.CheckpointError as err:
                aside = "checkpoint.pt.damaged-<time>"
                raise DamagedRunDir(f"{err}: " + _REMEDY.format(aside=aside)) from None
        return self._checkpoint

    def damage(self) -> list[tuple[str, DamagedRunDir]]:
        """Every run file that cannot be read, with its one-line error; reads, never writes."""
        found = []
        for name in RUN_FILES:
            if not (self.path / name).exists():
                continue
            try:
                if name == "checkpoint.pt":
                    self.load_checkpoint()
                elif name.endswith(".jsonl"):
                    self.read_jsonl(name)
                else:
                    self.read_json(name)
            except DamagedRunDir as err:
                found.append((name, err))
        return found

    def repair(self, mode: str) -> list[str]:
        """What ``resume=`` asks for (see README "Resume"); returns a line per file set aside.

        auto: stop at the first damaged file. from_last_good: keep each damaged file aside
        under a new name; a JSONL file's readable lines are written back under its own name.
        restart: keep every run file aside (damaged or not), so that the run starts over.
        """
        if not self.path.exists():
            return []
        damaged = self.damage()
        if mode == "auto":
            if damaged:
                raise damaged[0][1]
            return []
        names = [n for n in RUN_FILES if (self.path / n).exists()] if mode == "restart" else []
        names = names or [n for n, _ in damaged]
        stamp = time.strftime("%Y%m%dT%H%M%S")
        done = []
        for name in names:
            good = self._parse_jsonl(name)[0] if name.endswith(".jsonl") else None
            aside = self.path / f"{name}.{'restart' if mode == 'restart' else 'damaged'}-{stamp}"
            os.replace(self.path / name, aside)
            self._checkpoint = None if name == "checkpoint.pt" else self._checkpoint
            if good and mode == "from_last_good":
                (self.path / name).write_text("".join(json.dumps(r) + "\n" for r in good))
            done.append(f"{self.path / name} -> {aside.name}")
        return done

    def check_config(self, semantic: dict[str, Any], semantic_of) -> None:
        """An existing run directory must have been made by this config (its name holds only
        8 hex digits of the config's hash, and config.yaml can be edited by hand)."""
        path = self.path / "config.yaml"
        if not path.exists():
            return
        from omegaconf import OmegaConf

        try:
            theirs = semantic_of(OmegaConf.create(path.read_text()))
        except Exception as err:  # YAML errors, a torn file, keys missing
            problem = f"cannot be read as this run's config ({type(err).__name__})"
            raise DamagedRunDir(f"{path} {problem}: move the run directory away") from None
        differ = sorted(_differing_keys(theirs, semantic))
        if differ:
            raise DamagedRunDir(
                f"{path} was made by another config ({', '.join(differ[:8])} differ): "
                "move the run directory away, or use another study="
            )


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [
            k for key in keys for k in _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        ]
    return [] if a == b else [prefix.rstrip(".")]


def new_meta(choices: dict[str, str], digest: str, repo: Path) -> dict[str, Any]:
    return {
        "choices": choices,
        "git": git_state(repo),
        "config_hash": digest,
        "run_id": f"{digest}-{secrets.token_hex(4)}",  # one per run directory (W&B's id)
        "host": socket.gethostname(),
        "torch": torch.__version__,
        "started": time.strftime("%FT%T"),
    }


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
