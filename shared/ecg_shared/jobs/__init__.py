"""Job logic (tables, schemas, functions) that the gateway, the CLI and the workers share, free of heavy imports."""
