"""One command that checks and measures on a GPU node what only a GPU can show (docs/GPU_CHECK.md).

    scripts/gpu_check.sh OUT_DIR [--budget 480] [--wheelhouse wheelhouse]

For a node with a Python that has torch, torchvision and timm, and no network. In order,
each phase a subprocess with its own time budget, the whole stopped at ``--budget`` seconds:

    setup        what else the suite needs (hydra-core, omegaconf, tqdm, pytest, ...), from the
                 wheel folder of ``make wheelhouse`` into a private directory put on PYTHONPATH;
                 the node's own packages (torch first) are never replaced
    cuda-tests   pytest -m cuda tests/test_cuda.py
    bench-optim  scripts/bench_optim.py --device cuda, reduced (GPU_NODE_PROFILE below)
    bench-train  scripts/bench_train.py --device cuda, reduced
    train-runs   scripts/gpu_train_run.py: ResNet-18, SGD / SAM / XSAM, fp32 and bf16, train.py

OUT_DIR gets report.md (machine, each test's verdict, each table, every target met or
MISSED), results.json (the raw numbers) and logs/. Both files are rewritten after every
phase, so a run cut short keeps what finished. Without CUDA the command says so in one line
and runs the same phases in a small CPU form: a self-test of the check, not a measurement.

Exit status: 0 when every phase that ran succeeded (phases cut by the budget included),
1 when a test failed or a phase crashed.
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout is run from here, not installed (phase_env)
from xsam.markdown import table_lines  # noqa: E402  (no dependencies beyond Python)

REQUIREMENTS = ["hydra-core>=1.3", "omegaconf>=2.3", "tqdm>=4.66", "pytest>=8"]
OPTIONAL = ["wandb>=0.18"]  # planned only when its wheel is in the folder
NODE_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pillow")  # pinned, never replaced
MIN_START_S = 5.0  # a phase with less time left than this is not started
GPU_NODE_PROFILE = {  # phase -> (seconds, script arguments); the documented reduced form
    "cuda-tests": 150,
    "bench-optim": (70, ["--device", "cuda", "--repeats", "5", "--opt-repeats", "11",
                         "--search-repeats", "2"]),
    "bench-train": (100, ["--device", "cuda", "--repeats", "3", "--n-train", "25000"]),
    "train-runs": (110, ["--device", "cuda"]),
}  # fmt: skip
CPU_SELF_TEST = {  # the same phases, sized for a CPU: they show the check works, not speed
    "cuda-tests": 60,
    "bench-optim": (60, ["--quick", "--device", "cpu"]),
    "bench-train": (60, ["--quick", "--device", "cpu", "--model", "small_cnn",
                         "--batch-size", "4", "--n-train", "64", "--repeats", "1"]),
    "train-runs": (90, ["--device", "cpu", "--model", "small_cnn", "--n-train", "64",
                        "--n-test", "16", "--batch-size", "16", "--epochs", "2"]),
}  # fmt: skip
NEEDS = {  # phase -> modules it imports beyond torch, torchvision, timm
    "cuda-tests": ["pytest"],
    "bench-optim": [],
    "bench-train": ["pytest"],
    "train-runs": ["hydra", "omegaconf", "tqdm", "pytest"],
}

PHASE_ENV = {  # cuBLAS is deterministic only with this workspace (the bit-exact resume test)
    "cuda-tests": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"},
    "bench-optim": {},
    "bench-train": {},
    "train-runs": {},
}


@dataclass
class Phase:
    name: str
    budget_s: float
    command: list[str] = field(default_factory=list)
    status: str = "not run"  # done | failed | stopped at its budget | not run: <why>
    seconds: float = 0.0
    returncode: int | None = None
    log: str = ""


# ---------------------------------------------------------------------------------------------
# Running a phase: a subprocess in its own session, killed with its children at the budget.
# ---------------------------------------------------------------------------------------------
def run_limited(command: list[str], timeout_s: float, log: Path, env: dict) -> tuple[str, int]:
    """(status, returncode) of ``command`` run for at most ``timeout_s`` seconds, its output
    in ``log``. At the limit the whole process group goes (DDP and DataLoader children too)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return "stopped at its budget", proc.returncode
    return ("done" if code == 0 else "failed"), code


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the group, 5 s to exit, then SIGKILL to whatever of it is left."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the group is gone
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


def phase_env(site: Path | None) -> dict:
    """The phases' environment: the private site directory and the checkout first on the
    path (the project is run from here, not installed), W&B off, no network."""
    paths = [str(p) for p in (site, REPO) if p is not None]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    old = env.get("PYTHONPATH")
    env.update(
        PYTHONPATH=os.pathsep.join(paths + ([old] if old else [])),
        WANDB_MODE="disabled",
        PYTHONUNBUFFERED="1",
        HYDRA_FULL_ERROR="1",
        COLUMNS="250",  # pytest -v writes a skip reason in full
        PIP_CONFIG_FILE=os.devnull,  # pip sees only the command line: no index, no user config
    )
    return env


# ---------------------------------------------------------------------------------------------
# Setup: plan against the node's packages, install the missing ones into a private directory.
# ---------------------------------------------------------------------------------------------
PROBE = """
import json, platform, sys
info = {"python": platform.python_version(), "executable": sys.executable, "modules": {}}
try:
    import torch
    info.update(torch=torch.__version__, torch_path=torch.__file__, cuda_build=torch.version.cuda,
                cuda=torch.cuda.is_available(), cudnn=torch.backends.cudnn.version())
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
except Exception as err:
    info["torch_error"] = repr(err)
from importlib import metadata, util
def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
for name, dist in %r.items():  # found on the path, and the version of its distribution
    info["modules"][name] = version(dist) if util.find_spec(name) else None
info["versions"] = {d: version(d) for d in %r if version(d) != "?"}
print(json.dumps(info))
"""
MODULES = {  # module -> distribution, reported and checked before the phases that need them
    "torchvision": "torchvision",
    "timm": "timm",
    "numpy": "numpy",
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "tqdm": "tqdm",
    "pytest": "pytest",
    "wandb": "wandb",
}


def probe(python: str, env: dict) -> dict:
    """What the node's Python has (run with the phases' path, so the private site counts)."""
    code = PROBE % (MODULES, list(NODE_PACKAGES))
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    if out.returncode:
        raise SystemExit(f"gpu_check: {python} cannot run the probe: {out.stderr.strip()[-300:]}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    info["driver"] = nvidia_driver()
    return info


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    version = Path("/proc/driver/nvidia/version")
    return version.read_text().splitlines()[0] if version.exists() else None


def pip(python: str, wheelhouse: Path) -> list[str]:
    """The folder's own pip, run from its wheel (a known version, >= 22.2 for ``--report``,
    whatever pip the node has, if any); else the node's."""
    wheels = sorted(wheelhouse.glob("pip-*.whl"))
    return [python, f"{wheels[-1]}/pip"] if wheels else [python, "-m", "pip"]


def install_plan(python: str, wheelhouse: Path, node: dict, work: Path) -> list[str]:
    """The wheels to install: pip resolves the requirements against the node's installed
    packages, with the node's torch, torchvision, timm, numpy and pillow pinned, so what the
    node has is kept and only what is missing (or too old) is planned."""
    constraints = work / "constraints.txt"
    pins = [f"{name}=={version}" for name, version in node["versions"].items()]
    constraints.write_text("".join(f"{pin}\n" for pin in pins))
    wanted = REQUIREMENTS + [r for r in OPTIONAL if _has_wheel(wheelhouse, r)]
    report = work / "plan.json"
    command = [*pip(python, wheelhouse), "install", "--dry-run", "--quiet", "--no-index"]
    command += ["--find-links", str(wheelhouse), "--report", str(report), "-c", str(constraints)]
    out = subprocess.run(
        command + wanted, capture_output=True, text=True, env=phase_env(None), timeout=120
    )
    if out.returncode:
        raise RuntimeError(f"pip could not plan from {wheelhouse}: {out.stderr.strip()[-600:]}")
    planned = json.loads(report.read_text())["install"]
    return [url2pathname(urlparse(item["download_info"]["url"]).path) for item in planned]


def _has_wheel(wheelhouse: Path, requirement: str) -> bool:
    name = re.split(r"[<>=!~ ]", requirement)[0].replace("-", "_").lower()
    return any(w.name.lower().startswith(name + "-") for w in wheelhouse.glob("*.whl"))


def install(python: str, wheelhouse: Path, wheels: list[str], site: Path) -> None:
    """The planned wheels, exactly, into ``site``: no dependency resolution, no index."""
    shutil.rmtree(site, ignore_errors=True)
    if not wheels:
        return
    command = [*pip(python, wheelhouse), "install", "--quiet", "--no-deps", "--no-index"]
    command += ["--target", str(site), *wheels]
    out = subprocess.run(command, capture_output=True, text=True, env=phase_env(None), timeout=300)
    if out.returncode:
        raise RuntimeError(f"pip install --target {site} failed: {out.stderr.strip()[-600:]}")
    if (site / "torch").exists():  # the plan pins torch: this cannot happen, but never run so
        raise RuntimeError(f"a torch was installed into {site}; refusing to shadow the node's")


def setup(args, state: dict, work: Path) -> Path | None:
    """Install from the wheel folder when there is one; the private site, or None."""
    python, wheelhouse = args.python, args.wheelhouse
    if wheelhouse is None or not wheelhouse.is_dir():
        state["setup"] = {"wheelhouse": None, "installed": []}
        return None
    node = probe(python, phase_env(None))
    site = work / f"site-py{node['python'].rsplit('.', 1)[0]}"
    wheels = install_plan(python, wheelhouse, node, work)
    install(python, wheelhouse, wheels, site)
    state["setup"] = {"wheelhouse": str(wheelhouse), "installed": [Path(w).name for w in wheels]}
    return site if wheels else None


# ---------------------------------------------------------------------------------------------
# The phases' commands and what is read back from them.
# ---------------------------------------------------------------------------------------------
def phase_commands(args, profile: dict, out_dir: Path) -> list[Phase]:
    py, raw = args.python, out_dir / "raw"
    tests = [py, "-m", "pytest", "-m", "cuda", "-v", "-rfE", "-p", "no:cacheprovider"]
    phases = [Phase("cuda-tests", profile["cuda-tests"], [*tests, "tests/test_cuda.py"])]
    for name, script in (("bench-optim", "bench_optim"), ("bench-train", "bench_train")):
        budget, extra = profile[name]
        runner = [py, str(Path(__file__)), "--run-script", script, str(raw / f"{script}.json")]
        phases.append(Phase(name, budget, [*runner, "--", *extra]))
    budget, extra = profile["train-runs"]
    train = [py, "scripts/gpu_train_run.py", str(raw / "train_runs.json"), *extra]
    phases.append(Phase("train-runs", budget, train))
    return phases


TEST_LINE = re.compile(r"^(tests/\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)(.*)$")
FAILURE_LINE = re.compile(r"^(?:FAILED|ERROR) (tests/\S+::\S+) - (.*)$")


def test_verdicts(log_text: str) -> list[dict]:
    """Each test's verdict from pytest -v (read line by line: a run cut short still counts)."""
    verdicts, notes = {}, {}
    for line in log_text.splitlines():
        if m := TEST_LINE.match(line):
            note = re.sub(r"\s*\[\s*\d+%\]$", "", m[3]).strip().strip("()")
            verdicts[m[1]] = (m[2].lower(), note)
        elif m := FAILURE_LINE.match(line):
            notes[m[1]] = m[2]
    return [
        {"test": t.split("::", 1)[1], "verdict": v, "note": notes.get(t, note)}
        for t, (v, note) in verdicts.items()
    ]


def target_lines(log_text: str) -> list[dict]:
    """The benchmark scripts' target lines, each ending in (met) or (MISSED)."""
    found = []
    for line in log_text.splitlines():
        if line.rstrip().endswith(("(met)", "(MISSED)")) or "(MISSED);" in line or "(met);" in line:
            found.append({"target": line.strip(), "met": "(MISSED)" not in line})
    return found


def run_script(name: str, out: str, argv: list[str]) -> None:
    """``--run-script NAME OUT -- ARGS``: scripts/NAME.py's main(ARGS), its result as JSON."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(argv)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if result.get("check_passed") is False:  # bench_optim: the baseline disagrees with ours
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def collect_results(phases: list[Phase], out_dir: Path) -> dict:
    results: dict = {}
    for phase in phases:
        text = Path(phase.log).read_text(errors="replace") if phase.log else ""
        if phase.name == "cuda-tests":
            results["tests"] = test_verdicts(text)
        elif phase.name.startswith("bench-"):
            script = phase.name.replace("-", "_")
            results[script] = read_json(out_dir / "raw" / f"{script}.json")
            results[f"{script}_targets"] = target_lines(text)
        else:
            results["train_runs"] = read_json(out_dir / "raw" / "train_runs.json")
    return results


def machine_rows(node: dict, setup_state: dict) -> list[tuple[str, str]]:
    gpus = node.get("gpus") or []
    names = sorted(set(gpus))
    gpu = ", ".join(f"{n} x{gpus.count(n)}" for n in names) if gpus else "none (no CUDA device)"
    if gpus:
        gpu += f", {node['gpu_memory_gib']:.0f} GiB"
    modules = node["modules"]
    installed = ", ".join(setup_state.get("installed", [])) or "nothing"
    return [
        ("GPU", gpu),
        ("NVIDIA driver", node.get("driver") or "unknown"),
        ("torch", f"{node.get('torch')}, CUDA {node.get('cuda_build')}, cuDNN {node.get('cudnn')}"),
        ("torch from", node.get("torch_path", "?")),
        ("torchvision / timm", f"{modules['torchvision']} / {modules['timm']}"),
        ("Python", f"{node['python']} ({node['executable']})"),
        ("hydra / omegaconf / tqdm / pytest / wandb",
         " / ".join(str(modules[m]) for m in ("hydra", "omegaconf", "tqdm", "pytest", "wandb"))),
        ("installed from the wheel folder", installed),
        ("commit", git_commit()),
    ]  # fmt: skip


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown (no git)"
    return head.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "") or "unknown"


def markdown(state: dict) -> str:
    """report.md: the machine, the phases, each test's verdict, each table and target."""
    lines = ["# GPU check", ""]
    if state["self_test"]:
        lines += [SELF_TEST_BANNER, ""]
    lines.append(
        f"`{state['command']}`, started {state['started']}, "
        f"{state['seconds']:.0f} s of a {state['budget_s']:.0f} s budget."
    )
    lines += ["", "## Machine", ""]
    lines += table_lines(["", ""], machine_rows(state["node"], state["setup"]))
    lines += ["", "## Phases", ""]
    lines += table_lines(["phase", "status", "seconds", "budget", "command"], phase_rows(state))
    lines += tests_section(state["results"].get("tests", []))
    for script in ("bench_optim", "bench_train"):
        lines += bench_section(script, state["results"])
    lines += train_section(state["results"].get("train_runs"))
    lines += unfinished_logs(state["phases"])
    return "\n".join(lines) + "\n"


def phase_rows(state: dict) -> list[list[str]]:
    rows = []
    for p in state["phases"]:
        command = " ".join(p["command"][1:]).replace(str(REPO) + "/", "")
        command = command.replace(state["out_dir"], "OUT_DIR")
        seconds = [f"{p['seconds']:.0f}", f"{p['budget_s']:.0f}"]
        rows.append([p["name"], p["status"], *seconds, f"`{command}`"])
    return rows


def unfinished_logs(phases: list[dict], tail: int = 40) -> list[str]:
    """The end of the log of every phase that failed or was cut, to debug from the report."""
    lines = []
    for p in phases:
        if p["status"] in ("failed", "stopped at its budget") and p["log"]:
            text = Path(p["log"]).read_text(errors="replace").splitlines()[-tail:]
            lines += ["", f"## Log of {p['name']} ({p['status']}), last {tail} lines", "", "```"]
            lines += [*text, "```"]
    return lines


SELF_TEST_BANNER = (
    "**CPU self-test: there is no CUDA device, so nothing here is a GPU number.** The phases "
    "ran in their small CPU form, to show that the check itself works."
)
TRAIN_HEADER = [
    *("method", "precision", "images/s", "ms per opt.step", "timed steps"),
    *("alpha-search share", "final train loss"),
]


def tests_section(tests: list[dict]) -> list[str]:
    counts = {v: sum(t["verdict"] == v for t in tests) for v in ("passed", "failed", "skipped")}
    lines = ["", "## CUDA tests (tests/test_cuda.py)", ""]
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(tests)}.")
    lines += [""]
    lines += table_lines(
        ["test", "verdict", "note"], ([t["test"], t["verdict"], t["note"][:200]] for t in tests)
    )
    return lines


def bench_section(script: str, results: dict) -> list[str]:
    lines = ["", f"## scripts/{script}.py", ""]
    data = results.get(script)
    lines.append(data["table"] if data else "No table: the phase did not finish.")
    targets = results.get(f"{script}_targets", [])
    if targets:
        missed = sum(not t["met"] for t in targets)
        lines += ["", f"Targets: {len(targets) - missed} met, {missed} MISSED.", ""]
        lines += [f"- {t['target']}" for t in targets]
    return lines


def train_section(data: dict | None) -> list[str]:
    lines = ["", "## Training runs (scripts/gpu_train_run.py through train.py)", ""]
    if not data or not data["runs"]:
        return lines + ["No run finished."]
    rows = [
        [r["method"], r["precision"], f"{r['images_per_s']:.0f}", f"{r['step_ms']:.2f}"]
        + [str(r["timed_steps"]), f"{r['search_share']:.3f}", f"{r['train_loss']:.4f}"]
        for r in data["runs"]
    ]
    lines += table_lines(TRAIN_HEADER, rows) + [""]
    lines += table_lines(
        ["ratio", "value"], ([r["ratio"], f"{r['value']:.3f}"] for r in data["ratios"])
    )
    return lines


def write_outputs(state: dict, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(state, indent=2, default=str) + "\n")
    (out_dir / "report.md").write_text(markdown(state))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir", type=Path, help="where report.md, results.json and logs/ go")
    p.add_argument("--budget", type=float, default=480.0, help="total seconds (8 minutes)")
    p.add_argument("--wheelhouse", type=Path, help="the wheel folder of make wheelhouse")
    p.add_argument("--python", default=sys.executable, help="the node's Python (this one)")
    p.add_argument("--self-test", action="store_true", help="the CPU form, even with CUDA")
    args = p.parse_args(argv)
    args.wheelhouse = args.wheelhouse.resolve() if args.wheelhouse else None
    if args.budget <= 0:
        p.error(f"--budget must be > 0 seconds, got {args.budget}")
    if args.wheelhouse is not None and not args.wheelhouse.is_dir():
        p.error(f"--wheelhouse {args.wheelhouse}: no such folder (make wheelhouse builds it)")
    return args


def run_phases(phases: list[Phase], state: dict, env: dict, start: float, out_dir: Path) -> None:
    deadline = start + state["budget_s"]
    for phase in phases:
        left = deadline - time.monotonic()
        missing = [m for m in NEEDS[phase.name] if state["node"]["modules"].get(m) is None]
        if missing:
            phase.status = f"not run: needs {', '.join(missing)} (make wheelhouse, --wheelhouse)"
        elif left < MIN_START_S:
            phase.status = "not run: the total budget is spent"
        else:
            print(
                f"gpu_check: {phase.name} (at most {min(phase.budget_s, left):.0f} s)", flush=True
            )
            started, log = time.monotonic(), out_dir / "logs" / f"{phase.name}.log"
            phase.status, phase.returncode = run_limited(
                phase.command, min(phase.budget_s, left), log, {**env, **PHASE_ENV[phase.name]}
            )
            phase.seconds, phase.log = time.monotonic() - started, str(log)
        state["phases"] = [asdict(p) for p in phases]
        state["results"] = collect_results([p for p in phases if p.log], out_dir)
        state["seconds"] = time.monotonic() - start
        write_outputs(state, out_dir)


def new_state(args, out_dir: Path, argv: list[str]) -> dict:
    return {
        "out_dir": str(out_dir),
        "command": "scripts/gpu_check.sh " + " ".join(argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "budget_s": args.budget,
        "seconds": 0.0,
        "phases": [],
        "results": {},
    }


def failures(phases: list[Phase], state: dict) -> list[str]:
    failed = ["setup"] if "error" in state["setup"] else []
    failed += [p.name for p in phases if p.status == "failed"]
    tests = state["results"].get("tests", [])
    return failed + [f"test {t['test']}" for t in tests if t["verdict"] in ("failed", "error")]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, start = parse_args(argv), time.monotonic()
    out_dir = args.out_dir.resolve()
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    (REPO / ".gpu_check").mkdir(exist_ok=True)
    state = new_state(args, out_dir, argv)
    try:
        site = setup(args, state, REPO / ".gpu_check")
    except RuntimeError as err:  # the phases that need what is missing will say so
        print(f"gpu_check: setup failed: {err}", file=sys.stderr)
        state["setup"], site = {"error": str(err), "installed": []}, None
    env = phase_env(site)
    state["node"] = probe(args.python, env)
    if not (3, 10) <= tuple(map(int, state["node"]["python"].split(".")[:2])) <= (3, 12):
        print(f"gpu_check: Python {state['node']['python']} is outside 3.10-3.12; trying anyway")
    state["self_test"] = args.self_test or not state["node"].get("cuda")
    if not state["node"].get("cuda"):
        print("gpu_check: no CUDA device here: nothing to measure; running the CPU self-test")
    profile = CPU_SELF_TEST if state["self_test"] else GPU_NODE_PROFILE
    phases = phase_commands(args, profile, out_dir)
    run_phases(phases, state, env, start, out_dir)
    failed = failures(phases, state)
    print(f"gpu_check: {out_dir / 'report.md'}" + (f"; FAILED: {', '.join(failed)}" * bool(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run-script"]:
        name, out, *rest = sys.argv[2:]
        run_script(name, out, rest[1:] if rest[:1] == ["--"] else rest)
    else:
        sys.exit(main())
