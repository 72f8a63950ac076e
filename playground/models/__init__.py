"""Model sources, the runtime (one base, named adapters) and side-by-side generation."""
