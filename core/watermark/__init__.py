"""The synthetic-speech watermark: marking rendered lines and checking files for the mark.

Public API: :func:`~core.watermark.perth.load_mark` (the Perth watermarker, loaded once per
process), :func:`~core.watermark.detect.check_audio` / :func:`~core.watermark.detect.check_file`
(a verdict from speech windows) and the thresholds they use.
"""
