"""The inspection station: the HTTP service (app, routes, service), its limits (upload), metrics,
API reference page (apidoc), operator page (web/) and the durable inspection log (log, database)."""
