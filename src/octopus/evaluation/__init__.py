"""Evaluation (paper Tables 3-4): roll agents out on the evaluation suite, summarize with bootstrap CIs, report.

`rollouts.rollout` runs one episode into an `EpisodeRecord`; `metrics.summarize` turns records into task
completion, executable code, step success, mean steps and plan score per group (all, seen, unseen,
follow, reason); `report.write_reports` writes evaluate.json / evaluate.md / plots and a static HTML
rollout report.
"""
