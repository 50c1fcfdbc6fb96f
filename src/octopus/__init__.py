"""Octopus: an embodied vision-language programmer trained from environment feedback (arXiv 2310.08588)."""
