"""The workspace's settings as they are on disk now, for a long-running service.

The CLI reads ``workspace.toml`` on every command; the service lives for days. Before each
batch and each job it calls :meth:`SettingsWatch.refresh`, which re-reads the file when its
size or modification time changed, so a consent recorded or withdrawn in the app (or with
``podforge speaker add``) applies to the next request, exactly as it would to the next
``podforge render``.
"""

from __future__ import annotations

import threading

from core.settings import Settings
from core.workspace import Workspace, read_settings


class SettingsWatch:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._lock = threading.Lock()
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.ws.config_path.stat()
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> Settings:
        """``ws.settings``, re-read first if ``workspace.toml`` changed; an unreadable file
        is the one-line ``WorkspaceConfigError`` the CLI would print, and the settings read
        last stay in place."""
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self.ws.settings = read_settings(self.ws.config_path)
                self._stamp = stamp
            return self.ws.settings
