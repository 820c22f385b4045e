"""famelog: find the individual anomalous line in system logs, fully on-premise (FAME method)."""

__version__ = "0.1.0"
