"""What a reader sees: formatted tables (`tables`), figures (`figures`) and the paper (`paper`),
all built from `results/` only."""
