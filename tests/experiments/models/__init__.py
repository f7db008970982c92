"""Tests of the experiments' models."""
