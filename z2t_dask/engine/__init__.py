"""Engine: builds physics objects from a config (:mod:`.assembly`) and the lazy render graph.

This is the only layer that builds task graphs. It imports config and physics, never io,
batch or tools.
"""
