"""Failure domains: a partition of templates proposed once, offline (``propose``), and validated before any
training (``certify``). ``profile`` builds what the proposer sees; ``partition`` is the plain-JSON result."""
