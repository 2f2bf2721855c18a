"""Layer 3: inference entry points."""
