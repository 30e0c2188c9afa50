"""Results: everything computed from finished records, never from a live run.

- `load`: reading a results folder's records, grouping keys, atomic writes
- `tables`: the comparison table (rows, statistics, notes) and its `columns`
- `render`: a table as Markdown, CSV, LaTeX or HTML
- `paper`: the LAASP paper's published numbers (``--compare-paper``)
- `compare`, `against`: paired statistics and the ``--against`` view
- `portable`: relative paths in records (``migrate-paths``)
- `time_split`: wall time per run split into its phases
- `figures`, `plots`, `search_plots`: the report's figures
- `report`: the self-contained HTML report
A new table column goes in `tables.columns`; a new figure in `plots` (listed in `all_plots`).
"""
