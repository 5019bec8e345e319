"""The record contract between xnetmon's parts, and its one wire codec."""
