"""Scale-out on Ray (the optional ``cluster`` extra): ingest and render across machines.

:mod:`.session` connects to a cluster or starts a private one, :mod:`.threads` pins thread
counts, :mod:`.ingest` cuts recordings in Ray tasks, :mod:`.render` renders lines on Ray
actors. This process (the driver) still writes every workspace file and the catalog.
Details: docs/SCALING.md.
"""
