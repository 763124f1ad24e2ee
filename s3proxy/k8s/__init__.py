"""Kubernetes delivery: the injecting admission webhook (docs/kubernetes.md)."""
