"""audio_ingest: live and file speech to stored, searchable utterances.

VAD (Silero, from the faster-whisper wheel) cuts speech into utterances; a ``Transcriber``
(faster-whisper, offline weights) turns each into text; the utterance is stored through the
same ``indexer.ingest.Ingestor`` as text. ``ws.audio_router`` serves ``/v1/audio/stream``;
``files.transcribe_file`` backs ``convmem ingest-audio``. Nothing heavy is imported here.
"""

__all__: list[str] = []
