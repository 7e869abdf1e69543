"""The dataset kit: long recordings and their subtitles in, clean 5-15 s utterances out
(importer -> segment -> qc -> ingest), with stored splits and the standard exports."""

from core import _compat

__getattr__ = _compat.forward_old_names("core.dataset", __file__)
