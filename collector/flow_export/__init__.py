"""Flow export decoding (IPFIX RFC 7011, NetFlow v9 RFC 3954, sFlow v5) and the receiver that listens for it."""
