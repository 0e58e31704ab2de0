"""audio_ingest."""
