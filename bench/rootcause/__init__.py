"""Root-cause inference at national scale: a simulated extranet, faults, our engine and the
published baselines in one harness (`python -m bench.rootcause`, see bench/README.md)."""
