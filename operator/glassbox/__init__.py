"""Glassbox: explainable models served with KServe."""
