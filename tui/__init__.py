"""podforge's terminal app and command line. Presents and calls ``core``; holds no logic of its own.

Importing this package is cheap: Textual is imported by ``tui.app`` only.
"""
