"""The admin use cases behind the admin API and the CLI: configuration objects, virtual key
lifecycle, live rebuilds, and configuration as code. No web framework here."""
