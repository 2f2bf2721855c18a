"""Layer 1: pure tensor maths (torch only)."""
