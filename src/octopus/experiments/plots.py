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
#: widest figure, inches (~2,000 px at the saved dpi)
MAX_WIDTH = 18.0


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


def layout(panels: int, labels: int, experiments: int) -> tuple[int, int, tuple[float, float]]:
    """(columns, rows, figure inches): a panel is as wide as its bars need (labels x experiments, ~0.2 in
    each), at most `MAX_WIDTH`; panels sit side by side while the figure stays that wide, else stack."""
    panel = min(max(4.5, 0.2 * labels * max(experiments, 2) + 1.0), MAX_WIDTH)
    ncols = max(1, min(3, panels, int(MAX_WIDTH // panel)))
    nrows = -(-panels // ncols)
    return ncols, nrows, (panel * ncols, 3.6 * nrows)


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
    ncols, nrows, size = layout(len(panels), len({label for _, label, _ in rows}), len(experiments))
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        _bars(ax, rows, panel, experiments)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    ncol = min(len(names), 5)
    fig.legend(handles, names, loc="upper center", ncol=ncol, fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, y=1.04)
    top = (0.2 * -(-len(names) // ncol) + 0.2) / size[1]  # inches the legend takes, as a share of the height
    fig.tight_layout(rect=(0, 0, 1, 1 - top))
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
