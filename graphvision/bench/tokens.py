"""``python -m graphvision.bench tokens``: what attention costs as the token count grows.

Each sequence stage (``conf/model/sequence/``, at the default model's width) runs forward
and backward on one image of 64 to 4,096 region tokens. Measured per token count: the
median time of a step and its memory — on a GPU the peak allocated during the step, on the
CPU the activations the step keeps for its backward (every tensor autograd saves, the
stage's own weights left out; deterministic). The growth exponent ``k`` of ``cost ~ tokens^k``
is fitted (least squares in log-log) over the largest half of the token counts, where the
fixed costs no longer dominate: about 1 for a stage linear in the tokens, 2 for attention
that materialises its ``T x T`` weights.

With ``--ablation DIR`` (a multirun folder whose jobs vary ``data.regions.backend`` and
``data.regions.n_segments``) it also reports, per backend, the validation metric at each
token count (regions per validation image, from the runs' summaries), and how many grid
tokens reach what each superpixel count reaches (interpolated in log tokens), so the cost
above can be read as the cost of an accuracy.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics

from graphvision.bench.common import median_ms, time_steps

log = logging.getLogger(__name__)

STAGES = ("none", "transformer", "deepseek_v3", "pretrained_lm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048, 4096]
    )
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per token count")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    parser.add_argument(
        "--ablation",
        default=None,
        help="a multirun folder over data.regions.backend and n_segments",
    )
    parser.add_argument("--metric", default="val/scene_map", help="the ablation's metric")


def build_stage(name: str, dim: int):
    """The stage ``conf/model/sequence/<name>.yaml`` at width ``dim``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    return instantiate(OmegaConf.load(f"{CONFIG_DIR}/model/sequence/{name}.yaml"), dim=dim)


def default_dim() -> int:
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    return int(OmegaConf.load(f"{CONFIG_DIR}/model/default.yaml").dim)


def token_limit(stage) -> int | None:
    """The most region tokens a stage takes (a pretrained LM's learned positions, CLS
    included), None if unbounded."""
    lm = getattr(stage, "lm", None)
    limit = getattr(getattr(lm, "config", None), "max_position_embeddings", None)
    return None if limit is None else int(limit) - 1


def saved_activation_bytes(step, weights) -> int:
    """Bytes of the distinct storages autograd saves for backward during ``step()``, those
    of ``weights`` (parameters) left out."""
    import torch

    own = {p.untyped_storage().data_ptr() for p in weights}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def fit_exponent(tokens: list[int], values: list[float]) -> float | None:
    """Slope of ``log value`` against ``log tokens`` over the largest half of the points
    (at least 3); None with fewer than 3 points."""
    points = sorted(zip(tokens, values))
    points = points[-max(3, math.ceil(len(points) / 2)) :]
    if len(points) < 3:
        return None
    xs, ys = [math.log(t) for t, _ in points], [math.log(v) for _, v in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def measure_tokens(stage, weights, t: int, dim: int, repeats: int, device: str) -> dict:
    """``{"ms", "memory_mb"}`` of a forward and backward of ``stage`` on one image of ``t``
    random region tokens."""
    import torch

    gen = torch.Generator().manual_seed(t)
    h = torch.randn(t, dim, generator=gen).to(device).requires_grad_(True)
    pos = torch.rand(t, 2, generator=gen).to(device)
    batch = torch.zeros(t, dtype=torch.long, device=device)
    cuda = device.startswith("cuda")

    def step() -> None:
        out = stage(h, pos, batch)
        (out.cls.sum() + out.tokens.sum()).backward()
        stage.zero_grad(set_to_none=True)
        h.grad = None
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        step()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        memory = torch.cuda.max_memory_allocated() - base
    else:
        memory = saved_activation_bytes(step, weights)
    (seconds,) = time_steps(step, repeats=repeats)
    return {"ms": round(median_ms(seconds), 2), "memory_mb": round(memory / 2**20, 3)}


def measure_stage(name: str, dim: int, tokens: list[int], repeats: int, device: str) -> dict:
    try:
        stage = build_stage(name, dim).to(device).train()
    except ImportError as err:  # the lm extra is not installed
        return {"skipped": str(err)}
    weights = list(stage.parameters())
    limit = token_limit(stage)
    rows: dict[str, dict] = {}
    for t in tokens:
        if limit is not None and t > limit:
            rows[str(t)] = {"skipped": f"more than the model's {limit} positions"}
            continue
        rows[str(t)] = measure_tokens(stage, weights, t, dim, repeats, device)
        log.info("tokens: %s, %d tokens: %s", name, t, rows[str(t)])
    done = [(int(t), r) for t, r in rows.items() if "ms" in r]
    xs = [t for t, _ in done]
    return {
        "parameters": sum(p.numel() for p in weights),
        "tokens": rows,
        "time_exponent": _round(fit_exponent(xs, [r["ms"] for _, r in done])),
        "memory_exponent": _round(fit_exponent(xs, [max(r["memory_mb"], 1e-6) for _, r in done])),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def ablation_table(root: str, metric: str) -> dict:
    """Per backend, ``[{n_segments, regions, metric mean, std, runs}]`` by token count, and
    for every superpixel row the grid tokens that reach its metric (log-interpolated
    between the grid rows around it; None where no measured grid count reaches it)."""
    from graphvision.utils import read_runs

    groups: dict[tuple[str, int], list[dict]] = {}
    for run in read_runs(root):
        over = dict(o.split("=", 1) for o in run["overrides"] if "=" in o)
        if over.get("model") == "cnn_baseline":
            continue
        backend = over.get("data.regions.backend", "skimage")
        n = over.get("data.regions.n_segments")
        if n is None or metric not in run["metrics"]:
            continue
        groups.setdefault((backend, int(n)), []).append(run)
    table: dict[str, list[dict]] = {}
    for (backend, n), runs in sorted(groups.items()):
        values = [r["metrics"][metric] for r in runs]
        regions = [r["summary"].get("regions_per_image") for r in runs]
        regions = [v for v in regions if v is not None]
        table.setdefault(backend, []).append(
            {
                "n_segments": n,
                "regions": round(statistics.mean(regions), 1) if regions else float(n),
                "mean": round(statistics.mean(values), 4),
                "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                "runs": len(values),
            }
        )
    grid = sorted(table.get("grid", []), key=lambda r: r["regions"])
    for row in table.get("skimage", []):
        row["grid_tokens_for_same"] = tokens_to_reach(grid, row["mean"])
    return table


def tokens_to_reach(grid: list[dict], target: float) -> float | None:
    """The grid token count whose metric equals ``target``, linear in log tokens between
    the first pair of measured grid rows that brackets it (the first grid row itself if it
    already reaches it); None if none reaches it."""
    if grid and grid[0]["mean"] >= target:
        return grid[0]["regions"]
    for lo, hi in zip(grid, grid[1:]):
        if lo["mean"] < target <= hi["mean"]:
            f = (target - lo["mean"]) / (hi["mean"] - lo["mean"])
            return round(
                math.exp(math.log(lo["regions"]) + f * math.log(hi["regions"] / lo["regions"])), 1
            )
    return None


def run(args) -> dict:
    import torch

    dim = default_dim()
    out: dict = {"device": args.device, "dim": dim, "batch": 1, "stages": {}}
    if args.device == "cpu":
        out["memory"] = "activations saved for backward (MiB)"
    else:
        out["memory"] = "peak allocated during a step (MiB)"
    torch.manual_seed(0)
    for name in args.stages:
        out["stages"][name] = measure_stage(name, dim, args.tokens, args.repeats, args.device)
    if args.ablation:
        out["ablation"] = {"metric": args.metric, **ablation_table(args.ablation, args.metric)}
    return out


def summary(result: dict) -> str:
    lines = [
        f"\ntokens ({result['device']}, width {result['dim']}, one image; memory: "
        f"{result['memory']}):"
    ]
    for name, stage in result["stages"].items():
        if "skipped" in stage:
            lines.append(f"  {name}: skipped ({stage['skipped']})")
            continue
        cells = [
            f"{t}: {r['ms']} ms {r['memory_mb']} MiB" if "ms" in r else f"{t}: -"
            for t, r in stage["tokens"].items()
        ]
        lines.append(
            f"  {name}: time ~ tokens^{stage['time_exponent']}, memory ~ "
            f"tokens^{stage['memory_exponent']}; " + ", ".join(cells)
        )
    ablation = result.get("ablation")
    if ablation:
        lines.append(f"ablation ({ablation['metric']}, mean ± std over seeds):")
        for backend, rows in ablation.items():
            if backend == "metric":
                continue
            for r in rows:
                same = (
                    f"; grid tokens for the same: {r['grid_tokens_for_same']}"
                    if "grid_tokens_for_same" in r
                    else ""
                )
                lines.append(
                    f"  {backend} n_segments={r['n_segments']} ({r['regions']} tokens): "
                    f"{r['mean']} ± {r['std']} ({r['runs']} runs){same}"
                )
    return "\n".join(lines)
