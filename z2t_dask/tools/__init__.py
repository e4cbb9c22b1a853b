"""User-facing tools on top of the library: the ``z2t`` CLI, previews, inspect, open_sample, docs."""
