"""Tests of experiments.data."""
