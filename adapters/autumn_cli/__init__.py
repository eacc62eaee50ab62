"""autumn_cli: the ``autumn`` command, a driving adapter over the public API."""
