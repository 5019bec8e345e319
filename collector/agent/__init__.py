"""The site agent's runtime: configuration, the resolved plan, the scheduler, path discovery and interval windows."""
