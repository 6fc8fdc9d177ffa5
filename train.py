"""Train one model with one optimizer of the SAM family: compose -> build -> loop -> finish.

    python train.py                                    # XSAM on the embedded digits
    python train.py dataset=cifar100 model=resnet18 optimizer=xsam optimizer.rho=0.15 seed=1
    python train.py -m optimizer=sgd,sam,xsam seed=0,1,2

Re-running a command resumes its unfinished run from the last checkpoint and does nothing
for a finished one. See README.md for the run directory and the W&B settings.
"""

import logging
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from xsam import checkpoint, engine
from xsam.config_checks import ConfigError, check_config
from xsam.data.loader import build_loader
from xsam.models.param_groups import weight_decay_groups
from xsam.rundir import RunDir, config_hash, new_meta, run_name
from xsam.wandb_logger import WandbLogger

log = logging.getLogger("train")
REPO = Path(__file__).resolve().parent
# settings that change where or how a run is shown, not what it computes
NOT_IN_HASH = ("run_root", "data_root", "logger", "loader", "progress", "sync_every", "device")
GROUPS = ("dataset", "model", "optimizer", "schedule")
USER_ERRORS = (ConfigError, FileNotFoundError, engine.NonFiniteLoss)


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict | None:
    try:
        return run(cfg, HydraConfig.get().runtime.choices)
    except Exception as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if not isinstance(cause, USER_ERRORS):
            raise
        log.error("%s: %s", type(cause).__name__, cause)  # one line, no traceback
        sys.exit(2)


def run(cfg: DictConfig, choices: dict[str, str]) -> dict | None:
    check_config(cfg)
    choices = {g: choices[g] for g in GROUPS}
    digest = config_hash(semantic_config(cfg))
    run_dir = RunDir(Path(cfg.run_root) / cfg.experiment / run_name(choices, cfg.seed, digest))
    if run_dir.is_finished():
        log.info("already finished, nothing to do: %s", run_dir.path)
        return None

    device = pick_device(cfg.device)
    set_determinism(cfg.deterministic)
    torch.manual_seed(cfg.seed)  # model initialisation
    splits = instantiate(cfg.dataset.splits)
    train_loader, test_loader = build_loaders(cfg, splits, device)
    model, net = build_model(cfg, device)
    opt = build_optimizer(cfg, model, steps_per_epoch=len(train_loader))
    schedule = instantiate(cfg.schedule)(opt)

    meta = new_meta(choices, digest, REPO)
    run_dir.create(OmegaConf.to_yaml(cfg, resolve=True), meta)
    state = resume(run_dir, model, opt, schedule)
    logger = WandbLogger(
        **cfg.logger,
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
    try:
        state = train(
            cfg, net, model, opt, schedule, train_loader, test_loader, run_dir, logger, state
        )
        summary = finish(cfg, run_dir, opt, state, choices)
        logger.summary({"summary/" + k: v for k, v in summary["final"].items()})
    except BaseException:
        logger.finish(exit_code=1)
        raise
    logger.finish()
    return summary


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config minus the settings that do not change what a run computes."""
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.data_root = "<data_root>"  # the same run on another cluster's storage is the same run
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in resolved.items() if k not in NOT_IN_HASH}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available")
    return torch.device(name)


def set_determinism(on: bool) -> None:
    torch.backends.cudnn.benchmark = not on
    if on:  # (importing the switch costs seconds, so only when asked)
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def build_loaders(cfg: DictConfig, splits, device: torch.device):
    common = dict(
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        num_workers=cfg.loader.num_workers,
        pin_memory=cfg.loader.pin_memory and device.type == "cuda",
        persistent_workers=cfg.loader.persistent_workers,
    )
    if len(splits.train) < cfg.batch_size:
        raise ConfigError(
            f"batch_size={cfg.batch_size} exceeds the {len(splits.train)} training samples"
        )
    return build_loader(splits.train, train=True, **common), build_loader(
        splits.test, train=False, **common
    )


def build_model(cfg: DictConfig, device: torch.device):
    """The model (whose state is saved) and the module that runs it (compiled or not)."""
    model = instantiate(cfg.model).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, (torch.compile(model) if cfg.compile else model)


def build_optimizer(cfg: DictConfig, model: torch.nn.Module, steps_per_epoch: int):
    every = cfg.optimizer.search_every
    params = model.parameters()
    if cfg.no_decay_norm_bias:  # ViT recipes: no weight decay on norm weights and biases
        params = weight_decay_groups(model, weight_decay=cfg.optimizer.base.weight_decay)
    search_every = steps_per_epoch if every == "epoch" else every
    return instantiate(cfg.optimizer, search_every=search_every)(params)


def build_loss(cfg: DictConfig):
    """Cross-entropy; label smoothing here unless a batch mixup already smooths the targets."""
    mixup = instantiate(cfg.dataset.get("mixup"))
    smoothing = 0.0 if mixup is not None else cfg.dataset.get("label_smoothing", 0.0)
    return torch.nn.CrossEntropyLoss(label_smoothing=smoothing), mixup


def resume(run_dir: RunDir, model, opt, schedule) -> dict:
    """Load the last checkpoint if there is one; drop metrics of epochs it does not cover."""
    if not run_dir.checkpoint.exists():
        dropped = run_dir.truncate_metrics(last_epoch=0)
        if dropped:
            log.warning("no checkpoint: dropped %d metrics line(s) of an unfinished start", dropped)
        return {"epoch": 0, "wall_time_s": 0.0, "eval_forward_passes": 0}
    ckpt = checkpoint.load(run_dir.checkpoint)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["schedule"])
    checkpoint.set_rng_state(ckpt["rng"])
    dropped = run_dir.truncate_metrics(last_epoch=ckpt["epoch"])
    log.info(
        "resuming %s after epoch %d%s",
        run_dir.path,
        ckpt["epoch"],
        f" (dropped {dropped} metrics line(s) of the interrupted epoch)" if dropped else "",
    )
    return {k: ckpt[k] for k in ("epoch", "wall_time_s", "eval_forward_passes")}


def train(
    cfg, net, model, opt, schedule, train_loader, test_loader, run_dir, logger, state
) -> dict:
    device = next(model.parameters()).device
    autocast = torch.bfloat16 if cfg.precision == "bf16" else None
    loss_fn, mixup = build_loss(cfg)
    eval_loss = torch.nn.CrossEntropyLoss()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        started = time.perf_counter()
        train_loader.sampler.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        with ProgressBar(cfg, epoch, len(train_loader)) as bar:
            stats = engine.train_one_epoch(
                net,
                train_loader,
                opt,
                loss_fn,
                device=device,
                autocast_dtype=autocast,
                channels_last=cfg.channels_last,
                on_step=bar.update,
                check_every=cfg.sync_every,
                batch_transform=mixup,
            )
        test = engine.evaluate(
            net,
            test_loader,
            eval_loss,
            device=device,
            autocast_dtype=autocast,
            channels_last=cfg.channels_last,
        )
        schedule.step()
        state["eval_forward_passes"] += len(test_loader)
        state["wall_time_s"] += time.perf_counter() - started
        record = epoch_record(epoch, opt, stats, test, lr, time.perf_counter() - started)
        run_dir.append_metrics(record)
        logger.log(
            {k: v for k, v in record.items() if k != "epoch"} | {"epoch": epoch},
            step=opt.step_count,
        )
        log.info(epoch_line(cfg, record))
        state["epoch"] = epoch
        save_checkpoint(run_dir, model, opt, schedule, state)
    return state


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
        "compute/forward_passes": opt.forward_passes,
        "compute/backward_passes": opt.backward_passes,
    }
    diag = opt.diagnostics
    for key in ("alpha", "angle", "grad_norm_0", "grad_norm_k"):
        if key in diag:
            record[f"xsam/{key}"] = float(diag[key])
    return record


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
        "experiment": cfg.experiment,
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
        },
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

    def __init__(self, cfg, epoch: int, total: int) -> None:
        from tqdm import tqdm

        self.every = cfg.sync_every
        self.bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, disable=not cfg.progress)
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
