"""ECG training service."""
