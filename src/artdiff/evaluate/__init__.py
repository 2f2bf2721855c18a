"""Layer 3: judge and metrics."""
