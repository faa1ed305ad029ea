"""Tools that work on a finished dataset: inspect, report, split, fdbench export, eval_align."""
