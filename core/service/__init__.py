"""The inference service: podforge's voices over HTTP (``podforge serve``, SERVICE.md).

``app`` builds the FastAPI application, ``auth`` owns the bearer token and the bind rules,
``limits`` the request limits, ``queue`` the one synthesis queue per backend (batched into
``render_many``), ``jobs`` the episode render jobs, ``server`` runs it under uvicorn.
FastAPI and uvicorn are imported inside the functions that need them.
"""
