"""Writing exported rows to files and streams: CSV, JSON Lines, Parquet."""
