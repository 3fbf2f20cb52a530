"""ECG gateway service."""
