"""The benchmark harness: famelog and its baselines on identical chronological splits and K-shot labels.

config (the grid, as data) → runner (one fresh process per dataset × split × K × seed) → baselines and metrics →
speed (side by side in one process) → report (results.json, Markdown, self-contained HTML).
"""
