"""Layer 5: argparse adapters, one module per command."""
