"""Real traffic by slice: the classifier (addresses, DSCP, flow label, SRv6 SID, slice ID) and bounded
per-slice counters."""
