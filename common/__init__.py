"""The small shared kit of the collection.

Only what two or more paper folders use in the same way lives here: replay buffer, MLP builder,
device and seeding, environment helpers, run folders and logging, config files, a parallel map,
the command-line error path, and the README results blocks generated from each paper's committed
data (`results.py`). Paper-specific networks and algorithms stay in their folder.
"""
