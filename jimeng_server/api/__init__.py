"""HTTP route tables, mirroring the public surface: meta, tokens, images (and their async twins later)."""
