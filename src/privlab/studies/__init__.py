"""One folder per attack family behind the :class:`~privlab.studies.base.Study` protocol."""
