"""ECG inference service."""
