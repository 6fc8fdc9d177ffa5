"""A run's directory: its name follows from the config; it describes the run completely.

Layout (see docs/INTERFACES.md): ``config.yaml``, ``meta.json``, ``metrics.jsonl``,
``checkpoint.pt`` and, once the run has finished, ``summary.json``.
"""

import hashlib
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


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


@dataclass
class RunDir:
    path: Path

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
            meta = {**json.loads(meta_file.read_text()), "resumed": time.strftime("%FT%T")}
        _write_json(meta_file, meta)

    def read_meta(self) -> dict[str, Any]:
        return json.loads((self.path / "meta.json").read_text())

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
        path = self.path / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

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


def new_meta(choices: dict[str, str], digest: str, repo: Path) -> dict[str, Any]:
    return {
        "choices": choices,
        "git": git_state(repo),
        "config_hash": digest,
        "run_id": digest,
        "host": socket.gethostname(),
        "torch": torch.__version__,
        "started": time.strftime("%FT%T"),
    }


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
