"""taskray's Ray glue: job specs, sources and sinks, the Ray Data graph, Serve apps and the CLI."""
