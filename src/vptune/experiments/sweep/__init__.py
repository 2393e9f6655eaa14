"""Sweeps: the paper's protocol over tasks x methods x grids (`run_sweep`), and the bare grid loop."""

from .grid import best_point, grid_points, named_grid, run_grid
from .protocol import format_summary, run_sweep, summary
from .spec import SweepSpec, build_spec

__all__ = ["SweepSpec", "best_point", "build_spec", "format_summary", "grid_points", "named_grid", "run_grid",
           "run_sweep", "summary"]
