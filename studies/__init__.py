"""Studies: search spaces, evaluators and storage brought together (Optuna + Ray)."""
