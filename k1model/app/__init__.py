"""Tools around the library: the seed-README facade (`api`), interpretability views (`interpret`),
`k1 demo` and `k1 bench`."""
