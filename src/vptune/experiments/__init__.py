"""Multi-run workflows built on the engine: the demo, sweeps, reports."""
