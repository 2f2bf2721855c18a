"""artdiff: adapt diffusion models to art and generate from them."""

__version__ = "0.1.0"
