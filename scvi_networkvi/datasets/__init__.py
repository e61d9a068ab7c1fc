"""Example and tutorial datasets."""
