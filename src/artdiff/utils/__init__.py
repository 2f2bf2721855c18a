"""Layer 0 helpers: file io, images, hashing, progress."""
