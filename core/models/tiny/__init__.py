"""Tiny random-init stand-ins for the real models, built locally for tests and the demo
(model id "tiny")."""
