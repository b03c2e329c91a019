"""Report: ``python -m graphvision.report DIR [MORE_DIR ...] [--metric val/scene_map]``.

Turns a Hydra multirun folder (one sub-folder per job, each with ``metrics.json``,
``summary.json`` and ``.hydra/overrides.yaml``) into ``DIR/report.md`` — a table with one
row per configuration (the job's overrides without ``seed``): mean ± std over its seeds of
every metric, the median fit time and seconds per epoch, pre-processing milliseconds per
image (over the runs that built cache entries), regions (tokens) per validation image and
parameter counts — and ``DIR/report.png``, the chosen metric per configuration with its
spread. Where the jobs kept Lightning's CSV log (``csv/metrics.csv``), the report also holds
the learning curve — the chosen metric after each validation epoch, mean over seeds, per
configuration — as a table and as ``DIR/curves.png``. An Optuna sweep (``optimization_results.yaml``) also gets
its trials, best first. Further folders (``MORE_DIR``) add their runs to ``DIR``'s: seeds of
one configuration run at different times pool into one row.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import yaml

from graphvision.utils import read_runs

MAIN_METRICS = (
    "val/scene_map",
    "val/object_acc",
    "val/rel_acc",
    "val/rel_R@50",
    "val/rel_mR@50",
    "val/acc",
)


def is_seed(override: str) -> bool:
    return override.split("=")[0].lstrip("+~") == "seed" or override.startswith("hydra")


def common_overrides(runs: list[dict]) -> list[str]:
    """Overrides every run shares (they name no configuration)."""
    sets = [set(r["overrides"]) for r in runs]
    return sorted(set.intersection(*sets)) if sets else []


def configuration(overrides: list[str], common: list[str] | tuple = ()) -> str:
    """A run's configuration: the overrides that tell it from the others, without the seed."""
    keep = [o for o in overrides if not is_seed(o) and o not in common]
    return " ".join(sorted(keep)) or "(defaults)"


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def prepare_ms_per_image(runs: list[dict]) -> float | None:
    """Pre-processing milliseconds per image over the runs that built cache entries (the
    others found them built); None if none did."""
    images = sum(r["summary"].get("images_prepared") or 0 for r in runs)
    seconds = sum(r["summary"].get("prepare_seconds") or 0.0 for r in runs)
    return 1000.0 * seconds / images if images else None


def summarise(runs: list[dict]) -> list[dict]:
    common = common_overrides(runs)
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(configuration(run["overrides"], common), []).append(run)
    rows = []
    for name, members in groups.items():
        metrics = sorted({k for r in members for k in r["metrics"]})
        rows.append(
            {
                "configuration": name,
                "runs": len(members),
                "metrics": {k: [r["metrics"].get(k) for r in members] for k in metrics},
                "fit_seconds": [r["summary"].get("fit_seconds") for r in members],
                "seconds_per_epoch": [r["summary"].get("seconds_per_epoch") for r in members],
                "prepare_ms_per_image": prepare_ms_per_image(members),
                "regions_per_image": [r["summary"].get("regions_per_image") for r in members],
                "parameters": members[0]["summary"].get("parameters"),
                "trainable_parameters": members[0]["summary"].get("trainable_parameters"),
            }
        )
    return rows


def read_curve(job: Path, metric: str) -> dict[int, float]:
    """``{epoch: value}`` of ``metric`` in a job's CSV log (Lightning's ``CSVLogger``), {}
    without one."""
    import csv

    curve: dict[int, float] = {}
    for path in sorted(job.glob("csv/**/metrics.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get(metric) and row.get("epoch"):
                    curve[int(row["epoch"])] = float(row[metric])
    return curve


def curves(runs: list[dict], metric: str) -> dict[str, dict[int, float]]:
    """Per configuration, ``{epoch: mean of metric over the seeds logging that epoch}``
    (0-based; the best checkpoint's re-validation after fit, logged as one epoch past the
    last, is left out)."""
    common = common_overrides(runs)
    per_config: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        points = per_config.setdefault(configuration(run["overrides"], common), {})
        trained = run["summary"].get("epochs")
        for epoch, value in read_curve(run["dir"], metric).items():
            if trained is None or epoch < trained:
                points.setdefault(epoch, []).append(value)
    return {
        name: {e: statistics.mean(v) for e, v in sorted(points.items())}
        for name, points in per_config.items()
        if points
    }


def curve_table(table: dict[str, dict[int, float]], metric: str, columns: int = 8) -> str:
    """The curves as markdown: about ``columns`` evenly spaced epochs, the last included."""
    epochs = sorted({e for points in table.values() for e in points})
    step = max(1, -(-len(epochs) // columns))
    shown = sorted(set(epochs[step - 1 :: step]) | {epochs[-1]})
    lines = [
        f"\n## Learning curve: {metric} after epoch (mean over seeds)\n",
        "| configuration | " + " | ".join(str(e + 1) for e in shown) + " |",
        "| --- |" + " ---: |" * len(shown),
    ]
    for name, points in table.items():
        cells = [f"{points[e]:.4f}" if e in points else "–" for e in shown]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(table: dict[str, dict[int, float]], metric: str, path: Path) -> None:
    from graphvision.viz import file_figure

    fig, axes = file_figure(figsize=(7, 4))
    ax = axes[0, 0]
    for name, points in table.items():
        ax.plot([e + 1 for e in points], list(points.values()), marker=".", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch, mean over seeds")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown_table(rows: list[dict], metrics: list[str]) -> str:
    head = ["configuration", "runs", *metrics, "fit s", "s/epoch", "prepare ms/img", "regions/img"]
    head += ["parameters", "trainable"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [f"`{r['configuration']}`", str(r["runs"])]
        cells += [mean_std(r["metrics"].get(m, [])) for m in metrics]
        fit = [v for v in r["fit_seconds"] if v is not None]
        spe = [v for v in r["seconds_per_epoch"] if v is not None]
        cells += [  # medians: one run slowed by other work on the machine does not move them
            f"{statistics.median(fit):.1f}" if fit else "–",
            f"{statistics.median(spe):.2f}" if spe else "–",
            "–" if r["prepare_ms_per_image"] is None else f"{r['prepare_ms_per_image']:.1f}",
        ]
        regions = [v for v in r["regions_per_image"] if v is not None]
        cells.append(f"{statistics.mean(regions):.1f}" if regions else "–")
        cells += [
            f"{r['parameters']:,}" if r["parameters"] else "–",
            f"{r['trainable_parameters']:,}" if r["trainable_parameters"] else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], metric: str, path: Path) -> None:
    from graphvision.viz import file_figure

    names = [r["configuration"] for r in rows]
    values = [[v for v in r["metrics"].get(metric, []) if v is not None] for r in rows]
    means = [statistics.mean(v) if v else 0.0 for v in values]
    stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    fig, axes = file_figure(figsize=(max(4.0, 1.2 * len(rows) + 2), 4))
    ax = axes[0, 0]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color="#6baed6")
    for i, v in enumerate(values):
        ax.scatter([i] * len(v), v, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(rows)), names, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± std over seeds (dots: runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def optuna_section(root: Path, runs: list[dict], metric: str) -> str:
    results = root / "optimization_results.yaml"
    if not results.is_file():
        return ""
    best = yaml.safe_load(results.read_text()) or {}
    trials = sorted(runs, key=lambda r: -(r["metrics"].get(metric) or float("-inf")))
    lines = [
        f"\n## Optuna trials ({len(trials)}), best first by `{metric}`\n",
        "| trial | parameters | " + metric + " |",
        "| --- | --- | ---: |",
    ]
    for r in trials:
        value = r["metrics"].get(metric)
        lines.append(
            f"| {r['dir'].name} | `{' '.join(r['overrides'])}` | {value:.4f} |"
            if value is not None
            else f"| {r['dir'].name} | `{' '.join(r['overrides'])}` | – |"
        )
    lines.append(
        f"\nbest parameters: `{best.get('best_params')}`, best value: {best.get('best_value')}"
    )
    return "\n".join(lines) + "\n"


def report(
    root: str | Path, metric: str | None = None, more: list[str | Path] | tuple = ()
) -> tuple[Path, Path, str]:
    """Writes ``root/report.md`` and ``root/report.png`` (and ``root/curves.png``) over the
    runs of ``root`` and of the folders ``more`` together: seeds of one configuration run at
    different times (``SEEDS=0,1`` into one folder, ``SEEDS=2`` into another) pool into
    one row."""
    root = Path(root)
    runs = read_runs(root) + [run for folder in more for run in read_runs(folder)]
    if metric is None:
        present = {k for r in runs for k in r["metrics"]}
        metric = next((m for m in MAIN_METRICS if m in present), sorted(present)[0])
    rows = summarise(runs)
    present = {k for r in rows for k in r["metrics"]}
    metrics = [m for m in MAIN_METRICS if m in present] or sorted(present)
    common = [o for o in common_overrides(runs) if not is_seed(o)]
    title = " + ".join(str(r) for r in (root, *more))
    text = f"# {title}\n\n{len(runs)} runs, {len(rows)} configurations; mean ± std over seeds.\n"
    text += f"Shared by every run: `{' '.join(common) or '(nothing)'}`\n\n"
    text += markdown_table(rows, metrics) + "\n" + optuna_section(root, runs, metric)
    md, png = root / "report.md", root / "report.png"
    table = curves(runs, metric)
    if table:
        text += curve_table(table, metric)
        plot_curves(table, metric, root / "curves.png")
    md.write_text(text)
    plot(rows, metric, png)
    return md, png, text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m graphvision.report", description=__doc__)
    p.add_argument("dir", help="a Hydra multirun folder (logs/train/multiruns/<time>)")
    p.add_argument(
        "more",
        nargs="*",
        help="more multirun folders whose runs join DIR's (the report is written into DIR)",
    )
    p.add_argument(
        "--metric",
        help="the metric to plot and rank Optuna trials by (default: the first of "
        + ", ".join(MAIN_METRICS)
        + " present)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    md, png, text = report(args.dir, args.metric, args.more)
    print(text)
    print(f"wrote {md} and {png}")


if __name__ == "__main__":
    main()
