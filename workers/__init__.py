"""Gate pipeline workers: the gates that prove a model version is fit to ship, and their reference models."""
