"""Where results land: ClickHouse."""
