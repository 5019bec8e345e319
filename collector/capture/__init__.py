"""Packet capture: pcap files and live AF_PACKET sampling into flow records, passive TCP RTT and alternate marking."""
