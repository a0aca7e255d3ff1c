"""mixtures."""
