"""Static plots of a comparison (PNG, matplotlib's Agg backend): they work offline, unlike dvc-render's
HTML, which loads Vega from a CDN.

    paths = write_plots(cmp, Path("reports/compare"))   # completion.png, training.png (when there is data)
"""

from __future__ import annotations

from pathlib import Path

from octopus.experiments.compare import Comparison

#: evaluation panels: the task completion splits and executable code
EVAL_PANELS = ("All", "Seen", "Unseen", "Follow", "Reason", "Executable code")
#: training panels: (column, which stage runs have it)
TRAIN_PANELS = ("Val loss", "Held-out completion", "Held-out exec code", "Pairwise acc", "Final reward",
                "Final KL")


def _bars(ax, rows: list[tuple[str, str, dict]], column: str, experiments: list[str]) -> bool:
    """Grouped bars: one group per row label, one bar per experiment; False when nothing has a value."""
    labels = list(dict.fromkeys(label for _, label, cols in rows if cols.get(column) is not None))
    if not labels:
        return False
    width = 0.8 / max(len(experiments), 1)
    for i, exp in enumerate(experiments):
        values = {label: cols.get(column) for e, label, cols in rows if e == exp}
        xs = [j + i * width for j, label in enumerate(labels) if values.get(label) is not None]
        ys = [values[label] for label in labels if values.get(label) is not None]
        bars = ax.bar(xs, ys, width, label=exp, color=f"C{i % 10}")
        if len(labels) * len(experiments) <= 40:
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks([j + width * (len(experiments) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(column, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return True


def _figure(rows: list[tuple[str, str, dict]], panels: tuple[str, ...], experiments: list[str], title: str,
            out: Path) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = tuple(p for p in panels if any(cols.get(p) is not None for _, _, cols in rows))
    # only experiments with a value somewhere in the figure, each with the same colour in every panel
    experiments = [e for e in experiments if any(x == e and any(cols.get(p) is not None for p in panels)
                                                 for x, _, cols in rows)]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    labels = len({label for _, label, _ in rows})
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(4.5, 0.5 * labels * max(len(experiments), 2)) * ncols / 1.5,
                                                    3.6 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        _bars(ax, rows, panel, experiments)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 4), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, y=1.04)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out


def write_plots(cmp: Comparison, out_dir: Path) -> list[Path]:
    """completion.png (evaluation panels) and training.png (sft/reward/rlef panels), where there is data."""
    experiments = [e.name for e in cmp.experiments]
    made = [_figure(cmp.evaluation, EVAL_PANELS, experiments, "Evaluation per agent row", out_dir / "completion.png"),
            _figure(cmp.training, TRAIN_PANELS, experiments, "Training per stage run", out_dir / "training.png")]
    return [p for p in made if p is not None]
