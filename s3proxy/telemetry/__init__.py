"""Telemetry: Prometheus metrics, the access log and the log formats; below every runtime layer."""
