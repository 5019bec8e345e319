"""Flows: what the slices actually carry, and how real traffic fares (DESIGN.md "Flows").

Two ways in, one record out (`collector.records.FlowRecord`, classified into a slice by
`collector.slices.SliceClassifier`, bytes and packets scaled by the sampling rate):

- flow export from routers and probes: `receiver` listens on UDP and hands each datagram
  to `ipfix` (RFC 7011), `netflow9` (RFC 3954) or `sflow` (sFlow v5) by its version field;
  `templates` and `sampling` keep what exporters announced (persisted across restarts);
  `datasets` and `export_state` are the decoding shared by IPFIX and v9;
- packets: `pcap` reads capture files, `capture` samples an interface 1:N with AF_PACKET;
  `dissect` (with `ipv6_ext` for extension headers) gives the fields, `aggregate` makes
  flows of them.

Per-slice totals and top talkers live in `traffic`; `metrics` and `passive_metrics` render
them for Prometheus, and `http` serves `/flows/top`. On full-rate packets, `tcp_rtt`
measures passive TCP RTT and retransmissions as pping does, and `altmark` counts RFC 9341
alternate-marking blocks per measurement point for per-segment loss and one-way delay
(`altmark_sender` marks test traffic).
"""
