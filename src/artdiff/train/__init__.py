"""Layer 3: one module per training method on one shared loop."""
