"""SLA policies and verdicts: what each slice promises, and each interval judged against it."""
