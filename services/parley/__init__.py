"""Parley: a distributed chat system that runs natively on Kubernetes."""
