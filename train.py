"""Train one model with one optimizer of the SAM family: compose -> build -> loop -> finish.

    python train.py                                    # XSAM on the embedded digits
    python train.py dataset=cifar100 model=resnet18 optimizer=xsam optimizer.rho=0.15 seed=1
    python train.py -m optimizer=sgd,sam,xsam seed=0,1,2
    python train.py debug=smoke dataset=cifar10         # seconds: 2 batches of 1 epoch

Re-running a command resumes its unfinished run from the last checkpoint and does nothing
for a finished one. See README.md for the run directory and the W&B settings.
"""

from __future__ import annotations  # annotations name torch types before torch is imported

import itertools
import json
import logging
import math
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from xsam.callbacks import record_failure
from xsam.config_checks import ConfigError, check_config, search_interval
from xsam.paths import REPO
from xsam.run_identity import semantic_config


def import_training_stack() -> None:
    """torch, the data stack and the rest of xsam, imported when a run starts rather than at
    the top, so that ``--help``, tab completion and a rejected setting answer in a second."""
    global torch, DDP, budget, checkpoint, engine, device_cifar_loaders, build_loader
    global evaluate_sharpness, fixed_batches, batch_loss, direction_diagnostics, sphere_diagnostics
    global DistEnv, any_rank, init_distributed, sum_over_ranks, weight_decay_groups, Preemption
    global DamagedRunDir, RunDir, config_hash, new_meta, run_name, WandbLogger, USER_ERRORS
    global BatchClosure
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from xsam import budget, checkpoint, engine
    from xsam.data.device_cifar import device_cifar_loaders
    from xsam.data.loader import build_loader
    from xsam.diagnostics import evaluate_sharpness, fixed_batches
    from xsam.diagnostics.batches import batch_loss
    from xsam.diagnostics.landscape import direction_diagnostics
    from xsam.diagnostics.sphere import sphere_diagnostics
    from xsam.distributed import DistEnv, any_rank, init_distributed, sum_over_ranks
    from xsam.models.param_groups import weight_decay_groups
    from xsam.optim import BatchClosure
    from xsam.preemption import Preemption
    from xsam.rundir import DamagedRunDir, RunDir, config_hash, new_meta, run_name
    from xsam.wandb_logger import WandbLogger

    USER_ERRORS = (ConfigError, DamagedRunDir, FileNotFoundError, engine.NonFiniteLoss)


log = logging.getLogger("train")
GROUPS = ("dataset", "model", "optimizer", "schedule")  # the run directory's name gives them
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError,)  # and more once the stack is imported


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """One run; returns its objective (a final-epoch metric) for Hydra's sweepers."""
    hydra_cfg = HydraConfig.get()
    try:
        import_training_stack()
        summary = run(cfg, hydra_cfg.runtime.choices)
    except Exception as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        known = isinstance(cause, USER_ERRORS)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            if not known:
                raise
            print(f"error: {cause}", file=sys.stderr)  # one line, no traceback
            sys.exit(2)
        # a sweep goes on past a failed job; the callback lists every failure at the end
        if not known:
            log.exception("job %d failed", hydra_cfg.job.num)
        line = " ".join((f"{cause}" if known else f"{type(cause).__name__}: {cause}").split())
        log.error("error: %s", line)
        record_failure(line)
        return math.nan
    return float(summary["final"][cfg.objective]) if summary else None


def run(cfg: DictConfig, choices: dict[str, str]) -> dict:
    check_config(cfg)
    choices = {g: choices[g] for g in GROUPS}
    semantic = semantic_config(cfg)
    digest = config_hash(semantic)
    run_dir = RunDir(Path(cfg.run_root) / cfg.study / run_name(choices, cfg.seed, digest))
    run_dir.check_config(semantic, semantic_config)  # the same config, or an error naming keys

    ranks = init_distributed(use_cuda=pick_device(cfg.device).type == "cuda")
    device = pick_device(cfg.device, ranks)
    refuse_probes_under_ddp(cfg, ranks)
    if ranks.is_main:  # a damaged file stops the run, unless resume= says what to do with it
        for line in run_dir.repair(cfg.resume):
            log.warning("resume=%s: set aside %s", cfg.resume, line)
    barrier()
    if run_dir.is_finished():
        log.info("already finished, nothing to do: %s", run_dir.path)
        return run_dir.read_summary()
    set_determinism(cfg.deterministic)
    torch.manual_seed(cfg.seed)  # model initialisation
    splits = build_splits(cfg)
    train_loader, test_loader = build_loaders(cfg, splits, device, ranks)
    if cfg.train.limit_batches:  # a smoke run: the first N batches of each epoch
        train_loader = Limited(train_loader, cfg.train.limit_batches)
        test_loader = Limited(test_loader, cfg.train.limit_batches)
    model, net = build_model(cfg, device, ranks)
    opt = build_optimizer(cfg, model, steps_per_epoch=len(train_loader))
    schedule = instantiate(cfg.schedule)(opt)

    meta = new_meta(choices, digest, REPO)
    if ranks.is_main:
        run_dir.create(OmegaConf.to_yaml(cfg, resolve=True), meta)
    barrier()
    state = resume(run_dir, model, opt, schedule, ranks.is_main)
    logger = open_logger(cfg, choices, run_dir, meta, ranks)
    preemption = Preemption()
    try:
        loop = Loop(cfg, net, model, opt, schedule, run_dir, logger, ranks, preemption)
        state = loop.train(train_loader, test_loader, state)
        if loop.stopping:
            logger.finish(exit_code=1)  # flushed; the requeued job continues the same W&B run
            preemption.hand_over()
        if cfg.diagnostics.sharpness_at_end and ranks.is_main:
            state["sharpness"] = measure_sharpness(cfg, model, splits, run_dir, logger)
        summary = finish(cfg, run_dir, opt, state, choices) if ranks.is_main else None
    except BaseException:
        logger.finish(exit_code=1)
        raise
    finally:
        preemption.close()
    logger.finish()
    barrier()  # every rank done before any leaves the process group (at exit)
    return summary


def refuse_probes_under_ddp(cfg: DictConfig, ranks: DistEnv) -> None:
    for probe in ("directions_every", "sphere_every"):
        if cfg.diagnostics[probe] and ranks.world_size > 1:
            raise ConfigError(
                f"diagnostics.{probe} needs a single process: under DDP the probe would "
                "measure rank-local gradients, not the optimizer's averaged plane"
            )


def open_logger(cfg: DictConfig, choices: dict, run_dir: RunDir, meta: dict, ranks: DistEnv):
    """The run's W&B run (disabled on every rank but the main one), resumed by its id."""
    return WandbLogger(
        **{**cfg.logger, "mode": cfg.logger.mode if ranks.is_main else "disabled"},
        tags=list(choices.values()),
        run_id=run_dir.read_meta()["run_id"],
        name=run_dir.path.name,
        run_dir=run_dir.path,
        config={
            **OmegaConf.to_container(cfg, resolve=True),
            "choices": choices,
            "git": meta["git"],
        },
    )


def build_splits(cfg: DictConfig):
    """The dataset's splits; a setting its builder refuses (``ValueError``, e.g. a
    ``train_subset`` larger than the training set) is a one-line ConfigError."""
    try:
        return instantiate(cfg.dataset.splits)
    except InstantiationException as err:
        if type(err.__cause__) is ValueError:
            raise ConfigError(str(err.__cause__)) from err
        raise


def pick_device(name: str, ranks: DistEnv | None = None) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", ranks.local_rank if ranks else 0)


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def set_determinism(on: bool) -> None:
    from torch.backends import cudnn  # a local name: cloudpickle (submitit) cannot pickle it

    cudnn.benchmark = not on
    if on:  # (importing the switch costs seconds, so only when asked)
        cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def build_loaders(cfg: DictConfig, splits, device: torch.device, ranks: DistEnv):
    """Seeded loaders; each rank takes batch_size / world_size samples of every global batch."""
    if cfg.batch_size % ranks.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must divide over {ranks.world_size} ranks")
    if len(splits.train) < cfg.batch_size:
        raise ConfigError(f"batch_size={cfg.batch_size} exceeds the {len(splits.train)} samples")
    if cfg.loader.device_resident:  # the fast path: uint8 images on the device
        if cfg.dataset.name not in ("cifar10", "cifar100", "mnist", "fashion_mnist"):
            raise ConfigError(
                "loader.device_resident needs CIFAR, MNIST or Fashion-MNIST, "
                f"not {cfg.dataset.name}"
            )
        return device_cifar_loaders(
            splits,
            batch_size=cfg.batch_size // ranks.world_size,
            seed=cfg.seed,
            device=device,
            rank=ranks.rank,
            num_replicas=ranks.world_size,
            channels_last=cfg.channels_last,
        )
    common = dict(
        batch_size=cfg.batch_size // ranks.world_size,
        seed=cfg.seed,
        num_workers=cfg.loader.num_workers,
        pin_memory=cfg.loader.pin_memory and device.type == "cuda",
        persistent_workers=cfg.loader.persistent_workers,
        rank=ranks.rank,
        num_replicas=ranks.world_size,
    )
    train_loader = build_loader(splits.train, train=True, **common)
    return train_loader, build_loader(splits.test, train=False, **common)


class Limited:
    """The first ``n`` batches of a loader (``train.limit_batches``); its other attributes
    (``sampler``, ``batch_size``) are the loader's."""

    def __init__(self, loader, n: int) -> None:
        self.loader, self.n = loader, n

    def __len__(self) -> int:
        return min(len(self.loader), self.n)

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


def build_model(cfg: DictConfig, device: torch.device, ranks: DistEnv):
    """The model (whose state is saved) and the module that runs it (DDP, compiled)."""
    model = instantiate(cfg.model)
    if cfg.sync_bn and ranks.world_size > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if ranks.world_size > 1:  # gradients averaged across ranks on every backward pass
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model, (torch.compile(net) if cfg.compile else net)


def build_optimizer(cfg: DictConfig, model: torch.nn.Module, steps_per_epoch: int):
    params = model.named_parameters()  # (names: ASAM's adaptive_scope=weight reads them)
    if cfg.no_decay_norm_bias:  # ViT recipes: no weight decay on norm weights and biases
        params = weight_decay_groups(model, weight_decay=cfg.optimizer.base.weight_decay)
    every = search_interval(cfg.optimizer.get("search_every"), steps_per_epoch)
    return instantiate(cfg.optimizer, search_every=every)(params)


def build_loss(cfg: DictConfig):
    """Cross-entropy; label smoothing here unless a batch mixup already smooths the targets."""
    mixup = instantiate(cfg.dataset.get("mixup"))
    smoothing = 0.0 if mixup is not None else cfg.dataset.get("label_smoothing", 0.0)
    return torch.nn.CrossEntropyLoss(label_smoothing=smoothing), mixup


def resume(run_dir: RunDir, model, opt, schedule, writer: bool) -> dict:
    """Load the last checkpoint if there is one; drop metrics of epochs it does not cover."""
    fresh = {"epoch": 0, "wall_time_s": 0.0, "eval_forward_passes": 0}
    ckpt = run_dir.load_checkpoint() if run_dir.checkpoint.exists() else fresh
    if ckpt is not fresh:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        checkpoint.set_rng_state(ckpt["rng"])
        batch = ckpt["partial"]["batches"] if "partial" in ckpt else 0
        log.info("resuming %s at epoch %d, batch %d", run_dir.path, ckpt["epoch"] + 1, batch)
    dropped = 0
    if writer:
        dropped = run_dir.truncate_jsonl("metrics.jsonl", "epoch", ckpt["epoch"])
        step = ckpt["optimizer"]["step_count"] if "optimizer" in ckpt else 0
        dropped += run_dir.truncate_jsonl("diagnostics.jsonl", "step", step)
    if dropped:
        log.warning("dropped %d metrics line(s) past the checkpoint (that work is redone)", dropped)
    return {k: ckpt[k] for k in (*fresh, "partial") if k in ckpt}


def measure_sharpness(cfg, model, splits, run_dir: RunDir, logger) -> dict:
    """Hessian top eigenvalue and trace, worst-case loss increase: sharpness.json and W&B."""
    device = next(model.parameters()).device
    batches = fixed_batches(
        splits.train,
        batches=cfg.diagnostics.sharpness_batches,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=device,
    )
    result = evaluate_sharpness(model, batches, torch.nn.CrossEntropyLoss())
    (run_dir.path / "sharpness.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.summary(result)
    return result


class Loop:
    """The epoch loop: train, evaluate, record, checkpoint; stops cleanly on preemption."""

    def __init__(self, cfg, net, model, opt, schedule, run_dir, logger, ranks, preemption):
        self.cfg, self.net, self.model, self.opt, self.schedule = cfg, net, model, opt, schedule
        self.run_dir, self.logger, self.ranks, self.preemption = run_dir, logger, ranks, preemption
        self.device = next(model.parameters()).device
        self.autocast = torch.bfloat16 if cfg.precision == "bf16" else None
        self.loss_fn, self.mixup = build_loss(cfg)
        self.stopping = False  # a preemption that every rank has seen
        self.epochs = budget.realised_epochs(run_dir.path) or cfg.epochs  # time_budget_s fixes it

    def train(self, train_loader, test_loader, state: dict) -> dict:
        self.steps_per_epoch = len(train_loader)  # (before a resumed epoch's offset shortens it)
        for epoch in range(state["epoch"] + 1, self.cfg.epochs + 1):
            if epoch > self.epochs:  # the time budget's realised length
                break
            started = time.perf_counter()
            lr = self.opt.param_groups[0]["lr"]
            stats = engine.EpochStats.from_state(state.pop("partial", None))
            train_loader.sampler.set_epoch(epoch, start=stats.batches * train_loader.batch_size)
            stats = self.train_epoch(epoch, train_loader, stats)
            state["wall_time_s"] += time.perf_counter() - started
            if self.stopping and stats.batches < self.steps_per_epoch:
                self.save(state | {"partial": stats.state_dict()}, epoch - 1)
                log.warning("preempted: checkpoint at epoch %d step %d", epoch, self.opt.step_count)
                return state
            self.finish_epoch(epoch, stats, test_loader, lr, state, started)
            self.stopping = any_rank(self.preemption.requested, self.device)
            if self.stopping:
                log.warning("preempted: checkpoint at the end of epoch %d", epoch)
                return state
        return state

    def train_epoch(self, epoch: int, loader, stats: engine.EpochStats) -> engine.EpochStats:
        """One pass over ``loader`` (or its rest, continuing ``stats``), in the order it runs:
        batch, step, record, stop. Train loss and accuracy are at the unperturbed weights."""
        self.net.train()
        timer = engine.StepTimer(self.device)
        start = tick = time.perf_counter() - stats.seconds
        with ProgressBar(self.cfg, epoch, len(loader), self.ranks.is_main) as bar:
            for batch in loader:
                inputs, targets = engine.to_device(batch, self.device, self.cfg.channels_last)
                if self.mixup is not None:  # soft targets
                    inputs, targets = self.mixup(inputs, targets)
                stats.data_seconds += time.perf_counter() - tick
                self.probe_directions(inputs, targets)  # at w0, before the step (when due)

                closure = BatchClosure(
                    self.net, self.loss_fn, inputs, targets, autocast_dtype=self.autocast
                )
                last = stats.batches + 1 == self.steps_per_epoch
                with timer.measure(searched=self.opt.is_search_step()):
                    report = self.opt.step_and_report(closure, angle=self.logs(last))

                stats.add(report.loss_0, closure.logits, targets)
                bar.update(stats)
                self.record_step(report)
                if self.opt.step_count % self.cfg.sync_every == 0:
                    engine.stop_if_skipped(self.opt)  # a host sync, so only every few steps

                if self.should_stop():
                    break
                tick = time.perf_counter()
        stats.seconds = time.perf_counter() - start
        timer.add_to(stats)
        engine.stop_if_skipped(self.opt)
        return stats

    def logs(self, last_of_epoch: bool) -> bool:
        """Whether the next step is recorded (every ``diagnostics.every`` steps, and the epoch's
        last for its record): SAM forms the angle on exactly those steps."""
        every = self.cfg.diagnostics.every
        return last_of_epoch or bool(every and (self.opt.step_count + 1) % every == 0)

    def should_stop(self) -> bool:
        """Stop for preemption at a step boundary all ranks agree on (every sync_every steps
        under DDP, so that no rank waits in a collective the others never reach)."""
        if self.ranks.world_size > 1 and self.opt.step_count % self.cfg.sync_every:
            return False
        self.stopping = any_rank(self.preemption.requested, self.device)
        return self.stopping

    def record_step(self, report) -> None:
        """Every ``diagnostics.every`` steps and on every alpha search: what the step saw."""
        every = self.cfg.diagnostics.every
        if not (report.searched or (every and self.opt.step_count % every == 0)):
            return
        record = {"step": self.opt.step_count}
        record |= {f"diag/{k}": float(v) for k, v in report.scalars().items()}
        if report.loss_k is not None:
            record["diag/loss_increase"] = float(report.loss_k - report.loss_0)
        curve = []
        if report.searched:  # the loss-versus-alpha curve: one key per grid point in the file
            alphas, losses = report.search_alphas.tolist(), report.search_losses.tolist()
            curve = [list(point) for point in zip(alphas, losses, strict=True)]
            record |= {f"diag/search_loss/{alpha:.3g}": loss for alpha, loss in curve}
        self.write_step_record(record, wandb_skip="diag/search_loss/")
        if curve and self.ranks.is_main:  # ... and one wandb.Table per search in W&B
            self.logger.log_table("diag/search_curve", ["alpha", "loss"], curve, record["step"])

    def probe_directions(self, inputs, targets) -> None:
        """Angle from each candidate direction to the true maximum on the rho_max circle
        (directions_every) and on the whole rho_max sphere (sphere_every)."""
        every, step = self.cfg.diagnostics, self.opt.step_count
        due = [n and step % n == 0 for n in (every.directions_every, every.sphere_every)]
        if not any(due):
            return
        loss = batch_loss(self.model, self.loss_fn, [(inputs, targets)], bn="batch")
        params = [p for p in self.model.parameters() if p.requires_grad]
        geometry = dict(
            rho=self.opt.rho or 0.05, rho_max=self.opt.rho_max, alpha=float(self.opt.alpha)
        )
        # ASAM runs: the plane of the adaptive ascent
        adaptive = dict(adaptive=self.opt.adaptive, eta=self.opt.eta, unscaled=self.opt.unscaled)
        record = {"step": step}
        if due[0]:
            record |= direction_diagnostics(
                loss, params, steps=max(self.opt.steps, 1), **geometry, **adaptive
            )
        if due[1]:
            record |= sphere_diagnostics(loss, params, **geometry)
        self.write_step_record(record)

    def write_step_record(self, record: dict, wandb_skip: str | None = None) -> None:
        if self.ranks.is_main:
            self.run_dir.append_jsonl("diagnostics.jsonl", record)
            shown = {
                k: v for k, v in record.items() if not (wandb_skip and k.startswith(wandb_skip))
            }
            self.logger.log(shown, step=record["step"])

    def finish_epoch(self, epoch, stats, test_loader, lr, state, started) -> None:
        evaluated = time.perf_counter()
        test = engine.evaluate(
            self.net,
            test_loader,
            torch.nn.CrossEntropyLoss(),
            device=self.device,
            autocast_dtype=self.autocast,
            channels_last=self.cfg.channels_last,
        )
        if epoch == 1 and self.cfg.get("time_budget_s"):
            self.fit_to_budget(state["wall_time_s"] + time.perf_counter() - evaluated)
        self.schedule.step()
        state["eval_forward_passes"] += len(test_loader)
        state["wall_time_s"] += time.perf_counter() - evaluated
        seconds = stats.seconds + time.perf_counter() - evaluated
        record = epoch_record(epoch, self.opt, stats, test, lr, seconds)
        if self.ranks.is_main:
            self.run_dir.append_metrics(record)
            self.logger.log(record, step=self.opt.step_count)
            log.info(epoch_line(self.cfg, record))
        self.save(state, epoch)

    def fit_to_budget(self, first_epoch_s: float) -> None:
        """Equal wall-clock: the whole epochs that fit time_budget_s at epoch 1's pace (the
        mean over ranks, so all agree), and the schedule rebuilt for them before its first
        step, so a cosine still ends at zero."""
        (seconds,) = sum_over_ranks(torch.tensor(first_epoch_s, device=self.device))
        seconds = float(seconds) / self.ranks.world_size
        self.epochs = budget.epochs_within(self.cfg.time_budget_s, seconds, self.cfg.epochs)
        cfg = self.cfg.copy()
        with open_dict(cfg):
            cfg.epochs = self.epochs
        self.schedule = instantiate(cfg.schedule)(self.opt)
        if self.ranks.is_main:
            budget.save_realised(self.run_dir.path, self.epochs, seconds, self.cfg.time_budget_s)
        log.info(
            "time budget %gs: %d epochs at %.1fs each", cfg.time_budget_s, self.epochs, seconds
        )

    def save(self, state: dict, epoch: int) -> None:
        state["epoch"] = epoch
        if self.ranks.is_main:
            save_checkpoint(self.run_dir, self.model, self.opt, self.schedule, state)
        barrier()


def epoch_record(epoch, opt, stats, test, lr, seconds) -> dict:
    train = stats.means()
    record = {
        "epoch": epoch,
        "step": opt.step_count,
        "train/loss": train["loss"],
        "train/acc": train["acc"],
        "test/loss": test["loss"],
        "test/acc": test["acc"],
        "lr": lr,
        "time/epoch": seconds,
        "time/data": stats.data_seconds,
        "time/optimizer_step": stats.step_seconds,
        "time/search_share": search_share(stats, seconds),
        "compute/forward_passes": opt.forward_passes,
        "compute/backward_passes": opt.backward_passes,
    }
    for key in ("alpha", "angle", "grad_norm_0", "grad_norm_k"):
        value = getattr(opt.report, key)
        if value is not None:
            record[f"xsam/{key}"] = float(value)
    return record


def time_totals(records: list[dict]) -> dict:
    """Seconds over all epochs: training+evaluation, data loading, optimizer steps, search."""
    total = {k: sum(r[f"time/{k}"] for r in records) for k in ("epoch", "data", "optimizer_step")}
    search = sum(r["time/search_share"] * r["time/epoch"] for r in records)
    return {
        "epoch_time_s": total["epoch"],
        "data_time_s": total["data"],
        "optimizer_step_time_s": total["optimizer_step"],
        "search_time_s": search,
        "search_share": search / total["epoch"] if total["epoch"] else 0.0,
    }


def search_share(stats: engine.EpochStats, epoch_seconds: float) -> float:
    """The alpha search's extra time as a fraction of the epoch: the search steps' time
    beyond what the same number of ordinary steps took."""
    if not stats.search_steps:
        return 0.0
    others = stats.batches - stats.search_steps
    ordinary = (stats.step_seconds - stats.search_seconds) / others if others else 0.0
    return max(stats.search_seconds - stats.search_steps * ordinary, 0.0) / epoch_seconds


def epoch_line(cfg, r: dict) -> str:
    alpha = f" alpha {r['xsam/alpha']:.2f}" if "xsam/alpha" in r else ""
    return (
        f"epoch {r['epoch']}/{cfg.epochs} train loss {r['train/loss']:.4f} acc {r['train/acc']:.2f}"
        f" | test loss {r['test/loss']:.4f} acc {r['test/acc']:.2f} | lr {r['lr']:.4g}{alpha}"
        f" | {r['time/epoch']:.1f}s"
    )


def save_checkpoint(run_dir: RunDir, model, opt, schedule, state: dict) -> None:
    checkpoint.save_atomic(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": checkpoint.rng_state(),
            **state,
        },
        run_dir.checkpoint,
    )


def finish(cfg, run_dir: RunDir, opt, state: dict, choices: dict) -> dict:
    """summary.json: final-epoch metrics, the best epoch, and the compute used."""
    records = run_dir.read_metrics()
    best = max(records, key=lambda r: r["test/acc"])
    meta = run_dir.read_meta()
    summary = {
        "status": "finished",
        "study": cfg.study,
        "seed": cfg.seed,
        "final": records[-1],
        "best_epoch": best["epoch"],
        "best/test_acc": best["test/acc"],
        "compute": {
            "forward_passes": opt.forward_passes,
            "backward_passes": opt.backward_passes,
            "eval_forward_passes": state["eval_forward_passes"],
            "wall_time_s": state["wall_time_s"],
            "optimizer_steps": opt.step_count,
            **time_totals(records),
        },
        "sharpness": state.get("sharpness"),
        "choices": choices,
        "git": meta["git"],
        "run_id": meta["run_id"],
        "config_hash": meta["config_hash"],
    }
    run_dir.write_summary(summary)
    log.info("finished: %s", run_dir.path)
    return summary


class ProgressBar:
    """A tqdm bar per epoch with the running loss and images/s (read every sync_every steps)."""

    def __init__(self, cfg, epoch: int, total: int, show: bool = True) -> None:
        from tqdm import tqdm

        self.every = cfg.sync_every
        self.bar = tqdm(
            total=total, desc=f"epoch {epoch}", leave=False, disable=not (cfg.progress and show)
        )
        self.start = time.perf_counter()
        self.steps = 0

    def update(self, stats: engine.EpochStats) -> None:
        self.steps += 1
        self.bar.update(1)
        if self.steps % self.every == 0 and not self.bar.disable:
            rate = stats.count / (time.perf_counter() - self.start)
            self.bar.set_postfix(
                loss=f"{stats.loss_sum.item() / stats.count:.4f}", img_s=f"{rate:.0f}"
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


if __name__ == "__main__":
    main()
else:  # imported (tests, notebooks): the whole module at once
    import_training_stack()
