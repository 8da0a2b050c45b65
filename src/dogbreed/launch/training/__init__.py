"""Training and tuning jobs: their requests, preflight, status, logs and reports."""
