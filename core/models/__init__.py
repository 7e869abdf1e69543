"""Models: hub and device resolution, ASR (faster-whisper), speaker embeddings (ECAPA),
CSM loading and generation, and tiny random-init stand-ins (tiny/)."""
