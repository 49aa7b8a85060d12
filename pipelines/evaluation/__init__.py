"""Pure evaluation: datasets rebuilt from the warehouse, scoring a version's bundle, metrics and
statistical tests, walk-forward folds and the probability of backtest overfitting."""
