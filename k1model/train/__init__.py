"""Training: one step of any variant (`step.py`), the plugins that extend it (`plugins.py`), the
continual-learning protocol behind `k1 train` (`protocol.py`) and safe checkpoints (`checkpoint.py`)."""
