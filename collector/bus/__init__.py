"""What agents and analyzers share about the NATS JetStream bus between them: subjects and
message ids (`subjects.py`), the stream (`stream.py`) and how to connect (`connection.py`)."""
