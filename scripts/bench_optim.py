"""Optimizer step benchmark: our foreach XSAM family against a per-tensor reproduction.

    python scripts/bench_optim.py --device all      # the tables in docs/BENCHMARKS.md
    python scripts/bench_optim.py --quick           # smoke test, tiny network

Prints one table, every number measured side by side in one run, per device (CPU, and CUDA
when present). For each method of the family, over the CIFAR ResNet-18 of xsam.models:

1. optimizer-only ms/step: the closure hands out precomputed gradients and a precomputed loss,
   so no model runs. Next to ours (over foreach SGD): the per-tensor reproduction below
   (PerTensorXSAM), the time to copy the step's minimal memory traffic once (the floor), and
   ours over fused SGD; the first row is base SGD alone;
2. full-step ms with a real forward/backward (BatchClosure, CIFAR-sized inputs);
3. extra memory the optimizer holds beyond its base optimizer, in parameter copies (P).

docs/BENCHMARKS.md explains the traffic accounting behind the floor column.
"""

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torchvision
from torch import Tensor, nn
from torch.optim import SGD, Optimizer

from xsam.benchmarking import Column, cpu_name, markdown_table
from xsam.models import cifar_resnet
from xsam.optim import GSAM, WSAM, XSAM, BatchClosure
from xsam.optim.xsam import alpha_grid

LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 1e-3  # the paper's base SGD
RHO, RHO_MAX, ALPHA_MAX, ALPHA_DELTA = 0.15, 0.3, 2.0, 0.1
GRID = len(alpha_grid(ALPHA_MAX, ALPHA_DELTA))  # 21 alpha-search passes
NEVER = 10**9  # search_every for "dynamic XSAM between searches"
CHECK_MAX_NUMEL = 2**16  # the equivalence check runs on the list's tensors up to this size


# ---------------------------------------------------------------------------------------------
# Baseline reproduction (for timing only): the XSAM step written the way the authors' public
# code writes it (GitHub Cccjl219/XSAM, utils/xsam.py): Python loops over parameters, per-tensor
# norms stacked, a clone of every parameter as backup, three parameter-sized buffers per
# parameter (data_0, v0, v1), restores by assigning a clone to `.data`, one torch.where per
# tensor for the sin t fallback, a for-loop base SGD. Our own code, with the same semantics as
# xsam.optim.XSAM (checked at start-up); unlike the authors, it clamps cos t like ours does.
# ---------------------------------------------------------------------------------------------
class PerTensorXSAM(Optimizer):
    """Baseline reproduction of the authors' per-tensor XSAM step, behind the closure API."""

    def __init__(self, params, base, *, rho, steps=1, alpha=1.0, search_every=None, eps=1e-12):
        super().__init__(params, {})
        self.base = base(self.param_groups)
        self.param_groups = self.base.param_groups
        self.rho, self.steps, self.alpha, self.eps = rho, steps, float(alpha), eps
        self.search_every, self.step_count = search_every, 0

    def _with_grad(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _norm(self, tensors: list[Tensor]) -> Tensor:
        return torch.norm(torch.stack([t.norm(p=2) for t in tensors]), p=2)

    @torch.no_grad()
    def step(self, closure, angle=True):  # type: ignore[override]
        """``angle`` is ours alone: the authors' step always forms the plane."""
        for p in (p for g in self.param_groups for p in g["params"]):
            self.state[p]["data_0"] = p.data.clone()  # backup
        loss_0 = self._gradient_pass(closure)  # the loss at w0, as ours returns
        for i in range(self.steps):
            if i > 0:
                self._gradient_pass(closure)
            params = self._with_grad()
            step_size = (self.rho / self.steps) / (self._norm([p.grad for p in params]) + self.eps)
            for p in params:
                p.data += p.grad * step_size
        self._gradient_pass(closure)
        self._second_step(closure)
        self.step_count += 1
        return loss_0

    def _gradient_pass(self, closure) -> Tensor:
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            return closure().detach()

    def _second_step(self, closure) -> None:
        params = self._with_grad()
        scale = self._norm([p.grad for p in params])
        for p in params:
            self.state[p]["v0"] = p.data - self.state[p]["data_0"]
        v0_norm = self._norm([self.state[p]["v0"] for p in params])
        for p in params:
            self.state[p]["v0"] /= v0_norm + self.eps
            self.state[p]["v1"] = p.grad / (scale + self.eps)
        if self.search_every is not None and self.step_count % self.search_every == 0:
            self.alpha = self._search_alpha(closure, params)
        self._set_direction(params, self.alpha, scale)
        for p in (p for g in self.param_groups for p in g["params"]):
            p.data = self.state[p]["data_0"].clone()  # restore
        self.base.step()

    def _set_direction(self, params: list[Tensor], alpha: float, scale: Tensor) -> None:
        dot = 0
        for p in params:
            dot += (self.state[p]["v0"] * self.state[p]["v1"]).sum()
        t = torch.arccos(dot.clamp(-1.0, 1.0))
        sin_t = torch.sin(t)
        for p in params:
            v0, v1 = self.state[p]["v0"], self.state[p]["v1"]
            p.grad = torch.where(
                sin_t < 1e-8,
                (scale * 0.5) * (v0 + v1),
                (scale * torch.sin((1 - alpha) * t) / sin_t) * v0
                + (scale * torch.sin(alpha * t) / sin_t) * v1,
            )

    def _search_alpha(self, closure, params: list[Tensor]) -> float:
        best_alpha, max_loss, t_device = 0.0, -math.inf, params[0].device
        for alpha in alpha_grid(ALPHA_MAX, ALPHA_DELTA):
            self._set_direction(params, float(alpha), torch.tensor(RHO_MAX, device=t_device))
            for p in params:
                p.data = self.state[p]["data_0"] + p.grad
            loss = closure(backward=False).item()
            if loss > max_loss:  # strict: the first of ties wins, as in ours
                best_alpha, max_loss = float(alpha), loss
        return best_alpha


# ---------------------------------------------------------------------------------------------
# The rows: one per method, with the minimal memory traffic of its step in parameter-sized
# streams (P = one read or write of every parameter); docs/BENCHMARKS.md derives each count.
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    label: str
    settings: dict | None  # XSAM keyword arguments; None: base SGD alone
    streams: int
    kind: str = "xsam"  # a key of BASELINES for the GSAM and WSAM rows
    angle: bool = False  # step(closure, angle=True): SAM forms the plane, as on logged steps

    @property
    def is_search(self) -> bool:
        return bool(self.settings) and self.settings.get("search_every") == 1


METHODS = [
    Method("SGD (base step alone)", None, 5),
    Method("SAM (k=1, alpha=1)", dict(steps=1, alpha=1.0), 10),
    Method("SAM, angle formed (logged steps)", dict(steps=1, alpha=1.0), 13, angle=True),
    Method("multi-step SAM (k=3)", dict(steps=3, alpha=1.0), 18),
    Method("XSAM static (alpha=0.5)", dict(steps=1, alpha=0.5), 14),
    Method("XSAM dynamic, non-search step", dict(steps=1, search_every=NEVER), 14),
    Method("XSAM dynamic, search step", dict(steps=1, search_every=1), 15 + 4 * GRID),
]


# ---------------------------------------------------------------------------------------------
# GSAM and WSAM rows: ours (xsam.optim.GSAM, WSAM) against each written per tensor the way the
# authors' PyTorch code writes it (juntang-zhuang/GSAM gsam/gsam.py; atorch's WeightedSAM):
# loops over parameters, the clean gradient cloned and the perturbation e_w stored for every
# parameter, restores by subtracting e_w. Floors: GSAM 13 P (||g0|| 1; backup and ascent 4;
# <g0, g1> and ||g1|| 2; grad = a g1 + b g0 fused into SGD from w0: read w0, g1, g0, buf,
# write buf, w 6); WSAM 11 P (the same without the dot pass; decoupled, the sharpness step
# w -= lr a (g1 - g0) fuses into the same final pass).
# ---------------------------------------------------------------------------------------------
class PerTensorTwoPass(Optimizer):
    """What the two per-tensor baselines share: the base optimizer, per-tensor norms, passes."""

    def __init__(self, params, base) -> None:
        super().__init__(params, {})
        self.base = base(self.param_groups)
        self.param_groups = self.base.param_groups

    _with_grad, _norm, _gradient_pass = (
        PerTensorXSAM._with_grad,
        PerTensorXSAM._norm,
        PerTensorXSAM._gradient_pass,
    )


class PerTensorGSAM(PerTensorTwoPass):
    """Baseline reproduction of the authors' per-tensor GSAM step (constant lr: rho = rho_max)."""

    def __init__(self, params, base, *, rho_max, rho_min, alpha, eps=1e-12):
        super().__init__(params, base)
        self.rho, self.alpha, self.eps = rho_max, alpha, eps

    @torch.no_grad()
    def step(self, closure):  # type: ignore[override]
        loss_0 = self._gradient_pass(closure)
        scale = self.rho / (self._norm([p.grad for p in self._with_grad()]) + self.eps)
        for p in self._with_grad():
            self.state[p]["old_g"] = p.grad.clone()
            self.state[p]["e_w"] = p.grad * scale
            p.add_(self.state[p]["e_w"])
        self._gradient_pass(closure)
        params = self._with_grad()
        inner = sum(torch.sum(self.state[p]["old_g"] * p.grad) for p in params)
        new_norm = self._norm([p.grad for p in params])
        old_norm = self._norm([self.state[p]["old_g"] for p in params])
        cosine = inner / (new_norm * old_norm + self.eps)
        for p in params:
            vertical = self.state[p]["old_g"] - cosine * old_norm * p.grad / (new_norm + self.eps)
            p.grad.add_(vertical, alpha=-self.alpha)
            p.sub_(self.state[p]["e_w"])
        self.base.step()
        return loss_0


class PerTensorWSAM(PerTensorTwoPass):
    """Baseline reproduction of the authors' per-tensor WSAM step (atorch's WeightedSAM)."""

    def __init__(self, params, base, *, rho, gamma, decouple, eps=1e-12):
        super().__init__(params, base)
        self.rho, self.a, self.decouple, self.eps = rho, gamma / (1 - gamma), decouple, eps

    @torch.no_grad()
    def step(self, closure):  # type: ignore[override]
        loss_0 = self._gradient_pass(closure)
        params = self._with_grad()
        scale = self.rho / (self._norm([p.grad for p in params]) + self.eps)
        for p in params:
            self.state[p]["e_w"] = p.grad * scale
            p.add_(self.state[p]["e_w"])
            self.state[p]["grad"] = p.grad.detach().clone()
        self._gradient_pass(closure)
        for p in params:
            p.add_(self.state[p]["e_w"], alpha=-1.0)
            if not self.decouple:
                p.grad.mul_(self.a).add_(self.state[p]["grad"], alpha=1.0 - self.a)
            else:
                self.state[p]["sharpness"] = p.grad.detach().clone() - self.state[p]["grad"]
                p.grad.mul_(0.0).add_(self.state[p]["grad"])
        self.base.step()
        if self.decouple:
            for group in self.param_groups:
                for p in (p for p in group["params"] if p.grad is not None):
                    p.add_(self.state[p]["sharpness"], alpha=-group["lr"] * self.a)
        return loss_0


BASELINES = {  # Method.kind -> implementation -> optimizer class
    "gsam": {"ours": GSAM, "ours-fused": GSAM, "per-tensor": PerTensorGSAM},
    "wsam": {"ours": WSAM, "ours-fused": WSAM, "per-tensor": PerTensorWSAM},
}
METHODS += [
    Method("GSAM (alpha=0.6)", dict(rho_max=RHO, rho_min=RHO, alpha=0.6), 13, "gsam"),
    Method("WSAM (gamma=0.9, decoupled)", dict(rho=RHO, gamma=0.9, decouple=True), 11, "wsam"),
    Method("WSAM (gamma=0.9, coupled)", dict(rho=RHO, gamma=0.9, decouple=False), 11, "wsam"),
]


IMPLS = {  # implementation -> (optimizer class, how the base SGD runs)
    "ours": (XSAM, dict(foreach=True)),
    "ours-fused": (XSAM, dict(fused=True)),  # the same XSAM over torch's fused SGD kernel
    "per-tensor": (PerTensorXSAM, dict(foreach=False)),
}


def build(method: Method, params: list[Tensor], impl: str) -> Optimizer:
    """The method's optimizer in one implementation; base SGD alone when it has no settings."""
    kind, how = IMPLS[impl]
    base = partial(SGD, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, **how)
    if method.kind in BASELINES:
        return BASELINES[method.kind][impl](params, base, **method.settings)
    if method.settings is None:
        return base(params)
    return kind(params, base, rho=RHO, **method.settings)


def fresh_params(template: list[Tensor]) -> list[nn.Parameter]:
    return [nn.Parameter(t.detach().clone()) for t in template]


class PresetClosure:
    """closure(backward) for optimizer-only timing: no model runs.

    A gradient pass hands each parameter its precomputed gradient, the same tensor every pass
    and no copy, so the closure costs next to nothing. Our optimizer scales gradients in place,
    so from the second pass on it sees rescaled values: the same work on finite numbers of a
    sane size. (Values do not matter for timing; the check uses QuadraticClosure.)
    Every pass returns the same precomputed 0-d loss.
    """

    def __init__(self, params: list[Tensor], grads: list[Tensor], loss: Tensor) -> None:
        self.params, self.grads, self.loss = params, grads, loss

    def __call__(self, backward: bool = True) -> Tensor:
        if backward:
            for p, g in zip(self.params, self.grads, strict=True):
                p.grad = g
        return self.loss


def preset_closure(params: list[Tensor], seed: int) -> PresetClosure:
    gen = torch.Generator().manual_seed(seed)
    grads = [(1e-3 * torch.randn(p.shape, generator=gen)).to(p.device) for p in params]
    return PresetClosure(params, grads, torch.tensor(2.3, device=params[0].device))


class QuadraticClosure:
    """loss = sum 0.5 c (w - m)^2, gradient c (w - m): gradients that move with the weights,
    so the ascent, the plane angle and the alpha search all do real work in the check."""

    def __init__(self, params: list[Tensor], seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        spread = RHO / math.sqrt(sum(p.numel() for p in params))  # ||g_0|| about rho
        self.params = params
        self.c = [(0.5 + torch.rand(p.shape, generator=gen)).to(p.device) for p in params]
        self.m = [p.detach() + spread * torch.randn(p.shape, generator=gen).to(p) for p in params]

    def __call__(self, backward: bool = True) -> Tensor:
        diff = torch._foreach_sub([p.detach() for p in self.params], self.m)
        weighted = torch._foreach_mul(diff, self.c)
        if backward:
            for p, g in zip(self.params, weighted, strict=True):
                p.grad = g
        dots = [torch.dot(d.flatten(), w.flatten()) for d, w in zip(diff, weighted, strict=True)]
        return 0.5 * torch.stack(dots).sum()


def check_against_ours(template: list[Tensor], steps: int = 3) -> dict[str, float]:
    """Largest |w_impl - w_ours| after `steps` steps of every method, for each other impl."""
    worst = {impl: 0.0 for impl in IMPLS if impl != "ours"}
    for method in METHODS:
        weights = {}
        for impl in IMPLS:
            params = weights[impl] = fresh_params(template)
            opt, closure = build(method, params, impl), QuadraticClosure(params)
            for _ in range(steps):
                if method.settings is None:
                    closure()  # SGD: the gradients first, then the step
                opt.step(closure)
        for impl in worst:
            for a, b in zip(weights[impl], weights["ours"], strict=True):
                worst[impl] = max(worst[impl], (a - b).abs().max().item())
    return worst


# ---------------------------------------------------------------------------------------------
# 1. Optimizer-only time, interleaved: every repeat times every (method, implementation) once.
# ---------------------------------------------------------------------------------------------
class CopyFloor:
    """Streams a step's minimal traffic once: `streams` parameter-sized reads and writes, as
    streams // 2 copies of a parameter-shaped list (plus a half-size copy when odd)."""

    def __init__(self, template: list[Tensor]) -> None:
        self.src = [torch.ones_like(t) for t in template]
        self.dst = [torch.zeros_like(t) for t in template]
        half = sum(t.numel() for t in template) // 2
        self.half_src = torch.ones(half, dtype=template[0].dtype, device=template[0].device)
        self.half_dst = torch.zeros_like(self.half_src)

    def run(self, streams: int) -> None:
        for _ in range(streams // 2):
            torch._foreach_copy_(self.dst, self.src)
        if streams % 2:
            self.half_dst.copy_(self.half_src)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ms_per_call(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) * 1e3 / calls


def time_groups(groups: list[tuple[dict, int]], device: torch.device) -> list[dict]:
    """ms per call, {key: [one sample per repeat]}, for each group ({key: (fn, calls)}, repeats).

    Each repeat runs every group once and a group's cases back to back, in an order rotated
    by the repeat: the ratios taken inside a group compare samples seconds apart, so a load
    that comes and goes on a shared machine hits both sides alike.
    """
    warmup = 3 if device.type == "cuda" else 1  # allocations, lazy state, the first search
    for cases, _ in groups:
        for fn, _ in cases.values():
            ms_per_call(fn, warmup, device)
    samples: list[dict] = [{key: [] for key in cases} for cases, _ in groups]
    for r in range(max(repeats for _, repeats in groups)):
        for (cases, repeats), out in zip(groups, samples, strict=True):
            keys = list(cases)
            for key in (keys[r % len(keys) :] + keys[: r % len(keys)]) if r < repeats else []:
                fn, calls = cases[key]
                out[key].append(ms_per_call(fn, calls, device))
    return samples


def optimizer_only(template: list[Tensor], args: argparse.Namespace) -> tuple[list, list]:
    """Per method, samples of every implementation and the floor, and the optimizers."""
    device, floor = template[0].device, CopyFloor(template)
    groups, opts = [], []
    for i, method in enumerate(METHODS):
        n, repeats = calls_and_repeats(method, args, args.opt_repeats)  # cheap: more repeats
        group, pair = {"floor": (partial(floor.run, method.streams), n)}, {}
        for impl in IMPLS:
            params = fresh_params(template)
            opt, closure = build(method, params, impl), preset_closure(params, seed=i)
            if method.settings is None:
                closure()  # SGD alone: gradients set once, the timed call is opt.step()
            step = (
                partial(opt.step, closure, angle=True)
                if method.angle
                else partial(opt.step, closure)
            )
            group[impl], pair[impl] = (step, n), opt
        groups.append((group, repeats))
        opts.append(pair)
    return time_groups(groups, device), opts


def calls_and_repeats(
    method: Method, args: argparse.Namespace, repeats: int | None = None
) -> tuple[int, int]:
    """A search step costs about 20 ordinary ones: fewer calls and repeats for it."""
    repeats = repeats or args.repeats
    if method.is_search:
        return max(1, args.calls // 3), min(repeats, args.search_repeats)
    return args.calls, repeats


# ---------------------------------------------------------------------------------------------
# 2. Full step: real forward and backward on a CIFAR-sized batch, our optimizer only.
# ---------------------------------------------------------------------------------------------
def full_step_fn(net: nn.Module, opt: Optimizer, method: Method, x: Tensor, y: Tensor):
    loss_fn = nn.functional.cross_entropy
    if method.settings is not None:
        angle = dict(angle=True) if method.angle else {}
        return lambda: opt.step(BatchClosure(net, loss_fn, x, y), **angle)

    def sgd_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return sgd_step


def full_step(model: nn.Module, device: torch.device, args: argparse.Namespace) -> dict:
    """Per method: ms per training step and its ratios to SAM and to two SGD steps."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    cases, repeats = {}, {}
    for method in METHODS:
        net = copy.deepcopy(model).to(device).train()  # one network per method: own trajectory
        opt = build(method, list(net.parameters()), "ours")
        n, repeats[method.label] = calls_and_repeats(method, args)
        cases[method.label] = (full_step_fn(net, opt, method, x, y), n)
    sgd, sam, *others = (m.label for m in METHODS)
    pairs = [({sgd: cases[sgd], sam: cases[sam]}, repeats[sgd])]
    pairs += [({sam: cases[sam], o: cases[o]}, repeats[o]) for o in others]
    samples = time_groups(pairs, device)  # every method timed next to SAM
    sam_over_2sgd = median_ratio(samples[0][sam], samples[0][sgd], 2.0)
    out = {sgd: (samples[0][sgd], 0.5 / sam_over_2sgd), sam: (samples[0][sam], 1.0)}
    for label, pair in zip(others, samples[1:], strict=True):
        out[label] = (pair[label], median_ratio(pair[label], pair[sam]))
    return {
        label: {
            "full_ms": statistics.median(ms),
            "full_over_sam": over_sam,
            "full_over_2sgd": over_sam * sam_over_2sgd,
        }
        for label, (ms, over_sam) in out.items()
    }


# ---------------------------------------------------------------------------------------------
# 3. Memory beyond the base optimizer, in parameter copies (P).
# ---------------------------------------------------------------------------------------------
def _storages(obj, out: dict[int, int], seen: set[int]) -> None:
    """Every tensor storage reachable from obj through dicts, lists, tuples and sets."""
    if isinstance(obj, Tensor):
        storage = obj.untyped_storage()
        out[storage.data_ptr()] = storage.nbytes()
    elif isinstance(obj, dict | list | tuple | set) and id(obj) not in seen:
        seen.add(id(obj))
        items = obj.items() if isinstance(obj, dict) else ((v, None) for v in obj)
        for key, value in items:
            _storages(key, out, seen)
            _storages(value, out, seen)


def held_copies(opt: Optimizer, params: list[Tensor]) -> float:
    """Bytes of the tensors the optimizer object holds, less params, grads and base state."""
    base = getattr(opt, "base", opt)
    excluded: dict[int, int] = {}
    _storages([params, [p.grad for p in params if p.grad is not None]], excluded, set())
    _storages(base.state, excluded, set())
    held: dict[int, int] = {}
    _storages(
        [v for k, v in vars(opt).items() if v is not base and k != "param_groups"], held, set()
    )
    extra = sum(n for ptr, n in held.items() if ptr not in excluded)
    return extra / sum(p.numel() * p.element_size() for p in params)


def cuda_peak(method: Method, impl: str, template: list[Tensor]) -> float:
    """CUDA: peak allocated during one step above params, grads and the base state, in P."""
    params = fresh_params(template)
    closure = preset_closure(params, seed=0)
    if method.settings is None:
        closure()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    opt = build(method, params, impl)
    step = partial(opt.step, closure)
    step(), step()  # the state exists from here on
    base_state: dict[int, int] = {}
    _storages(getattr(opt, "base", opt).state, base_state, set())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before - sum(base_state.values())
    return peak / sum(p.numel() * p.element_size() for p in params)


# ---------------------------------------------------------------------------------------------
# The report: one table, every device's rows side by side.
# ---------------------------------------------------------------------------------------------
def median_ratio(num: list[float], den: list[float], factor: float = 1.0) -> float:
    """Median over repeats of the per-repeat ratio: both were timed in the same repeat."""
    return statistics.median(a / (factor * b) for a, b in zip(num, den, strict=True))


def device_rows(device, template, model, args) -> list[dict]:
    """Every measurement for one device, as one dict per method."""
    print(f"{device.type}: timing the optimizer alone", file=sys.stderr, flush=True)
    opt_samples, opts = optimizer_only(template, args)
    print(f"{device.type}: timing full steps", file=sys.stderr, flush=True)
    full = full_step(model, device, args)
    rows = []
    for method, samples, pair in zip(METHODS, opt_samples, opts, strict=True):
        ours, per_tensor, floor = samples["ours"], samples["per-tensor"], samples["floor"]
        row = {
            "device": device.type,
            "method": method.label,
            "ours_ms": statistics.median(ours),
            "per_tensor_ms": statistics.median(per_tensor),
            "per_tensor_over_ours": median_ratio(per_tensor, ours),
            "floor_P": method.streams,
            "floor_ms": statistics.median(floor),
            "ours_over_floor": median_ratio(ours, floor),
            "fused_ms": statistics.median(samples["ours-fused"]),
            "per_tensor_over_fused": median_ratio(per_tensor, samples["ours-fused"]),
            **full[method.label],
        }
        for impl in ("ours", "per-tensor"):
            opt = pair[impl]
            params = [p for g in opt.param_groups for p in g["params"]]
            row[f"held_P_{impl}"] = held_copies(opt, params)
            row[f"cuda_peak_P_{impl}"] = None
        rows.append(row)
    if device.type == "cuda":  # the peak beyond the base optimizer's own peak
        del opts
        base_peak = {impl: cuda_peak(METHODS[0], impl, template) for impl in ("ours", "per-tensor")}
        for row, method in zip(rows[1:], METHODS[1:], strict=True):
            for impl in ("ours", "per-tensor"):
                row[f"cuda_peak_P_{impl}"] = cuda_peak(method, impl, template) - base_peak[impl]
    return rows


COLUMNS: list[Column] = [  # (header, key, format)
    ("device", "device", "{}"),
    ("step", "method", "{}"),
    ("ours ms", "ours_ms", "{:.2f}"),
    ("per-tensor ms", "per_tensor_ms", "{:.2f}"),
    ("per-tensor / ours", "per_tensor_over_ours", "{:.2f}x"),
    ("floor traffic", "floor_P", "{} P"),
    ("floor ms", "floor_ms", "{:.2f}"),
    ("ours / floor", "ours_over_floor", "{:.2f}x"),
    ("ours, fused SGD ms", "fused_ms", "{:.2f}"),
    ("per-tensor / ours, fused SGD", "per_tensor_over_fused", "{:.2f}x"),
    ("full-step ms", "full_ms", "{:.1f}"),
    ("full / SAM", "full_over_sam", "{:.3f}"),
    ("full / 2 SGD", "full_over_2sgd", "{:.3f}"),
    ("held ours", "held_P_ours", "{:.2f} P"),
    ("held per-tensor", "held_P_per-tensor", "{:.2f} P"),
    ("CUDA peak ours", "cuda_peak_P_ours", "{:.2f} P"),
    ("CUDA peak per-tensor", "cuda_peak_P_per-tensor", "{:.2f} P"),
]


def describe(devices: list[torch.device], n_params: int, args) -> str:
    lines = [
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{torch.get_num_threads()} CPU threads; CPU: {cpu_name()}",
        f"{args.model}: {n_params:,} parameters, P = {4 * n_params / 2**20:.1f} MiB (one "
        f"float32 copy); medians over {args.opt_repeats} interleaved repeats of the optimizer "
        f"alone, {args.repeats} of full steps ({args.search_repeats} at most on search rows)",
    ]
    for device in devices:
        batch, calls = per_device(device, args)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        lines.append(
            f"{device.type}: {name}; {calls} steps per sample ({max(1, calls // 3)} on search "
            f"rows); full step on a batch of {batch} x 3x32x32"
        )
    return "\n".join(lines)


def target_notes(rows: list[dict]) -> str:
    """The targets under the table, each marked met or MISSED. The CPU speed target is judged
    on the fused-SGD base, the suite's configuration (`configs/optimizer/base/sgd.yaml`)."""
    lines = ["targets:"]
    methods = {m.label: m for m in METHODS}
    for r in rows:
        method = methods[r["method"]]
        if method.settings is None:
            continue
        where = f"  {r['device']} {r['method']}:"
        if r["device"] == "cpu":
            fused = r["per_tensor_over_fused"]
            lines.append(
                f"{where} per-tensor / ours, fused SGD {fused:.2f}x >= 2.5x "
                f"({_verdict(fused >= 2.5)}); over foreach SGD {r['per_tensor_over_ours']:.2f}x"
            )
        if r["method"].startswith("XSAM") and not method.is_search:
            lines.append(
                f"{where} full / SAM {r['full_over_sam']:.3f} <= 1.02 "
                f"({_verdict(r['full_over_sam'] <= 1.02)})"
            )
        lines.append(
            f"{where} held by ours {r['held_P_ours']:.2f} P = 1 P "
            f"({_verdict(abs(r['held_P_ours'] - 1) < 0.01)})"
        )
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def per_device(device: torch.device, args) -> tuple[int, int]:
    """(full-step batch, steps per timing sample): small on CPU so the run takes minutes."""
    cuda = device.type == "cuda"
    return args.batch or (128 if cuda else 32), args.calls or (10 if cuda else 1)


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Optimizer step benchmark (one table).")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved full-step repeats")
    parser.add_argument(
        "--opt-repeats", type=int, default=21, help="interleaved optimizer-only repeats"
    )
    parser.add_argument("--search-repeats", type=int, default=3, help="repeats on search rows")
    parser.add_argument("--calls", type=int, help="steps per sample (default: 1 CPU, 10 CUDA)")
    parser.add_argument("--batch", type=int, help="full-step batch (default: 32 CPU, 128 CUDA)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny CNN, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.opt_repeats, args.search_repeats, args.calls, args.batch = 1, 1, 1, 1, 4
    args.model = "tiny CNN" if args.quick else "CIFAR ResNet-18 (xsam.models.cifar_resnet)"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    torch.manual_seed(0)
    model = tiny_cnn() if args.quick else cifar_resnet(arch="resnet18", num_classes=10)
    template = [p.detach() for p in model.parameters()]
    print(describe(devices, sum(t.numel() for t in template), args), flush=True)
    small = [t.to(devices[0]) for t in template if t.numel() <= CHECK_MAX_NUMEL]  # seconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # untimed; one thread is fastest for small tensors on a busy host
    diffs = check_against_ours(small)
    torch.set_num_threads(threads)
    worst, passed = diffs["per-tensor"], max(diffs.values()) <= 1e-5
    print(
        f"baseline check, every row, 3 steps on the {len(small)} tensors of <= {CHECK_MAX_NUMEL} "
        f"elements ({sum(t.numel() for t in small):,} parameters), {devices[0].type}: "
        f"max |w_ours - w_per_tensor| "
        f"{worst:.2e}, max |w_ours - w_ours_fused_SGD| {diffs['ours-fused']:.2e} "
        f"({'OK' if passed else 'FAILED'}, tolerance 1e-5)",
        flush=True,
    )
    rows = []
    for device in devices:
        batch, calls = per_device(device, args)
        settings = argparse.Namespace(**{**vars(args), "calls": calls, "batch": batch})
        rows += device_rows(device, [t.to(device) for t in template], model, settings)
    table = markdown_table(rows, COLUMNS)
    print(table)
    print(target_notes(rows))
    return {"rows": rows, "check_max_diff": worst, "check_passed": passed, "table": table}


if __name__ == "__main__":
    result = main()
    raise SystemExit(0 if result["check_passed"] else 1)
