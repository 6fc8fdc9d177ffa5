"""scripts/gpu_check.sh on a CPU (its self-test), its budget, its parsing, and the wheel folder.

The GPU measurements themselves need a GPU; here the check runs in its CPU form, end to end,
through the real scripts, and the wheel folder is built from PyPI and resolved for Python 3.12.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
PHASES = ["cuda-tests", "bench-optim", "bench-train", "train-runs"]


def no_gpu_env() -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def gpu_check(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**no_gpu_env(), "PYTHON": sys.executable},
        timeout=timeout,
    )


def cuda_test_names() -> set[str]:
    return set(re.findall(r"^def (test_\w+)", (REPO / "tests" / "test_cuda.py").read_text(), re.M))


@pytest.mark.slow
def test_cpu_self_test_runs_every_phase_and_reports_it(tmp_path):
    result = gpu_check(tmp_path / "out", "--budget", "300")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    said = [line for line in result.stdout.splitlines() if "no CUDA device" in line]
    assert len(said) == 1  # one line says there is no GPU
    state = json.loads((tmp_path / "out" / "results.json").read_text())
    assert state["self_test"] and [p["name"] for p in state["phases"]] == PHASES
    assert all(p["status"] == "done" for p in state["phases"]), state["phases"]
    results = state["results"]
    # every CUDA test went through the marker filter, and skipped cleanly without CUDA
    assert {t["test"].split("[")[0] for t in results["tests"]} == cuda_test_names()
    assert {t["verdict"] for t in results["tests"]} == {"skipped"}
    optim_rows = results["bench_optim"]["rows"]
    assert [r["method"] for r in optim_rows] == [
        m.label for m in load_script("bench_optim").METHODS
    ]
    train_rows = results["bench_train"]["rows"]
    assert {"SGD", "SAM", "XSAM static", "data only"} <= {r["method"] for r in train_rows}
    runs = results["train_runs"]["runs"]
    assert {(r["method"], r["precision"]) for r in runs} == {
        (m, p) for m in ("sgd", "sam", "xsam") for p in ("fp32", "bf16")
    }
    assert all(r["finite"] and r["images_per_s"] > 0 and r["step_ms"] > 0 for r in runs)
    assert all(r["timed_steps"] == 4 for r in runs)  # epoch 2 of 64 images in batches of 16
    report = (tmp_path / "out" / "report.md").read_text()
    assert "CPU self-test" in report and "nothing here is a GPU number" in report
    for heading in ("## Machine", "## CUDA tests", "## scripts/bench_optim.py", "## Training runs"):
        assert heading in report
    for script in ("bench_optim", "bench_train"):
        assert results[script]["table"] in report
        targets = results[f"{script}_targets"]  # every target line of the script, met or not
        missed = sum("(MISSED)" in t["target"] for t in targets)
        assert targets and f"Targets: {len(targets) - missed} met, {missed} MISSED." in report
    assert "| sam / sgd step time, fp32 |" in report


def test_a_spent_budget_leaves_the_later_phases_unstarted(tmp_path):
    started = time.monotonic()
    result = gpu_check(tmp_path / "out", "--budget", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads((tmp_path / "out" / "results.json").read_text())
    statuses = [p["status"] for p in state["phases"]]
    spent = "not run: the total budget is spent"
    assert set(statuses) <= {"done", "stopped at its budget", spent}
    assert statuses[-1] == spent  # the training runs cannot fit in 8 s, whatever the machine
    assert time.monotonic() - started < 120  # the 60 s test phase was cut at the budget
    assert "not run: the total budget is spent" in (tmp_path / "out" / "report.md").read_text()


def test_a_phase_over_its_budget_is_killed_with_its_children(tmp_path):
    check = load_script("gpu_check")
    marker = tmp_path / "grandchild-survived"
    grandchild = f"import time, pathlib; time.sleep(3); pathlib.Path({str(marker)!r}).touch()"
    child = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]);"
        " time.sleep(60)"
    )
    status, _ = check.run_limited(
        [sys.executable, "-c", child], 1.0, tmp_path / "log.txt", dict(os.environ)
    )
    assert status == "stopped at its budget"
    time.sleep(4)
    assert not marker.exists()


def test_verdicts_are_read_from_real_pytest_output(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(
        "import pytest\n"
        "def test_good(): pass\n"
        "def test_bad(): assert 1 == 2, 'one is not two'\n"
        "@pytest.mark.skip(reason='no such device')\n"
        "def test_skipped(): pass\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_param(x): assert x == 1\n"
    )
    command = [sys.executable, "-m", "pytest", "-v", "-rfE", "-p", "no:cacheprovider", "tests"]
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    verdicts = {t["test"]: t for t in load_script("gpu_check").test_verdicts(out.stdout)}
    assert {k: v["verdict"] for k, v in verdicts.items()} == {
        "test_good": "passed",
        "test_bad": "failed",
        "test_skipped": "skipped",
        "test_param[1]": "passed",
        "test_param[2]": "failed",
    }
    assert "one is not two" in verdicts["test_bad"]["note"]
    assert "no such device" in verdicts["test_skipped"]["note"]


@pytest.mark.slow
def test_wheelhouse_resolves_for_python_3_12_and_installs_without_an_index(tmp_path):
    """Built from PyPI; then resolved offline for CPython 3.12 on manylinux, and installed by
    the check's own setup into a fresh Python that has none of it."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheels = tmp_path / "wheelhouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, WHEEL_PYTHONS=f"3.12 {here}", PYTHON=sys.executable)
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "wheelhouse.sh"), str(wheels)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert sum(f.stat().st_size for f in wheels.iterdir()) < 64 * 2**20
    report = tmp_path / "plan.json"
    dry_run = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    dry_run += ["--no-index", "--find-links", str(wheels), "--only-binary=:all:", "--target"]
    dry_run += [str(tmp_path / "t"), "--python-version", "3.12", "--implementation", "cp"]
    dry_run += ["--platform", "manylinux2014_x86_64", "--report", str(report)]
    check = load_script("gpu_check")
    resolved = subprocess.run(
        dry_run + check.REQUIREMENTS, capture_output=True, text=True, env=env, timeout=300
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    planned = {i["metadata"]["name"].lower(): i for i in json.loads(report.read_text())["install"]}
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "pyyaml", "tqdm", "pytest"} <= set(
        planned
    )
    assert "cp312" in planned["pyyaml"]["download_info"]["url"]
    assert "torch" not in planned

    fresh = tmp_path / "venv"  # a Python with none of the suite's extras (and no torch)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = str(fresh / "bin" / "python")
    node = check.probe(python, check.phase_env(None))
    plan = check.install_plan(python, wheels, node, tmp_path)
    check.install(python, wheels, plan, tmp_path / "site")
    imported = subprocess.run(
        [python, "-c", "import hydra, omegaconf, tqdm, pytest, yaml; print(yaml.__file__)"],
        capture_output=True,
        text=True,
        env=check.phase_env(tmp_path / "site"),
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(tmp_path / "site"))
