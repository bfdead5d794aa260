"""The reconstruction study: weak and informed adversaries against released weights."""
