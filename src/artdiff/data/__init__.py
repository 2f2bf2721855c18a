"""Layer 2: datasets, preparation of image folders, synthetic art."""
