"""A workspace folder: its layout, its ``workspace.toml``, creating and opening it.

```
my-show/
  workspace.toml  catalog.sqlite  raw/  segments/  runs/  voices/  scripts/
  episodes/  exports/  assets/
```
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from core.atomic import atomic_write_text
from core.errors import (
    NotAWorkspaceError,
    SchemaTooNewError,
    SpeakerError,
    WorkspaceConfigError,
    WorkspaceError,
)
from core.settings import (
    SCHEMA_VERSION,
    Consent,
    Settings,
    Speaker,
    parse_settings,
    settings_to_toml,
    validate_speaker_name,
)
from core.subpath import Subpath

CONFIG_NAME = "workspace.toml"
CATALOG_NAME = "catalog.sqlite"
FOLDERS = ("raw", "segments", "runs", "voices", "scripts", "episodes", "exports", "assets")

_HEADER = (
    "# podforge workspace settings. Edit freely; podforge rewrites this file atomically.\n"
    "# Every key is documented in docs/CONFIG.md.\n"
)


@dataclass
class Workspace:
    """An opened workspace: its root folder and its settings."""

    root: Path
    settings: Settings

    # -- paths -----------------------------------------------------------------
    config_path = Subpath(CONFIG_NAME)
    catalog_path = Subpath(CATALOG_NAME)
    raw_dir = Subpath("raw")
    segments_dir = Subpath("segments")
    runs_dir = Subpath("runs")
    voices_dir = Subpath("voices")
    scripts_dir = Subpath("scripts")
    episodes_dir = Subpath("episodes")
    exports_dir = Subpath("exports")
    assets_dir = Subpath("assets")

    @property
    def name(self) -> str:
        return self.settings.name

    # -- lifecycle -------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | str, name: str | None = None) -> Workspace:
        """Make a new workspace in ``root`` (which may exist but must hold no workspace)."""
        root = Path(root).expanduser().resolve()
        if (root / CONFIG_NAME).exists():
            raise WorkspaceError(
                f"{root}: already a workspace (it has {CONFIG_NAME}); open it instead"
            )
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root}: exists and is not a folder")
        # Checked before anything is written: a folder that is not a workspace may hold the
        # user's own files, but never one podforge would write over or migrate.
        for taken in (CATALOG_NAME, f"{CATALOG_NAME}-wal", *FOLDERS):
            path = root / taken
            if os.path.lexists(path) and (taken not in FOLDERS or not path.is_dir()):
                raise WorkspaceError(
                    f"{path}: already exists and is not podforge's; move it away before "
                    f"`podforge init {root}`"
                )
        root.mkdir(parents=True, exist_ok=True)
        for folder in FOLDERS:
            (root / folder).mkdir(exist_ok=True)
        ws = cls(root=root, settings=Settings(name=name or root.name))
        ws.save()
        from core.catalog import Catalog  # the catalog module imports workspace paths only lazily

        Catalog.open(ws.catalog_path).close()
        return ws

    @classmethod
    def open(cls, root: Path | str) -> Workspace:
        """Open an existing workspace, or raise one line saying what is wrong and what to do."""
        root = Path(root).expanduser().resolve()
        config = root / CONFIG_NAME
        if not root.is_dir():
            raise NotAWorkspaceError(
                f"{root}: no such folder; create a workspace with `podforge init {root}`"
            )
        if not config.is_file():
            raise NotAWorkspaceError(
                f"{root}: not a podforge workspace (no {CONFIG_NAME}); "
                f"create one with `podforge init {root}`"
            )
        settings = read_settings(config)
        for folder in FOLDERS:  # a folder removed by hand is recreated, never an error
            (root / folder).mkdir(exist_ok=True)
        return cls(root=root, settings=settings)

    def save(self) -> None:
        """Write ``workspace.toml`` atomically."""
        text = _HEADER + tomli_w.dumps(settings_to_toml(self.settings))
        atomic_write_text(self.config_path, text)

    # -- speakers --------------------------------------------------------------
    def add_speaker(
        self,
        name: str,
        consent: Consent | None,
        display_name: str = "",
        draft_voice: str = "en-us",
        draft_pitch: int = 50,
    ) -> Speaker:
        """Add a speaker (or update an existing one's consent) and save."""
        validate_speaker_name(name)
        speaker = self.settings.speakers.get(name) or Speaker(
            display_name=display_name or name.capitalize(),
            draft_voice=draft_voice,
            draft_pitch=draft_pitch,
        )
        if consent is not None:
            speaker.consent = consent
        self.settings.speakers[name] = speaker
        self.save()
        return speaker

    def speaker(self, name: str) -> Speaker:
        """The named speaker, or a one-line error listing the known ones."""
        try:
            return self.settings.speakers[name]
        except KeyError:
            known = ", ".join(sorted(self.settings.speakers)) or "none yet"
            raise SpeakerError(
                f"unknown speaker {name!r} in {self.config_path} (known: {known}); "
                f"add it with `podforge speaker add {self.root} {name} --consent ... "
                "--granted-by ...`"
            ) from None

    def require_consent(self, name: str, use: str = "training") -> Consent:
        """The speaker's consent record if its scope covers ``use`` (``"training"`` or
        ``"synthesis"``, see :data:`core.settings.CONSENT_USES`), else a one-line
        :class:`ConsentError` naming the speaker and the command that records consent."""
        from core.errors import ConsentError

        speaker = self.speaker(name)
        consent = speaker.consent

        def add(extra: str = "") -> str:
            return (
                f'`podforge speaker add {self.root} {name} --consent "<who agreed to what, '
                f'how, when>" --granted-by "<their name>"{extra}`'
            )

        if consent is None:
            raise ConsentError(
                f"speaker {name!r} has no consent record in {self.config_path}, so their "
                f"voice cannot be used for {use}; record it with {add()}"
            )
        if not consent.covers(use):
            raise ConsentError(
                f"speaker {name!r}: the consent recorded in {self.config_path} covers "
                f"{consent.scope!r}, not {use}; if they agreed to {use}, record it with "
                + add(' --scope "training and synthesis of this voice in this workspace"')
            )
        return consent


def read_settings(config: Path) -> Settings:
    """Parse a ``workspace.toml``; every problem is one line naming the file."""
    try:
        raw = config.read_bytes()
    except OSError as exc:
        raise WorkspaceConfigError(f"{config}: cannot read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WorkspaceConfigError(f"{config}: not UTF-8 text; restore it from a backup") from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceConfigError(f"{config}: not valid TOML ({exc}); fix that line") from None
    schema = doc.get("schema")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{config}: written by a newer podforge (schema {schema}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade podforge"
        )
    try:
        return parse_settings(doc)
    except WorkspaceConfigError as exc:
        raise WorkspaceConfigError(f"{config}: {exc}") from None


def find_workspace(start: Path | str) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``workspace.toml``."""
    here = Path(start).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return None
