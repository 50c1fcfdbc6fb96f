"""Reports: evaluate.json per agent and group, the Table 3 markdown, DVC plots rows, the escaped HTML report."""

import json

import numpy as np
import pytest

from octopus.evaluation.metrics import GROUPS, paired_difference, summarize
from octopus.evaluation.report import episode_page_name, render_table, write_reports
from octopus.sim.render import save_png

from tests.evaluation.test_metrics import NO_PARSE, OK, UNMET, record

PAPER = {"Octopus (SFT Only)": {"Seen Env": 0.11, "Unseen Env": 0.27, "All": 0.15},
         "Octopus (SFT + RLEF)": {"Seen Env": 0.13, "Unseen Env": 0.33, "All": 0.18}}


@pytest.fixture
def records(tmp_path):
    views = tmp_path / "views"
    save_png(np.zeros((8, 16, 3), np.uint8), views / "good" / "t1" / "seed0" / "step01.png")
    good = [record("t1", True, [OK], agent="good"), record("t2", False, [UNMET, OK], agent="good"),
            record("t3", True, [OK], split="eval_unseen", category="reason", agent="good")]
    good[0].steps[0].views = "good/t1/seed0/step01.png"
    evil = record("t1", False, [NO_PARSE], agent="evil")
    evil.steps[0].response = "<script>alert('x')</script> & more"
    evil.steps[0].error = "Response format error: <b>bold</b>"
    evil.steps[0].views = "../../etc/passwd"   # records are untrusted: never copied from outside views_dir
    crashed = record("t2", False, [], agent="evil", error="RuntimeError: <img src=x onerror=alert(1)>")
    return {"good": good, "evil": [evil, crashed]}, views


def write(tmp_path, records, views, paper=None):
    results = {agent: summarize(rs, n_boot=100) for agent, rs in records.items()}
    out = {k: tmp_path / "reports" / name for k, name in
           (("json", "evaluate.json"), ("md", "evaluate.md"), ("plots", "evaluate_plots.json"), ("html", "rollouts"))}
    write_reports(results, out["json"], out["md"], out["plots"], out["html"], records, paper=paper, views_dir=views,
                  meta={"git": "abc123"})
    return results, out


def test_metrics_json_has_every_agent_and_group(tmp_path, records):
    results, out = write(tmp_path, *records)
    data = json.loads(out["json"].read_text())
    assert set(data["agents"]) == {"good", "evil"} and data["meta"] == {"git": "abc123"}
    for agent in ("good", "evil"):
        assert set(data["agents"][agent]) == set(GROUPS)
    all_good = data["agents"]["good"]["all"]
    assert all_good["task_completion"] == pytest.approx(2 / 3) and all_good["tasks"] == 3
    assert all_good["task_completion_lo"] <= all_good["task_completion"] <= all_good["task_completion_hi"]
    assert data["agents"]["evil"]["unseen"]["task_completion"] is None   # an empty group is null, not an error
    assert data["agents"]["evil"]["all"]["crashed"] == 1
    plots = json.loads(out["plots"].read_text())
    assert len(plots) == 2 * len(GROUPS) and set(plots[0]) == {"agent", "group", "task_completion"}
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_markdown_table_one_row_per_agent(tmp_path, records):
    results, out = write(tmp_path, *records, paper=PAPER)
    md = out["md"].read_text()
    table = render_table(results)
    assert table in md
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 2 and lines[2].startswith("| good |") and lines[3].startswith("| evil |")
    assert "Seen Env" in lines[0] and "Executable code" in lines[0] and "Plan score" in lines[0]
    assert "0.67 [" in lines[2]
    assert "| Octopus (SFT Only) | 0.11 | 0.27 | 0.15 |" in md and "## Paper" in md


def test_html_report_escapes_model_text_and_links_episodes(tmp_path, records):
    recs, views = records
    _, out = write(tmp_path, recs, views)
    html_dir = out["html"]
    index = (html_dir / "index.html").read_text()
    pages = sorted(p.name for p in (html_dir / "episodes").iterdir())
    assert len(pages) == 5
    for rs in recs.values():
        for r in rs:
            assert f'href="episodes/{episode_page_name(r)}"' in index
    evil = (html_dir / "episodes" / episode_page_name(recs["evil"][0])).read_text()
    assert "<script>" not in evil and "&lt;script&gt;" in evil and "<b>bold</b>" not in evil
    crashed = (html_dir / "episodes" / episode_page_name(recs["evil"][1])).read_text()
    assert "<img src=x" not in crashed and "crashed" in crashed
    good = (html_dir / "episodes" / episode_page_name(recs["good"][0])).read_text()
    assert '<img src="../views/good/t1/seed0/step01.png"' in good
    assert (html_dir / "views" / "good" / "t1" / "seed0" / "step01.png").is_file()
    assert not (html_dir / "views" / "etc").exists() and "http" not in index + evil + good  # no external assets


def test_html_report_is_replaced_whole(tmp_path, records):
    _, out = write(tmp_path, *records)
    stale = out["html"] / "episodes" / "stale.html"
    stale.write_text("old")
    write(tmp_path, *records)
    assert not stale.exists() and (out["html"] / "index.html").is_file()
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "evaluate.json", "evaluate.md", "evaluate_plots.json", "rollouts"]


def test_row_notes_are_listed_for_the_rows_in_the_table_only(tmp_path, records):
    recs, views = records
    results = {agent: summarize(rs, n_boot=100) for agent, rs in recs.items()}
    md = tmp_path / "evaluate.md"
    write_reports(results, tmp_path / "e.json", md, tmp_path / "p.json", tmp_path / "html", recs, views_dir=views,
                  row_notes={"good": "the good one", "absent": "not evaluated", "evil": "x < y & <b>"})
    text = md.read_text()
    assert "Rows:\n\n- `good`: the good one\n- `evil`: x < y & <b>\n" in text and "absent" not in text
    assert text.index("Rows:") > text.index(render_table(results))


def test_the_papers_numbers_render_as_a_second_table(tmp_path, records):
    from octopus.evaluation.rows import PAPER as TABLE_3
    _, out = write(tmp_path, *records, paper=TABLE_3)
    md = out["md"].read_text()
    assert "| Octopus (SFT only) | 0.11 | 0.27 | 0.16 | 0.13 | 0.15 |" in md
    assert "| GPT-4 | 0.42 | 0.46 | 0.49 | 0.27 | 0.43 |" in md


def test_a_failed_html_build_keeps_the_previous_report(tmp_path, records, monkeypatch):
    from octopus.evaluation import report
    _, out = write(tmp_path, *records)
    before = {p.relative_to(out["html"]): p.read_bytes() for p in out["html"].rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("index failed")
    monkeypatch.setattr(report, "_index_html", broken)
    with pytest.raises(RuntimeError, match="index failed"):
        write(tmp_path, *records)
    assert {p.relative_to(out["html"]): p.read_bytes() for p in out["html"].rglob("*") if p.is_file()} == before
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]  # no temporary left


def test_paired_differences_are_a_table_and_json(tmp_path, records):
    recs, views = records
    better = [record(r.task_id, True, [OK], split=r.split, category=r.category, agent="better") for r in recs["good"]]
    recs = {**recs, "better": better}
    results = {agent: summarize(rs, n_boot=100) for agent, rs in recs.items()}
    diffs = {"better": {"baseline": "good", **paired_difference(recs["good"], better, n_boot=100)}}
    out = tmp_path / "e.json"
    write_reports(results, out, tmp_path / "e.md", tmp_path / "p.json", tmp_path / "html", recs, views_dir=views,
                  differences=diffs)
    data = json.loads(out.read_text())["differences"]["better"]
    assert data["baseline"] == "good" and data["all"]["tasks"] == 3
    assert data["all"]["task_completion"] == pytest.approx(1 / 3)
    assert data["all"]["task_completion_lo"] <= data["all"]["task_completion"] <= data["all"]["task_completion_hi"]
    md = (tmp_path / "e.md").read_text()
    assert "## Paired differences" in md
    line = next(x for x in md.splitlines() if x.startswith("| better | good |"))
    assert "+0.33 [" in line and line.rstrip().endswith("| 3 |")


def test_differences_that_round_to_zero_print_as_plus_zero():
    from octopus.evaluation.report import render_differences
    md = render_differences({"b": {"baseline": "a", "all": {"tasks": 2, "task_completion": {
        "mean": -0.004, "lo": -0.01, "hi": 0.0}}}})
    assert "| b | a | +0.00 [-0.01, +0.00] |" in md and "-0.00" not in md
