"""Experiments across `params.yaml` changes: compare the workspace and every DVC experiment
(`compare`, its plots in `plots`), and queue the paper's ablations (`ablations`). docs/experiments.md."""
