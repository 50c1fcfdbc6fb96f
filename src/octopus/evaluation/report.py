"""Evaluation reports: DVC metrics and plots, a Table-3-shaped markdown table, a static HTML rollout report.

    results = {name: summarize(recs) for name, recs in records.items()}
    write_reports(results, Path("reports/evaluate.json"), Path("reports/evaluate.md"),
                  Path("reports/evaluate_plots.json"), Path("reports/rollouts"), records,
                  paper={"Octopus (SFT Only)": {"All": 0.15}}, views_dir=Path("data/eval-parts/FINGERPRINT/views"))
    print(render_table(results))

evaluate.json is `{"agents": {agent: {group: {metric: mean, metric_lo: lo, metric_hi: hi, ...}}}}` (what
`dvc metrics show` flattens), and under "differences" each row minus its baseline row (RLEF minus SFT),
paired over the tasks both ran, in the same shape; the plots file is rows of {agent, group,
task_completion}. The HTML report is index.html (agents x tasks, one mark per seed linking to the
episode) and one page per episode with, per step, the views the agent saw (copied from `views_dir`),
its code, the feedback and the progress.
Everything a model wrote is escaped (it is untrusted); no scripts, no external assets. Every file is
written to a temporary name and renamed; the HTML folder is built beside the old one and swapped in.
"""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path
from typing import Any

from octopus.evaluation.metrics import GROUPS, flatten
from octopus.evaluation.rollouts import EpisodeRecord, slug
from octopus.files import replace_dir, write_atomic, write_json

COLUMNS = (("seen", "Seen Env"), ("unseen", "Unseen Env"), ("follow", "Follow"), ("reason", "Reason"),
           ("all", "All"))
EXTRA = (("code_executability", "Executable code", 2), ("step_success", "Step success", 2),
         ("mean_steps_to_success", "Mean steps", 1), ("plan_score", "Plan score", 2))
CSS = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
       "pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;word-break:break-word}"
       ".ok{color:#080}.fail{color:#b00}.crash{color:#b60}section{border-top:1px solid #ddd;margin-top:1em}")


# ---------------------------------------------------------------------- tables
def _cell(value: dict | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value['mean']:.{digits}f} [{value['lo']:.{digits}f}, {value['hi']:.{digits}f}]"


def _table_rows(results: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    head = ["Agent", *(title for _, title in COLUMNS), *(title for _, title, _ in EXTRA), "Episodes", "Crashed"]
    rows = []
    for agent, summary in results.items():
        total = summary.get("all", {})
        rows.append([agent, *(_cell(summary.get(g, {}).get("task_completion")) for g, _ in COLUMNS),
                     *(_cell(total.get(m), d) for m, _, d in EXTRA),
                     str(total.get("episodes", 0)), str(total.get("crashed", 0))])
    return head, rows


def signed(value: dict | None) -> str:
    """A difference with its interval ({mean, lo, hi}) as +0.03 [-0.02, +0.08]; None as a dash."""
    if value is None:
        return "–"
    mean, lo, hi = (round(value[k], 2) + 0.0 for k in ("mean", "lo", "hi"))  # + 0.0: no "-0.00"
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]"


DIFF_COLUMNS = (("all", "task_completion", "Completion"), ("unseen", "task_completion", "Unseen Env"),
                ("reason", "task_completion", "Reason"), ("all", "code_executability", "Executable code"),
                ("all", "step_success", "Step success"), ("all", "plan_score", "Plan score"))


def render_differences(differences: dict[str, dict]) -> str:
    """Each row minus its baseline (`metrics.paired_difference`, plus "baseline") as markdown."""
    head = ["Agent", "minus", *(title for _, _, title in DIFF_COLUMNS), "Tasks"]
    rows = [[agent, d["baseline"], *(signed(d.get(g, {}).get(m)) for g, m, _ in DIFF_COLUMNS),
             str(d.get("all", {}).get("tasks", 0))] for agent, d in differences.items()]
    return _markdown(head, rows)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
    return "\n".join([line(head), line(["---"] * len(head)), *(line(r) for r in rows)]) + "\n"


def render_table(results: dict[str, dict]) -> str:
    """Table 3 as markdown: task completion per group with its CI, then the step-level metrics."""
    return _markdown(*_table_rows(results))


def _paper_rows(paper: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    cols: list[str] = []
    for values in paper.values():
        cols += [c for c in values if c not in cols]
    fmt = lambda v: "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["Model", *cols], [[model, *(fmt(values.get(c)) for c in cols)] for model, values in paper.items()]


def metrics_json(results: dict[str, dict]) -> dict[str, Any]:
    """{"agents": {agent: {group: {metric, metric_lo, metric_hi, tasks, episodes, crashed, steps}}}}."""
    return {"agents": {agent: {group: flatten(values) for group, values in summary.items()}
                       for agent, summary in results.items()}}


def plot_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    return [{"agent": agent, "group": group, "task_completion": (summary[group].get("task_completion") or {}).get("mean")}
            for agent, summary in results.items() for group in GROUPS if group in summary]


def write_reports(results: dict[str, dict], out_json: Path, out_md: Path, plots_json: Path, html_dir: Path,
                  records: dict[str, list[EpisodeRecord]], paper: dict[str, dict[str, Any]] | None = None,
                  views_dir: Path | None = None, meta: dict[str, Any] | None = None,
                  row_notes: dict[str, str] | None = None,
                  failures: dict[str, dict[str, dict[str, int]]] | None = None,
                  differences: dict[str, dict] | None = None) -> None:
    """Write every report; `results` maps agent -> `summarize()`, `records` agent -> its episodes.

    `paper`: {model: {column: value}}, the paper's reference numbers, rendered as a second table.
    `views_dir`: where `rollout` saved the step views (their PNGs are copied into the HTML report).
    `meta`: stored under "meta" in evaluate.json (params, git revision).
    `row_notes`: agent -> what the row is (listed under the table for the agents in it).
    `failures`: agent -> `failure_counts()` (failed steps by cause), a second table and "failures" in the JSON.
    `differences`: agent -> {"baseline": row, **paired_difference(baseline's, agent's)}, a table and
    "differences" in the JSON."""
    recs = {agent: [r if isinstance(r, EpisodeRecord) else EpisodeRecord.from_dict(r) for r in rs]
            for agent, rs in records.items()}
    diffs = {agent: {"baseline": d["baseline"], **{g: flatten(v) for g, v in d.items() if g != "baseline"}}
             for agent, d in (differences or {}).items()}
    write_json(out_json, {**metrics_json(results), **({"failures": failures} if failures else {}),
                          **({"differences": diffs} if diffs else {}), **({"meta": meta} if meta else {})})
    md = ["# Evaluation (paper Table 3)", "",
          "Task completion rate per group; [lo, hi] is a bootstrap confidence interval over tasks. "
          "Executable code, step success, mean steps (successful episodes) and plan score are over all tasks.",
          "", render_table(results)]
    notes = [f"- `{agent}`: {row_notes[agent]}" for agent in results if agent in (row_notes or {})]
    if notes:
        md += ["Rows:", "", *notes, ""]
    if differences:
        md += ["## Paired differences", "",
               "Each row minus the row it improves on, over the tasks both ran: every bootstrap resample draws "
               "tasks once and scores both rows on them, so [lo, hi] is the interval of the difference itself "
               "(overlapping per-row intervals above do not mean no difference).", "",
               render_differences(differences), ""]
    if failures:
        causes = sorted({c for f in failures.values() for c in f["steps"]})
        md += ["## Failed steps by cause", "",
               "format: unparseable response; name: an object the scene lacks; reach: out of reach or MoveBot to a "
               "small object; precondition: closed, hands, abilities; targets: the code ran, its Target States did "
               "not hold; code: any other error.", "",
               _markdown(["Agent", *causes, "failed episodes (cause of the last step)"],
                         [[agent, *(str(f["steps"].get(c, 0)) for c in causes),
                           ", ".join(f"{k} {v}" for k, v in f["episodes"].items()) or "–"]
                          for agent, f in failures.items()]), ""]
    if paper:
        md += ["## Paper (reference numbers)", "", _markdown(*_paper_rows(paper))]
    write_atomic(out_md, "\n".join(md))
    write_json(plots_json, plot_rows(results))
    write_html(results, recs, Path(html_dir), views_dir)


# ---------------------------------------------------------------------- HTML
def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _html_table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    cell = (lambda c: c) if raw else escape
    return ("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def episode_page_name(r: EpisodeRecord) -> str:
    return f"{slug(r.agent)}__{slug(r.task_id)}__seed{r.seed}.html"


def _outcome(r: EpisodeRecord) -> tuple[str, str, str]:
    """(css class, mark, word)."""
    if r.crashed:
        return "crash", "!", "crashed"
    return ("ok", "✓", "succeeded") if r.success else ("fail", "✗", "failed")


def _copy_view(rel: str | None, views_dir: Path | None, out: Path) -> str | None:
    """Copy a step's sheet into the report; None when absent or outside views_dir (a record is not trusted)."""
    if not rel or views_dir is None:
        return None
    src = (views_dir / rel).resolve()
    if not src.is_relative_to(views_dir.resolve()) or not src.is_file():
        return None
    rel_safe = src.relative_to(views_dir.resolve()).as_posix()
    dst = out / "views" / rel_safe
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return f"../views/{rel_safe}"


def _episode_html(r: EpisodeRecord, views_dir: Path | None, out: Path) -> str:
    css, mark, word = _outcome(r)
    parts = ['<p><a href="../index.html">all episodes</a></p>',
             f"<h1>{escape(r.agent)} · {escape(r.task_id)} · seed {r.seed}</h1>",
             f"<p>{escape(r.instruction)}</p>",
             f"<p>{escape(r.split)} / {escape(r.category)} / {escape(r.scene)} — "
             f'<b class="{css}">{mark} {word}</b> after {len(r.steps)} step(s); plan score {r.plan_score:.2f} '
             f"(initial {r.initial_progress:.2f}); {r.wall_s:.1f} s</p>"]
    if r.error:
        parts.append(f"<p>Episode error:</p><pre>{escape(r.error)}</pre>")
    for s in r.steps:
        img = _copy_view(s.views, views_dir, out)
        status = "ok" if s.target_states_met else "fail"
        parts.append(f'<section><h2 class="{status}">Step {s.step}</h2>')
        if img:
            parts.append(f'<p><img src="{escape(img)}" alt="views before step {s.step}"></p>')
        parts.append("<h3>Code</h3>" + (f"<pre>{escape(s.code)}</pre>" if s.code is not None
                                         else "<p>(the response did not parse)</p>"))
        parts.append(f"<details><summary>Full response</summary><pre>{escape(s.response)}</pre></details>")
        parts.append(_html_table(["parsed", "executed", "target states met", "progress", "task success"],
                                 [[str(s.parsed), str(s.executed), str(s.target_states_met), f"{s.progress:.2f}",
                                   str(s.task_success)]]))
        parts.append(f"<p>Feedback:</p><pre>{escape(s.error or 'No error')}</pre>")
        if s.grounding:
            parts.append("<p>Grounded names: " + escape(", ".join(f"{k} → {v}" for k, v in s.grounding.items()))
                         + "</p>")
        parts.append("</section>")
    return _page(f"{r.agent} · {r.task_id} · seed {r.seed}", "\n".join(parts))


def _index_html(results: dict[str, dict], recs: dict[str, list[EpisodeRecord]]) -> str:
    tasks: dict[str, EpisodeRecord] = {}
    for rs in recs.values():
        for r in rs:
            tasks.setdefault(r.task_id, r)
    agents = list(recs)
    rows = []
    for task_id, t in sorted(tasks.items(), key=lambda kv: (kv[1].split, kv[1].category, kv[0])):
        cells = [escape(task_id), escape(t.split), escape(t.category)]
        for agent in agents:
            marks = []
            for r in sorted((r for r in recs[agent] if r.task_id == task_id), key=lambda r: r.seed):
                css, mark, word = _outcome(r)
                marks.append(f'<a class="{css}" href="episodes/{escape(episode_page_name(r))}" '
                             f'title="seed {r.seed}: {word}">{mark}</a>')
            cells.append(" ".join(marks) or "–")
        rows.append(cells)
    body = ["<h1>Evaluation rollouts</h1>", "<h2>Summary (task completion with bootstrap CI over tasks)</h2>",
            _html_table(*_table_rows(results)), "<h2>Episodes</h2>",
            "<p>✓ succeeded, ✗ failed, ! crashed; one mark per seed, linking to the episode.</p>",
            _html_table(["Task", "Split", "Category", *agents], rows, raw=True)]
    return _page("Evaluation rollouts", "\n".join(body))


def write_html(results: dict[str, dict], recs: dict[str, list[EpisodeRecord]], html_dir: Path,
               views_dir: Path | None = None) -> None:
    """Build the report in a temporary folder beside `html_dir`, then swap it in."""
    with replace_dir(html_dir) as tmp:
        (tmp / "episodes").mkdir()
        for rs in recs.values():
            for r in rs:
                (tmp / "episodes" / episode_page_name(r)).write_text(
                    _episode_html(r, Path(views_dir) if views_dir else None, tmp), encoding="utf-8")
        (tmp / "index.html").write_text(_index_html(results, recs), encoding="utf-8")
