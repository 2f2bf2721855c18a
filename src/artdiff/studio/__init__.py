"""Layer 4: sweeps, comparisons, galleries, demos."""
