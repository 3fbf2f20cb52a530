"""ECG ingestion service."""
