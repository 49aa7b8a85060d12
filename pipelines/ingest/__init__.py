"""Data into the warehouse: sources, the quality gate, the synthetic market, the ingestion path
every batch takes, and closed trades reported back by a trading runtime."""
