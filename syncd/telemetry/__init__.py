"""What the daemon tells about itself: counts and summary lines, Prometheus metrics, /healthz."""
