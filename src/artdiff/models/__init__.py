"""Layer 2: nn.Modules and their loaders."""
